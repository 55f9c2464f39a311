/**
 * Authentication against a real harness node over real TLS with amqplib:
 * who gets in, who is refused and how the refusal looks to the client.
 * One node serves every test of this file (a boot costs seconds).
 */
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type SecureVersion } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '@dmr/pki';
import { readFile } from 'node:fs/promises';
import { AMQP_091_HEADER, type ManagementClient, parseCrl } from '@dmr/broker';
import { type BrokerHarness } from './harness.js';
import { startBrokers } from './start-brokers.js';
import { issueClient, makeTempDir, makeTestCa, reportBoot, reportStop, type ClientMaterial } from './testing.js';
import { connectionError, waitFor } from '@dmr/core/testing';

const CRL_VALIDITY_MS = 6000;

describe('TLS and EXTERNAL authentication on a harness node', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;
  let harness: BrokerHarness;
  let management: ManagementClient;
  let alice: ClientMaterial;

  before(async () => {
    temp = await makeTempDir('tls-test');
    ca = await makeTestCa(`${temp.path}/pki`);
    // A CRL valid for 6 s: every test below only passes if the refresh timer keeps it fresh.
    harness = await startBrokers({
      dir: `${temp.path}/brokers`,
      ca,
      namePrefix: 'tls',
      crlValidityMs: CRL_VALIDITY_MS,
    });
    reportBoot('tls', harness);
    management = harness.management();
    alice = await issueClient(ca, 'alice-bot');
    await management.createCertificateUser(alice.user);
    await management.setPermissions('/', alice.user, { configure: '', write: '', read: '' });
  });

  after(async () => {
    if (harness) reportStop('tls', (await harness.stop()).ms);
    await temp?.remove();
  });

  it('accepts a client with a valid certificate whose SPIFFE id is a broker user (EXTERNAL)', async () => {
    const connection = await harness.connect(alice);
    const channel = await connection.createChannel();
    await channel.close();
    await connection.close();
  });

  it('accepts TLS 1.2 as well as TLS 1.3', async () => {
    const connection = await harness.connect({ ...alice, tls: { maxVersion: 'TLSv1.2' } });
    await connection.close();
  });

  it('refuses a client without a certificate (TLS 1.3 alert 116, TLS 1.2 alert 40)', async () => {
    const tls13 = await connectionError(() => harness.connect({}));
    assert.equal(tls13.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', tls13.message);
    const tls12 = await connectionError(() => harness.connect({ tls: { maxVersion: 'TLSv1.2' } }));
    assert.equal(tls12.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', tls12.message);
  });

  it('refuses a certificate from another CA, even for an existing user (alert 48)', async () => {
    const other = await makeTestCa(`${temp.path}/other-pki`, 'other.test');
    const impostor = await issueClient(other, 'alice-bot');
    const error = await connectionError(() => harness.connect(impostor));
    assert.equal(error.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', error.message);
  });

  it('refuses an expired certificate (alert 45)', async () => {
    const day = 24 * 3600 * 1000;
    const expired = await issueClient(ca, 'alice-bot', {
      notBefore: new Date(Date.now() - 2 * day),
      notAfter: new Date(Date.now() - day),
    });
    const error = await connectionError(() => harness.connect(expired));
    assert.equal(error.code, 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', error.message);
  });

  it('refuses a valid certificate whose SPIFFE id has no broker user (403 ACCESS_REFUSED)', async () => {
    const stranger = await issueClient(ca, 'stranger-bot');
    const error = await connectionError(() => harness.connect(stranger));
    assert.match(error.message, /403 \(ACCESS-REFUSED\)/);
  });

  it('refuses a revoked certificate on the next handshake once the CRL is installed, without a restart', async () => {
    const revokee = await issueClient(ca, 'revoked-bot');
    await management.createCertificateUser(revokee.user);
    await management.setPermissions('/', revokee.user, { configure: '', write: '', read: '' });
    const live = await harness.connect(revokee);
    let liveClosed = false;
    live.on('close', () => {
      liveClosed = true;
    });
    live.on('error', () => undefined);

    await ca.revoke(revokee.serial, 'keyCompromise');
    const installed = await harness.installCrl(await ca.createCrl({ nextUpdateMs: CRL_VALIDITY_MS }));
    assert.equal(installed.revokedCount, 1);
    const started = Date.now();
    const error = await connectionError(() => harness.connect(revokee));
    assert.equal(error.code, 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED', error.message);
    process.stdout.write(
      `# revocation effective for the next handshake (${Date.now() - started} ms incl. handshake)\n`,
    );

    // Other certificates of the same CA are still accepted under the new CRL.
    await (await harness.connect(alice)).close();

    // A live connection survives the CRL; closing it is a separate step.
    assert.equal(liveClosed, false);
    await management.closeUserConnections(revokee.user, 'certificate revoked');
    await waitFor('the live connection to close', () => liveClosed, { timeoutMs: 5000 });
  });

  it('re-issues the CRL before it expires, at half its remaining validity', async () => {
    const crlFile = harness.state.crl.file;
    assert.ok(crlFile);
    const first = parseCrl(await readFile(crlFile, 'utf8'));
    await waitFor(
      'the CRL was not refreshed',
      async () => parseCrl(await readFile(crlFile, 'utf8')).thisUpdate > first.thisUpdate,
      { timeoutMs: CRL_VALIDITY_MS },
    );
    await (await harness.connect(alice)).close();
  });

  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    it(`refuses ${version} with a protocol_version alert from the server (70)`, async () => {
      const result = await rawHandshake(version);
      assert.equal(result.ok, false);
      assert.equal(result.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', result.message);
    });
  }

  it('answers the same raw client on TLS 1.2 and 1.3 (so the refusals above are the server’s)', async () => {
    assert.deepEqual(await rawHandshake('TLSv1.2'), { ok: true, code: 'TLSv1.2', message: '' });
    assert.deepEqual(await rawHandshake('TLSv1.3'), { ok: true, code: 'TLSv1.3', message: '' });
  });

  it('runs no plain AMQP listener and binds AMQPS to 127.0.0.1 only', async () => {
    const listeners = await management.listeners();
    const protocols = listeners.map((listener) => listener.protocol).sort();
    assert.deepEqual(protocols, ['amqp/ssl', 'clustering', 'http', 'http/prometheus']);
    const amqps = listeners.find((listener) => listener.protocol === 'amqp/ssl');
    assert.equal(amqps?.ipAddress, '127.0.0.1');
    assert.equal(amqps?.port, harness.node().amqpsPort);

    // Plain AMQP spoken to the AMQPS port gets a TLS alert back, never an AMQP frame.
    const reply = await plainAmqpReply(harness.node().amqpsPort);
    assert.notEqual(reply[0], 1, 'an AMQP method frame came back over plain TCP');

    // Nothing of the node answers on this machine's other addresses.
    const external = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && !address.internal && address.family === 'IPv4');
    if (external) {
      for (const port of [harness.node().amqpsPort, harness.node().ports.management, harness.node().ports.prometheus]) {
        assert.equal(
          await tcpAccepts(external.address, port),
          false,
          `${external.address}:${port} accepted a connection`,
        );
      }
    }
  });

  function rawHandshake(version: SecureVersion): Promise<{ ok: boolean; code: string; message: string }> {
    return new Promise((resolve) => {
      const socket = tlsConnect(
        {
          host: '127.0.0.1',
          port: harness.node().amqpsPort,
          servername: 'localhost',
          minVersion: version,
          maxVersion: version,
          // Lets this client offer TLS 1.0/1.1 at all (OpenSSL 3 refuses them by default),
          // so that any refusal comes from the broker.
          ciphers: 'DEFAULT:@SECLEVEL=0',
          ca: harness.trustBundlePem,
          cert: alice.certificatePem,
          key: alice.privateKeyPem,
        },
        () => socket.write(AMQP_091_HEADER),
      );
      socket.once('data', () => {
        resolve({ ok: true, code: socket.getProtocol() ?? '', message: '' });
        socket.destroy();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        resolve({ ok: false, code: error.code ?? '', message: error.message });
        socket.destroy();
      });
    });
  }
});

function plainAmqpReply(port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = tcpConnect({ host: '127.0.0.1', port }, () => socket.write(AMQP_091_HEADER));
    socket.setTimeout(3000, () => socket.destroy());
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
