/**
 * The parts of the enrolment client that need no CentOps: the checks on an
 * answer (made with a real CA signing the client's real CSR), error mapping,
 * URLs, the give-up on a silent server, and the renewal schedule. The
 * exchange with a real CentOps is tested by the SDK (enrolment.test.ts,
 * renewal.integration.test.ts) and the node agent (agent.integration.test.ts);
 * pki cannot start CentOps, which depends on it.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from './authority.js';
import {
  callCentOps,
  centOpsEndpoint,
  centOpsError,
  obtainCertificate,
  parseIssuedResponse,
  renewalDelayMs,
  requestEnrolment,
  type IssuedCertificateResponse,
} from './enrolment-client.js';
import { rejectsWith, tempDir, throwsWith } from './test-support.js';

describe('enrolment client', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let ca: CertificateAuthority;

  before(async () => {
    dir = await tempDir('dmr-pki-enrolment-');
    ca = await CertificateAuthority.init(join(dir.path, 'ca'), { trustDomain: 'dmr.test' });
  });

  after(async () => {
    await dir.cleanup();
  });

  /** What CentOps answers for a CSR it signed (routes/pki.ts `Issued`), here signed by `ca` directly. */
  async function answerFor(csrPem: string, id: string): Promise<IssuedCertificateResponse> {
    const issued = await ca.issue({ csrPem, kind: 'client', id });
    return {
      id,
      kind: 'client',
      serial: issued.serial,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
      fingerprint: issued.fingerprintSha256,
      certificate: issued.certificatePem,
      chain: issued.chainPem,
      trustBundle: ca.trustBundlePem(),
    };
  }

  const subject = { id: 'ria-bot', kind: 'client' as const, trustDomain: 'dmr.test', what: 'enrolment of ria-bot' };

  it('obtains a certificate for a key made here; only the CSR is handed to send', async () => {
    const sent: string[] = [];
    const obtained = await obtainCertificate({
      ...subject,
      send: (csrPem) => {
        sent.push(csrPem);
        return answerFor(csrPem, 'ria-bot');
      },
    });
    assert.equal(sent.length, 1);
    assert.match(sent[0] ?? '', /^-----BEGIN CERTIFICATE REQUEST-----/);
    assert.ok(!sent.join('').includes('PRIVATE KEY'));
    assert.match(obtained.privateKeyPem, /BEGIN PRIVATE KEY/);
    assert.equal(obtained.serial, obtained.response.serial.toLowerCase());
    assert.equal(obtained.trustBundlePem, ca.trustBundlePem());
    assert.ok(obtained.notAfter > obtained.notBefore);
  });

  it('refuses an answer for another id, or a certificate for another key', async () => {
    await rejectsWith(
      obtainCertificate({ ...subject, send: async (csrPem) => ({ ...(await answerFor(csrPem, 'ria-bot')), id: 'x' }) }),
      'ENROLMENT_FAILED',
      /for x, not ria-bot/,
    );
    // A well-formed certificate for ria-bot, but for someone else's key (a swapped answer).
    const other = await ca.issueWithKey({ kind: 'client', id: 'ria-bot' });
    await rejectsWith(
      obtainCertificate({
        ...subject,
        send: async (csrPem) => ({ ...(await answerFor(csrPem, 'ria-bot')), chain: other.chainPem }),
      }),
      'ENROLMENT_FAILED',
      /not for the key/,
    );
    await rejectsWith(
      obtainCertificate({
        ...subject,
        send: async (csrPem) => ({ ...(await answerFor(csrPem, 'ria-bot')), chain: 'x' }),
      }),
      'ENROLMENT_FAILED',
      /cannot be read/,
    );
  });

  it('checks a 201 body field by field', () => {
    throwsWith(() => parseIssuedResponse('not json', 'enrolment'), 'ENROLMENT_FAILED');
    throwsWith(() => parseIssuedResponse(JSON.stringify({ id: 'a', chain: 1 }), 'enrolment'), 'ENROLMENT_FAILED');
  });

  it("maps CentOps' error answers to its catalogue code, else the fallback", () => {
    const token = centOpsError(
      { status: 401, body: JSON.stringify({ error: { code: 'TOKEN_INVALID', message: 'used', details: {} } }) },
      'enrolment',
      'ENROLMENT_FAILED',
    );
    assert.equal(token.code, 'TOKEN_INVALID');
    assert.match(token.hint ?? '', /new one/);
    assert.equal(token.details.status, 401);
    const forbidden = centOpsError(
      { status: 403, body: Buffer.from(JSON.stringify({ error: { code: 'FORBIDDEN', details: { id: 'x' } } })) },
      'renewal',
    );
    assert.deepEqual([forbidden.code, forbidden.details.id], ['FORBIDDEN', 'x']);
    assert.equal(
      centOpsError({ status: 502, body: '<html>bad gateway' }, 'enrolment', 'ENROLMENT_FAILED').code,
      'ENROLMENT_FAILED',
    );
    assert.equal(centOpsError({ status: 418, body: '{"error":{"code":"NO_SUCH_CODE"}}' }, 'x').code, 'INTERNAL');
  });

  it('joins URLs keeping a path prefix, and refuses anything but https', () => {
    assert.equal(centOpsEndpoint('https://c.example:8444', '/v1/enroll'), 'https://c.example:8444/v1/enroll');
    assert.equal(centOpsEndpoint('https://c.example/centops/', '/v1/enroll'), 'https://c.example/centops/v1/enroll');
    throwsWith(() => centOpsEndpoint('http://c.example', '/v1/enroll'), 'INVALID_ARGUMENT');
    throwsWith(() => centOpsEndpoint('c.example', '/v1/enroll'), 'INVALID_ARGUMENT');
  });

  it('gives up on a server that never answers (CENTOPS_UNREACHABLE), and refuses an empty token', async () => {
    const identity = await ca.issueWithKey({ kind: 'centops', id: 'api', dns: ['localhost'] });
    const server: Server = createServer({ cert: identity.chainPem, key: identity.privateKeyPem }, () => {
      // Never answers.
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://localhost:${(server.address() as AddressInfo).port}`;
      await rejectsWith(
        callCentOps(`${url}/v1/x`, { caPem: ca.trustBundlePem(), trustDomain: 'dmr.test' }, { timeoutMs: 200 }),
        'CENTOPS_UNREACHABLE',
        /no answer in 200 ms/,
      );
      await rejectsWith(
        requestEnrolment({
          enrolUrl: url,
          token: ' ',
          csrPem: 'x',
          caPem: ca.trustBundlePem(),
          trustDomain: 'dmr.test',
        }),
        'INVALID_ARGUMENT',
      );
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('renews at two thirds of the lifetime, and soon (≤ 1 s) once past it', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2026-01-01T03:00:00Z');
    assert.equal(renewalDelayMs(notBefore, notAfter, notBefore), 2 * 3_600_000);
    assert.equal(renewalDelayMs(notBefore, notAfter, new Date('2026-01-01T01:00:00Z')), 3_600_000);
    const late = new Date('2026-01-01T02:30:00Z');
    assert.equal(
      renewalDelayMs(notBefore, notAfter, late, () => 0),
      0,
    );
    assert.equal(
      renewalDelayMs(notBefore, notAfter, late, () => 0.999),
      999,
    );
  });
});
