/**
 * Server certificate and trust bundle hot swap on a running harness node:
 * the files are replaced (nothing else), and the next handshake uses them.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import type { CertificateAuthority } from '@dmr/pki';
import type { Channel, ChannelModel } from 'amqplib';
import { brokerStatus } from './control.js';
import { installBrokerTls, installCrlFile, trustBundleFor, writeFileAtomic } from '@dmr/broker';
import { type BrokerHarness } from './harness.js';
import { startBrokers } from './start-brokers.js';
import { readState } from './state.js';
import { issueClient, makeTempDir, makeTestCa, reportBoot, reportStop, type ClientMaterial } from './testing.js';
import { connectionError, waitFor } from '@dmr/core/testing';

describe('TLS hot swap on a running harness node', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;
  let harness: BrokerHarness;
  let alice: ClientMaterial;
  let live: ChannelModel;
  let liveChannel: Channel;

  before(async () => {
    temp = await makeTempDir('tls-rotation');
    ca = await makeTestCa(`${temp.path}/pki`);
    harness = await startBrokers({ dir: `${temp.path}/brokers`, ca, namePrefix: 'rot' });
    reportBoot('tls-rotation', harness);
    alice = await issueClient(ca, 'alice-bot');
    const management = harness.management();
    await management.createCertificateUser(alice.user);
    await management.setPermissions('/', alice.user, { configure: '.*', write: '.*', read: '.*' });
    live = await harness.connect(alice);
    live.on('error', () => undefined);
    liveChannel = await live.createChannel();
    await liveChannel.assertQueue('alice-live', { durable: false, autoDelete: false });
  });

  after(async () => {
    await live?.close().catch(() => undefined);
    if (harness) reportStop('tls-rotation', (await harness.stop()).ms);
    await temp?.remove();
  });

  /** The serial of the certificate the server presents to a new handshake. */
  function servedSerial(): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect(
        {
          host: '127.0.0.1',
          port: harness.node().amqpsPort,
          servername: 'localhost',
          ca: harness.trustBundlePem,
          cert: alice.certificatePem,
          key: alice.privateKeyPem,
        },
        () => {
          const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
          socket.destroy();
          resolve(serial);
        },
      );
      socket.on('error', reject);
    });
  }

  async function liveRoundTrip(text: string): Promise<void> {
    liveChannel.sendToQueue('alice-live', Buffer.from(text));
    const message = await waitFor('the live connection to get its message back', () =>
      liveChannel.get('alice-live', { noAck: true }),
    );
    assert.equal(message.content.toString(), text);
  }

  async function newServerCertificate(): Promise<{ chainPem: string; privateKeyPem: string; serial: string }> {
    const node = harness.node();
    return ca.issueWithKey({ kind: 'node', id: node.name, dns: ['localhost'], ips: ['127.0.0.1'] });
  }

  it('serves a new server certificate on the next handshake; a live connection keeps working', async () => {
    const s1 = harness.node().certificate.serial;
    assert.equal(await servedSerial(), s1);
    await liveRoundTrip('before');

    const next = await newServerCertificate();
    assert.notEqual(next.serial, s1);
    const started = Date.now();
    const installed = await harness.installServerCertificate(0, next);
    assert.equal(installed.serial, next.serial);
    // The very next handshake, no waiting: the broker reads the files on every handshake (bypass_pem_cache).
    assert.equal(await servedSerial(), next.serial);
    process.stdout.write(
      `# server certificate swap visible after ${Date.now() - started} ms (incl. write + handshake)\n`,
    );

    await liveRoundTrip('after');
    await (await harness.connect(alice)).close();
    assert.equal(harness.node().certificate.serial, next.serial);
    assert.equal((await readState(harness.dir)).nodes[0]?.certificate.serial, next.serial);
    assert.equal((await stat(harness.node().tls.keyFile)).mode & 0o777, 0o600);
  });

  it('installs with installBrokerTls from the paths alone (another process: dmr broker status gives them)', async () => {
    const status = await brokerStatus(harness.dir);
    const tls = status.nodes[0]?.tls;
    assert.ok(tls);
    assert.deepEqual(tls, harness.node().tls);
    const next = await newServerCertificate();
    await installBrokerTls({ tls, chainPem: next.chainPem, privateKeyPem: next.privateKeyPem });
    assert.equal(await servedSerial(), next.serial);
    await liveRoundTrip('still');
  });

  it('refuses a key that does not belong to the certificate, and changes nothing', async () => {
    const before = await readFile(harness.node().tls.certFile, 'utf8');
    const served = await servedSerial();
    const a = await newServerCertificate();
    const b = await newServerCertificate();
    await assert.rejects(
      harness.installServerCertificate(0, { chainPem: a.chainPem, privateKeyPem: b.privateKeyPem }),
      (error: unknown) => error instanceof DmrError && error.code === 'CERTIFICATE_INVALID',
    );
    assert.equal(await readFile(harness.node().tls.certFile, 'utf8'), before);
    assert.equal(await servedSerial(), served);
  });

  it('trusts a second CA once the bundle holds its root and its CRL is installed', async () => {
    const second = await makeTestCa(`${temp.path}/second-pki`, 'second.test');
    const bob = await issueClient(second, 'bob-bot');
    await harness.management().createCertificateUser(bob.user);
    await harness.management().setPermissions('/', bob.user, { configure: '', write: '', read: '' });

    const unknown = await connectionError(() => harness.connect(bob));
    assert.equal(unknown.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', unknown.message);

    const bundle = `${harness.trustBundlePem}${trustBundleFor(second)}`;
    // Only the file, no reload: while a connection is open (the live one), OTP keeps using the cached bundle.
    await writeFileAtomic(harness.node().tls.caFile, bundle, 0o644);
    const cached = await connectionError(() => harness.connect(bob));
    assert.equal(cached.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', cached.message);

    const started = Date.now();
    assert.deepEqual(await harness.installTrustBundle(bundle), { certificates: 4 });
    process.stdout.write(`# trust bundle install incl. ssl:clear_pem_cache(): ${Date.now() - started} ms\n`);

    // With {crl_check, peer}, a trusted CA without a CRL in the CRL directory still locks its clients out
    // (alert 42 bad_certificate, not 48 unknown_ca: the bundle is in use).
    const noCrl = await connectionError(() => harness.connect(bob));
    assert.equal(noCrl.code, 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', noCrl.message);

    await installCrlFile(harness.node().tls.crlDir, await second.createCrl({ nextUpdateMs: 3600_000 }));
    await (await harness.connect(bob)).close();
    // The first CA's clients and the live connection are unaffected.
    await (await harness.connect(alice)).close();
    await liveRoundTrip('bundle');
  });

  it('refuses a trust bundle holding a leaf certificate', async () => {
    await assert.rejects(
      harness.installTrustBundle(`${harness.trustBundlePem}${alice.certificatePem}`),
      (error: unknown) => error instanceof DmrError && error.code === 'CERTIFICATE_INVALID',
    );
  });
});
