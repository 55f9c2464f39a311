import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '@dmr/pki';
import { parseCrl, type InstalledCrl } from './crl.js';
import { CrlKeeper } from './crl-keeper.js';
import { makeTempDir, makeTestCa } from './testing.js';
import { waitFor } from '@dmr/core/testing';

describe('CRL keeper', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;

  before(async () => {
    temp = await makeTempDir('crl-keeper');
    ca = await makeTestCa(`${temp.path}/pki`);
  });
  after(() => temp.remove());

  it('re-issues before nextUpdate and records every installation', async () => {
    const recorded: InstalledCrl[] = [];
    const keeper = new CrlKeeper({ crlDir: `${temp.path}/crl`, ca, validityMs: 2000 });
    keeper.record = async (installed) => {
      recorded.push(installed);
    };
    const first = await keeper.refresh();
    keeper.start();
    try {
      // Half of 2 s: a refresh about every second; CRL times have whole-second precision.
      await waitFor(
        () => `only ${recorded.length} installations`,
        () => recorded.length >= 3,
        { timeoutMs: 5000 },
      );
      const onDisk = parseCrl(await readFile(first.path, 'utf8'));
      assert.ok(onDisk.thisUpdate > first.thisUpdate);
      assert.ok((onDisk.nextUpdate?.getTime() ?? 0) > Date.now(), 'the installed CRL is expired');
    } finally {
      keeper.stop();
    }
  });

  it('refreshes nothing after stop()', async (t) => {
    // The test runner's clock: a long interval passes at once and exactly, instead of a wall-clock pause.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let issued = 0;
    let refreshed: () => void = () => undefined;
    const counting = {
      createCrl: (options: { nextUpdateMs: number }) => {
        issued += 1; // synchronously, when a refresh starts
        return ca.createCrl(options);
      },
    };
    const keeper = new CrlKeeper({
      crlDir: `${temp.path}/crl-stop`,
      ca: counting,
      validityMs: 60_000,
      refreshMs: 1000,
      // Called once the refresh is done and the next one planned.
      onRefreshed: () => refreshed(),
    });
    keeper.start();
    const first = new Promise<void>((resolve) => (refreshed = resolve));
    t.mock.timers.tick(1000);
    await first;
    assert.equal(issued, 1);
    keeper.stop();
    t.mock.timers.tick(3_600_000);
    assert.equal(issued, 1, 'refreshed after stop()');
  });

  it('keeps retrying when the CA fails, without giving up', async () => {
    let calls = 0;
    const failures: unknown[] = [];
    const flaky = {
      createCrl: async (options: { nextUpdateMs: number }) => {
        calls++;
        if (calls === 2) throw new Error('CA locked');
        return ca.createCrl(options);
      },
    };
    const keeper = new CrlKeeper({
      crlDir: `${temp.path}/crl-flaky`,
      ca: flaky,
      validityMs: 60_000,
      refreshMs: 100,
      retryMs: 100,
      onRefreshFailed: (error) => failures.push(error),
    });
    await keeper.refresh();
    keeper.start();
    try {
      await waitFor('calls >= 4', () => calls >= 4, { timeoutMs: 5000 });
      assert.equal(failures.length, 1);
    } finally {
      keeper.stop();
    }
  });
});
