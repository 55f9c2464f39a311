/**
 * CentOpsDirectory without a CentOps: argument checks, and that an
 * unreachable CentOps is reported (CENTOPS_UNREACHABLE) and never cached.
 * The directory against a real CentOps: directory.integration.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '@dmr/pki';
import { CentOpsDirectory } from './directory.js';
import type { TlsPem } from './tls.js';
import { freePort } from '@dmr/testkit';

describe('CentOpsDirectory (no CentOps)', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let tls: TlsPem;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-sdk-directory-unit-'));
    ca = await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: 'dmr.test' });
    const me = await ca.issueWithKey({ kind: 'client', id: 'ria-bot' });
    tls = { cert: me.chainPem, key: me.privateKeyPem, ca: ca.trustBundlePem() };
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses bad options', () => {
    const refused = { code: 'INVALID_ARGUMENT' };
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'http://centops:8443', tls }), refused);
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'not a url', tls }), refused);
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'https://centops:8443', tls, cacheTtlMs: -1 }), refused);
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'https://centops:8443', tls, maxEntries: 0 }), refused);
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'https://centops:8443', tls, timeoutMs: 1.5 }), refused);
    assert.throws(() => new CentOpsDirectory({ apiUrl: 'https://centops:8443', tls: { ...tls, ca: 'no pem' } }), {
      code: 'CERTIFICATE_INVALID',
    });
  });

  it('refuses malformed ids and uses before asking anyone', async () => {
    const directory = new CentOpsDirectory({ apiUrl: `https://127.0.0.1:${await freePort()}`, tls });
    await assert.rejects(directory.certificateOf('-bad-'), { code: 'INVALID_ID' });
    await assert.rejects(directory.certificateOf('rik-bot', 'decrypt' as 'encrypt'), { code: 'INVALID_ARGUMENT' });
  });

  it('reports CentOps unreachable and asks again next time; CentOps’ refusal is a verdict it keeps', async () => {
    const port = await freePort();
    const directory = new CentOpsDirectory({ apiUrl: `https://127.0.0.1:${port}`, tls });
    await assert.rejects(directory.certificateOf('rik-bot'), { code: 'CENTOPS_UNREACHABLE' });
    await assert.rejects(directory.checkCertificate(tls.cert, { id: 'ria-bot', use: 'verify' }), {
      code: 'CENTOPS_UNREACHABLE',
    });

    // Now something answers on that port, as CentOps does for an id it does not know.
    const served = await ca.issueWithKey({ kind: 'centops', id: 'api', ips: ['127.0.0.1'] });
    let requests = 0;
    const server = createHttpsServer({ cert: served.chainPem, key: served.privateKeyPem }, (request, response) => {
      requests += 1;
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no client', details: { reason: 'unknown-id' } } }),
      );
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      await assert.rejects(directory.certificateOf('rik-bot', 'encrypt'), { code: 'RECIPIENT_UNKNOWN' });
      await assert.rejects(directory.verifySender('rik-bot'), { code: 'SENDER_UNKNOWN' });
      assert.equal(requests, 1, 'the first failure was not cached; the refusal is, for either use');
      directory.forget('rik-bot');
      await assert.rejects(directory.certificateOf('rik-bot'), { code: 'RECIPIENT_UNKNOWN' });
      assert.equal(requests, 2);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('pins CentOps: a node certificate of the same CA answering on its address is refused, and not cached', async () => {
    const impostor = await ca.issueWithKey({ kind: 'node', id: 'node-a', ips: ['127.0.0.1'] });
    let requests = 0;
    const server = createHttpsServer({ cert: impostor.chainPem, key: impostor.privateKeyPem }, (_request, response) => {
      requests += 1;
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const directory = new CentOpsDirectory({ apiUrl: `https://127.0.0.1:${port}`, tls });
      for (let attempt = 0; attempt < 2; attempt += 1) {
        await assert.rejects(directory.certificateOf('rik-bot'), (error: unknown) => {
          assert.equal((error as { code?: unknown }).code, 'SERVER_IDENTITY_MISMATCH');
          assert.deepEqual((error as { details: Record<string, unknown> }).details.presented, [
            'spiffe://dmr.test/node/node-a',
          ]);
          return true;
        });
      }
      assert.equal(requests, 0);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
