/**
 * Server identity pinning over real TLS: HTTPS servers presenting
 * certificates of one CA — CentOps' own, and a node's with the same host
 * names (the local mesh's situation) — and the enrolment client pointed at
 * each.
 */
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { CertificateAuthority } from './authority.js';
import { CentOpsAgent, callCentOps, requestEnrolment } from './enrolment-client.js';
import {
  brokerServerCheck,
  centOpsApiSpiffeId,
  nodeSpiffeId,
  spiffeUrisOf,
  trustDomainFromCertificate,
  trustDomainFromTrustBundle,
} from './server-identity.js';
import { parseCertificates } from './certificates.js';
import { rejectsWith, tempDir, throwsWith } from './test-support.js';

interface Impostor {
  url: string;
  /** Requests that reached the server (method and body). */
  received: string[];
  close(): Promise<void>;
}

async function serve(material: { chainPem: string; privateKeyPem: string }): Promise<Impostor> {
  const received: string[] = [];
  const server: Server = createServer({ cert: material.chainPem, key: material.privateKeyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push(`${req.method ?? ''} ${req.url ?? ''} ${Buffer.concat(chunks).toString('utf8')}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://localhost:${(server.address() as AddressInfo).port}`,
    received,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A GET that checks only the chain (what every client did before pinning): a round trip to the server. */
function unpinnedGet(url: string, caPem: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/probe`, { ca: caPem, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('server identity pinning', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let ca: CertificateAuthority;
  let centops: Impostor;
  let node: Impostor;
  let otherNode: Impostor;

  before(async () => {
    dir = await tempDir('dmr-pki-pinning-');
    ca = await CertificateAuthority.init(join(dir.path, 'ca'), { trustDomain: 'dmr.test' });
    const hosts = { dns: ['localhost'], ips: ['127.0.0.1'] };
    centops = await serve(await ca.issueWithKey({ kind: 'centops', id: 'api', ...hosts }));
    node = await serve(await ca.issueWithKey({ kind: 'node', id: 'node-a', ...hosts }));
    otherNode = await serve(await ca.issueWithKey({ kind: 'node', id: 'node-b', ...hosts }));
  });

  after(async () => {
    await Promise.all([centops, node, otherNode].map((server) => server?.close()));
    await dir.cleanup();
  });

  it('names the identities clients expect', () => {
    assert.equal(centOpsApiSpiffeId('dmr.test'), 'spiffe://dmr.test/centops/api');
    assert.equal(nodeSpiffeId('dmr.test', 'node-a'), 'spiffe://dmr.test/node/node-a');
    throwsWith(() => nodeSpiffeId('dmr.test', 'Node A'), 'INVALID_ID');
    throwsWith(() => centOpsApiSpiffeId('not a domain'), 'INVALID_ARGUMENT');
  });

  it('reads the trust domain from a leaf or from the roots, and SPIFFE ids from DER', async () => {
    const client = await ca.issueWithKey({ kind: 'client', id: 'ria-bot' });
    assert.equal(trustDomainFromCertificate(client.chainPem), 'dmr.test');
    assert.equal(trustDomainFromTrustBundle(ca.trustBundlePem()), 'dmr.test');
    const other = await CertificateAuthority.init(join(dir.path, 'other'), { trustDomain: 'other.test' });
    // Two meshes' roots: which one is ours cannot be told.
    assert.equal(trustDomainFromTrustBundle(`${ca.trustBundlePem()}${other.trustBundlePem()}`), undefined);
    const [leaf] = parseCertificates(client.chainPem);
    assert.deepEqual(spiffeUrisOf(new Uint8Array(leaf?.rawData ?? new ArrayBuffer(0))), [
      'spiffe://dmr.test/client/ria-bot',
    ]);
    assert.deepEqual(spiffeUrisOf(new Uint8Array([1, 2, 3])), []);
  });

  it('enrols with CentOps, but never sends the token to a node certificate posing as CentOps', async () => {
    const caPem = ca.trustBundlePem();
    const options = { token: 'secret-token-123', csrPem: 'csr', caPem, trustDomain: 'dmr.test' };
    // The real CentOps identity passes the pin (the answer is not a certificate, which is the next check).
    await rejectsWith(requestEnrolment({ ...options, enrolUrl: centops.url }), 'ENROLMENT_FAILED', /201|answered/);
    assert.equal(centops.received.length, 1);

    let refusal: unknown;
    try {
      await requestEnrolment({ ...options, enrolUrl: node.url });
    } catch (error) {
      refusal = error;
    }
    assert.ok(isDmrError(refusal), String(refusal));
    assert.equal(refusal.code, 'SERVER_IDENTITY_MISMATCH');
    assert.deepEqual(refusal.details.presented, ['spiffe://dmr.test/node/node-a']);
    assert.equal(refusal.details.expected, 'spiffe://dmr.test/centops/api');
    assert.match(refusal.message, /spiffe:\/\/dmr\.test\/node\/node-a, not spiffe:\/\/dmr\.test\/centops\/api/);
    assert.ok(refusal.hint !== undefined && refusal.hint.length > 0);
    // The impostor is alive and answers a chain-only client, and still has not seen the token.
    assert.equal(await unpinnedGet(node.url, caPem), 200);
    assert.deepEqual(node.received, ['GET /probe ']);
  });

  it('pins through a CentOpsAgent too, and refuses another trust domain', async () => {
    const caPem = ca.trustBundlePem();
    const agent = new CentOpsAgent({ caPem, trustDomain: 'dmr.test' });
    try {
      assert.equal((await callCentOps(`${centops.url}/v1/x`, { agent })).status, 200);
      await rejectsWith(callCentOps(`${node.url}/v1/x`, { agent }), 'SERVER_IDENTITY_MISMATCH');
      await rejectsWith(
        callCentOps(`${centops.url}/v1/x`, { caPem, trustDomain: 'elsewhere.test' }),
        'SERVER_IDENTITY_MISMATCH',
        /not spiffe:\/\/elsewhere\.test\/centops\/api/,
      );
    } finally {
      agent.destroy();
    }
  });

  it("pins a broker: another node's certificate is refused, the host name is still checked", async () => {
    const check = brokerServerCheck('dmr.test', 'node-a');
    const tlsGet = (url: string, servername?: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          `${url}/`,
          {
            ca: ca.trustBundlePem(),
            agent: false,
            checkServerIdentity: check,
            ...(servername === undefined ? {} : { servername }),
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    assert.equal(await tlsGet(node.url), 200);
    await rejectsWith(tlsGet(otherNode.url), 'SERVER_IDENTITY_MISMATCH', /node\/node-b, not .*node\/node-a/);
    await rejectsWith(tlsGet(centops.url), 'SERVER_IDENTITY_MISMATCH', /centops\/api/);
    await assert.rejects(tlsGet(node.url.replace('localhost', '127.0.0.1'), 'example.org'), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });
});
