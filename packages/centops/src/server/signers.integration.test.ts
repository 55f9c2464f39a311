/**
 * Rotating a signer (ADR 0012) on a real CentOps (SQLite; nothing here
 * depends on the store's dialect): after `rotateSigner`, documents and
 * bundles are signed by the new certificate, the old one is on the CRL, and
 * a document signed by the old one is refused by a verifier holding that CRL.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { normaliseSerial, parseCrls } from '@dmr/pki';
import { parseBundle, policySignerSpiffeId, verifyBundle } from '@dmr/policy';
import { configSignerSpiffeId, verifyNodeConfig } from '../feed/signing.js';
import { node } from '../store/test-support/fixtures.js';
import { startServer, type CentOpsServer } from './app.js';
import { CONFIG_FILE, loadConfig } from './config.js';
import { recordIssued } from './credentials.js';
import { initCentOps } from './init.js';
import { rotateSigner } from './signers.js';
import { call, type Credentials } from './test-support/https.js';

const TD = 'dmr.test';
const ACTOR = `spiffe://${TD}/operator/admin`;

describe('rotating the config and policy signers', () => {
  let dir: string;
  let server: CentOpsServer | undefined;
  let ca: string;
  let nodeCredentials: Credentials;

  async function start(): Promise<CentOpsServer> {
    const config = await loadConfig(join(dir, 'c', CONFIG_FILE));
    config.listen.port = 0;
    config.enrolListen.port = 0;
    server = await startServer(config);
    return server;
  }

  async function document(running: CentOpsServer): Promise<string> {
    const answer = await call(`${running.apiUrl}/v1/nodes/dmr-tallinn/config`, { ca, credentials: nodeCredentials });
    assert.equal(answer.status, 200, answer.text);
    return answer.text;
  }

  async function crl(running: CentOpsServer): Promise<string> {
    return (await call(`${running.enrolUrl}/v1/pki/crl`, { ca })).text;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-centops-signers-'));
    await initCentOps({ dir: join(dir, 'c'), dev: true, trustDomain: TD });
    ca = await readFile(join(dir, 'c', 'ca', 'root.crt'), 'utf8');
    const running = await start();
    await running.store.create('Node', node('dmr-tallinn'), ACTOR);
    const issued = await running.ca.issueWithKey({ kind: 'node', id: 'dmr-tallinn' });
    await recordIssued(running.store, { kind: 'node', id: 'dmr-tallinn' }, issued, ACTOR);
    nodeCredentials = { cert: issued.chainPem, key: issued.privateKeyPem };
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const verify = (jws: string, crlPems?: string[]) =>
    verifyNodeConfig(jws, {
      trustBundlePem: ca,
      expectedSigner: configSignerSpiffeId(TD),
      expectedNodeId: 'dmr-tallinn',
      ...(crlPems === undefined ? {} : { crlPems }),
    });

  it('config signer: new documents verify, the old signer is on the CRL and refused', async () => {
    const before = await document(server as CentOpsServer);
    const oldSigner = (await verify(before)).signer.fingerprint;
    await server?.close();
    server = undefined;
    const rotated = await rotateSigner({ dir: join(dir, 'c'), signer: 'config' });
    const running = await start();
    const after = await verify(await document(running), [await crl(running)]);
    assert.notEqual(after.signer.fingerprint, oldSigner);
    const [list] = parseCrls(await crl(running));
    assert.ok(list?.entries.some((entry) => normaliseSerial(entry.serialNumber) === rotated.previousSerial));
    await assert.rejects(verify(before, [await crl(running)]), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'CONFIG_SIGNATURE_INVALID');
      assert.equal(error.details.check, 'revoked');
      return true;
    });
  });

  it('policy signer: the current set is re-signed as the next version by the new signer', async () => {
    const running = server as CentOpsServer;
    const version = (await running.policies.current())?.version ?? 0;
    await running.close();
    server = undefined;
    const rotated = await rotateSigner({ dir: join(dir, 'c'), signer: 'policy' });
    assert.equal(rotated.policyVersion, version + 1);
    const restarted = await start();
    const bundle = await call(`${restarted.apiUrl}/v1/policy/bundle`, { ca, credentials: nodeCredentials });
    assert.equal(bundle.status, 200);
    const archive = (await restarted.policies.bundle()).archive;
    const signer = await verifyBundle(parseBundle(archive), {
      trustBundlePem: ca,
      expectedSigner: policySignerSpiffeId(TD),
      crlPems: () => [],
    });
    const newCertificate = await readFile(join(dir, 'c', 'signer', 'policy-signer.crt'), 'utf8');
    assert.equal(
      signer.fingerprint,
      new X509Certificate(newCertificate).fingerprint256.replace(/:/g, '').toLowerCase(),
    );
    const [list] = parseCrls(await crl(restarted));
    assert.ok(list?.entries.some((entry) => normaliseSerial(entry.serialNumber) === rotated.previousSerial));
  });
});
