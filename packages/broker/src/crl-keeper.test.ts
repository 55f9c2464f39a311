import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '@dmr/pki';
import { parseCrl, type InstalledCrl } from './crl.js';
import { CrlKeeper } from './crl-keeper.js';
import { makeTempDir, makeTestCa } from './testing.js';

describe('CRL keeper', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;

  before(async () => {
    temp = await makeTempDir('crl-keeper');
    ca = await makeTestCa(`${temp.path}/pki`);
  });
  after(() => temp.remove());

  it('re-issues before nextUpdate and records every installation', async (t) => {
    // The test runner's clock (timers and Date, from now on): each refresh comes when it is planned, however
    // loaded the machine, and "before nextUpdate" is judged on the clock the keeper planned with.
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
    const validityMs = 60_000;
    const recorded: InstalledCrl[] = [];
    let refreshed: () => void = () => undefined;
    const keeper = new CrlKeeper({
      crlDir: `${temp.path}/crl`,
      ca,
      validityMs,
      onRefreshed: () => refreshed(),
    });
    keeper.record = async (installed) => {
      recorded.push(installed);
    };
    const first = await keeper.refresh();
    keeper.start();
    try {
      for (let round = 1; round <= 3; round++) {
        const previous = keeper.last as InstalledCrl;
        const done = new Promise<void>((resolve) => (refreshed = resolve));
        // Half the remaining validity at most (nextUpdate is cut to whole seconds, so a little less).
        t.mock.timers.tick(validityMs / 2);
        await done;
        assert.ok(Date.now() < (previous.nextUpdate?.getTime() ?? 0), `round ${round} came after nextUpdate`);
        assert.ok((keeper.last?.thisUpdate.getTime() ?? 0) > previous.thisUpdate.getTime());
      }
      assert.equal(recorded.length, 4, 'the first installation and three refreshes');
      const onDisk = parseCrl(await readFile(first.path, 'utf8'));
      assert.deepEqual(onDisk.thisUpdate, keeper.last?.thisUpdate, 'the newest CRL is the installed one');
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

  it('keeps retrying when the CA fails, without giving up', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let calls = 0;
    const failures: unknown[] = [];
    let settled: () => void = () => undefined;
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
      onRefreshed: () => settled(),
      onRefreshFailed: (error) => {
        failures.push(error);
        settled();
      },
    });
    await keeper.refresh();
    keeper.start();
    try {
      // Three planned refreshes: the failing one, its retry and the next regular one.
      for (let round = 0; round < 3; round++) {
        const done = new Promise<void>((resolve) => (settled = resolve));
        t.mock.timers.tick(100);
        await done;
      }
      assert.equal(calls, 4);
      assert.equal(failures.length, 1);
      assert.match(String(failures[0]), /CA locked/);
    } finally {
      keeper.stop();
    }
  });
});
