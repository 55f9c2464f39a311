/**
 * Live reload and refusals of the in-process engine, with real bundles built
 * by OPA: a grant removed mid-stream under continuous evaluation, tampered,
 * foreign-signed, unsigned and older bundles refused while the last good one
 * stays active.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import { SIGNATURES_FILE, parseBundle, writeBundle } from './bundle.js';
import type { PolicyDecision } from './decision.js';
import { PolicyEngine } from './engine.js';
import type { PolicyInput } from './input.js';
import { buildBundle } from './opa.js';
import { REGO_DIR, tempDir, testPki, type TestPki } from './test-support.js';

const principal = (id: string, organisation: string) => ({ id, organisation, roles: ['bot'], labels: {} });
const riaToRik: PolicyInput = {
  sender: principal('a-bot', 'ria'),
  recipient: principal('b-bot', 'rik'),
  message: { id: 'm-1', type: 'ChatMessage', size: 10 },
  hop: { origin: 'node-a', count: 0 },
  node: { id: 'node-a' },
};

function refusedWith(check: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof DmrError, String(error));
    assert.equal(error.code, 'POLICY_BUNDLE_INVALID');
    assert.equal(error.details.check, check, error.message);
    return true;
  };
}

describe('PolicyEngine with real bundles', () => {
  let pki: TestPki;
  const bundles: Record<string, Buffer> = {};
  let cleanup: () => Promise<void>;

  before(async () => {
    pki = await testPki();
    const dir = await tempDir();
    cleanup = dir.cleanup;
    // Revision 2 removes the ria → rik grant: the data edit an operator makes.
    const edited = join(dir.path, 'rego');
    await cp(REGO_DIR, edited, { recursive: true });
    const dataFile = join(edited, 'dmr', 'data.json');
    const data = JSON.parse(await readFile(dataFile, 'utf8')) as { grants: Array<{ from: string; to: string }> };
    data.grants = data.grants.filter((grant) => !(grant.from === 'ria' && grant.to === 'rik'));
    await writeFile(dataFile, JSON.stringify(data));
    const [one, two, three] = await Promise.all([
      buildBundle({ dir: REGO_DIR, revision: '1', signer: pki.signer }),
      buildBundle({ dir: edited, revision: '2', signer: pki.signer }),
      buildBundle({ dir: REGO_DIR, revision: '3', signer: pki.signer }),
    ]);
    bundles.one = one.archive;
    bundles.two = two.archive;
    bundles.three = three.archive;
  });

  after(async () => {
    await cleanup();
    await pki.cleanup();
  });

  test('live swap under continuous evaluation: none fails, one revision each, monotonic', async () => {
    const engine = await PolicyEngine.load(bundles.one as Buffer, { verification: pki.verification });
    const decisions: PolicyDecision[] = [];
    let running = true;
    // Evaluations interleave with the swaps' async steps (verification, compilation) on the same event loop.
    const traffic = (async () => {
      while (running) {
        for (let i = 0; i < 200; i++) decisions.push(engine.evaluate(riaToRik));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    // Some traffic on each revision, counted rather than paused for.
    const moreTraffic = async (what: string) => {
      const from = decisions.length;
      await waitFor(what, () => decisions.length >= from + 400);
    };
    await moreTraffic('evaluations on revision 1');
    assert.equal((await engine.swap(bundles.two as Buffer)).activated, true);
    await moreTraffic('evaluations on revision 2');
    await engine.swap(bundles.three as Buffer);
    await moreTraffic('evaluations on revision 3');
    running = false;
    await traffic;

    assert.ok(decisions.length > 1000, `${decisions.length} decisions`);
    const byRevision = new Map<string | undefined, PolicyDecision[]>();
    let last = 0;
    for (const decision of decisions) {
      const revision = Number(decision.revision);
      assert.ok(revision >= last, `revision went back from ${last} to ${revision}`);
      last = revision;
      byRevision.set(decision.revision, [...(byRevision.get(decision.revision) ?? []), decision]);
    }
    assert.deepEqual([...byRevision.keys()], ['1', '2', '3']);
    // Each revision decided by its own data: the grant is absent exactly in revision 2.
    assert.ok(byRevision.get('1')?.every((d) => d.allow && d.reasons.join() === 'GRANT'));
    assert.ok(byRevision.get('2')?.every((d) => !d.allow && d.reasons.join() === 'NO_GRANT'));
    assert.ok(byRevision.get('3')?.every((d) => d.allow));
    assert.equal(engine.activeRevision, '3');
  });

  test('an older revision is refused and the active one stays', async () => {
    const engine = await PolicyEngine.load(bundles.two as Buffer, { verification: pki.verification });
    await assert.rejects(engine.swap(bundles.one as Buffer), refusedWith('revision'));
    assert.equal(engine.activeRevision, '2');
    assert.equal(engine.evaluate(riaToRik).revision, '2');
  });

  test('an input larger than the Wasm memory grows it and decides like a small one, before and after', async () => {
    // wasm.ts writes the input into the module's memory through a kept view: a grown memory is a new buffer.
    const engine = await PolicyEngine.load(bundles.one as Buffer, { verification: pki.verification });
    const large: PolicyInput = {
      ...riaToRik,
      sender: { ...riaToRik.sender, labels: { note: 'õ'.repeat(3_000_000) } },
    };
    const small = engine.evaluate(riaToRik);
    assert.deepEqual(small, { allow: true, reasons: ['GRANT'], revision: '1' });
    assert.deepEqual(engine.evaluate(large), small);
    assert.deepEqual(engine.evaluate({ ...riaToRik, recipient: principal('c-bot', 'ppa') }), {
      allow: false,
      reasons: ['NO_GRANT'],
      revision: '1',
    });
    assert.deepEqual(engine.evaluate(riaToRik), small);
  });

  test('the same revision again is a no-op; different content under it is refused', async () => {
    const engine = await PolicyEngine.load(bundles.one as Buffer, { verification: pki.verification });
    assert.equal((await engine.swap(bundles.one as Buffer)).activated, false);
    const imposter = await buildBundle({ dir: REGO_DIR, revision: '1', signer: pki.signer, roots: ['dmr', 'other'] });
    await assert.rejects(engine.swap(imposter.archive), refusedWith('revision'));
  });

  test('a tampered bundle is refused and the last good one stays active', async () => {
    const engine = await PolicyEngine.load(bundles.one as Buffer, { verification: pki.verification });
    const good = parseBundle(bundles.three as Buffer);
    const files = new Map(good.files);
    const data = JSON.parse((files.get('/data.json') as Buffer).toString()) as { dmr: { grants: unknown[] } };
    data.dmr.grants.push({ from: 'evil', to: 'ria' });
    files.set('/data.json', Buffer.from(JSON.stringify(data)));
    await assert.rejects(engine.swap(writeBundle(files)), refusedWith('digest'));

    const wasm = new Map(good.files);
    const module = Buffer.from(wasm.get('/policy.wasm') as Buffer);
    module[module.length - 1] = (module[module.length - 1] as number) ^ 1;
    wasm.set('/policy.wasm', module);
    await assert.rejects(engine.swap(writeBundle(wasm)), refusedWith('digest'));

    const extra = new Map(good.files).set('/dmr/extra.rego', Buffer.from('package dmr.extra\n'));
    await assert.rejects(engine.swap(writeBundle(extra)), refusedWith('digest'));

    const unsigned = new Map(good.files);
    unsigned.delete(SIGNATURES_FILE);
    await assert.rejects(engine.swap(writeBundle(unsigned)), refusedWith('signature'));

    assert.equal(engine.activeRevision, '1');
    assert.deepEqual(engine.evaluate(riaToRik), { allow: true, reasons: ['GRANT'], revision: '1' });
  });

  test('a bundle signed by another identity or another CA is refused', async () => {
    const engine = await PolicyEngine.load(bundles.one as Buffer, { verification: pki.verification });
    const wrongIdentity = await testPki('config-signer');
    const otherCa = await testPki();
    try {
      // A CA the engine trusts, but a certificate that is not the policy signer.
      const byConfigSigner = await buildBundle({ dir: REGO_DIR, revision: '5', signer: wrongIdentity.signer });
      const trustingBoth = { ...pki.verification, trustBundlePem: wrongIdentity.ca.rootCertificatePem };
      const strict = new PolicyEngine({ verification: trustingBoth });
      await assert.rejects(strict.swap(byConfigSigner.archive), refusedWith('signer'));
      const foreign = await buildBundle({ dir: REGO_DIR, revision: '5', signer: otherCa.signer });
      await assert.rejects(engine.swap(foreign.archive), refusedWith('chain'));
      assert.equal(engine.activeRevision, '1');
    } finally {
      await wrongIdentity.cleanup();
      await otherCa.cleanup();
    }
  });
});
