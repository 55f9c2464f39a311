/**
 * Which certificate logs in as which broker user, on a real harness node.
 * The broker names the login by the certificate's first URI SAN, its SPIFFE
 * id, so only a client certificate logs in as a client and only a node
 * certificate as a node. Every test also creates the user a CN login would
 * have picked (`alice-bot`, `api`, …) with full access, so a broker that
 * still logged in by CN would let the impostor in and the test would fail.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spiffeId } from '@dmr/core';
import type { CertificateAuthority, IssueWithKeyOptions } from '@dmr/pki';
import { installCrlFile, trustBundleFor, type ManagementClient } from '@dmr/broker';
import { type BrokerHarness } from './harness.js';
import { startBrokers } from './start-brokers.js';
import {
  TEST_TRUST_DOMAIN,
  issueClient,
  makeTempDir,
  makeTestCa,
  reportBoot,
  reportStop,
  type ClientMaterial,
} from './testing.js';
import { connectionError } from '@dmr/core/testing';

const ACCESS_REFUSED = /403 \(ACCESS-REFUSED\)/;

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('broker login by SPIFFE id (URI SAN), not by CN', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;
  let harness: BrokerHarness;
  let management: ManagementClient;
  let alice: ClientMaterial;

  async function material(options: IssueWithKeyOptions): Promise<{ certificatePem: string; privateKeyPem: string }> {
    const issued = await ca.issueWithKey(options);
    return { certificatePem: issued.chainPem, privateKeyPem: issued.privateKeyPem };
  }

  /** A user with every permission on '/', so a login as it would succeed. */
  async function openUser(name: string): Promise<void> {
    await management.createCertificateUser(name);
    await management.setPermissions('/', name, { configure: '.*', write: '.*', read: '.*' });
  }

  /**
   * RabbitMQ confirms a publish whose user_id is the authenticated user's
   * name and closes the channel (406) otherwise: a confirmed publish proves
   * who the connection logged in as, in one round trip.
   */
  async function assertLoggedInAs(
    certificate: { certificatePem: string; privateKeyPem: string },
    user: string,
  ): Promise<void> {
    const connection = await harness.connect(certificate);
    connection.on('error', () => undefined);
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      channel.publish('', 'nowhere', Buffer.from('who am I'), { userId: user });
      await channel.waitForConfirms();
    } finally {
      await connection.close().catch(() => undefined);
    }
  }

  before(async () => {
    temp = await makeTempDir('spiffe-login');
    ca = await makeTestCa(`${temp.path}/pki`);
    harness = await startBrokers({ dir: `${temp.path}/brokers`, ca, namePrefix: 'spiffe' });
    reportBoot('spiffe-login', harness);
    management = harness.management();
    alice = await issueClient(ca, 'alice-bot');
    for (const id of ['alice-bot', 'api', 'config-signer', 'policy-signer', 'node-a']) {
      // What a CN login would map each impostor below to.
      await openUser(id);
    }
    for (const id of ['alice-bot', 'api', 'config-signer', 'policy-signer']) {
      await openUser(spiffeId(TEST_TRUST_DOMAIN, 'client', id));
    }
    await openUser(spiffeId(TEST_TRUST_DOMAIN, 'node', 'node-a'));
  });

  after(async () => {
    if (harness) reportStop('spiffe-login', (await harness.stop()).ms);
    await temp?.remove();
  });

  it('logs a client certificate in as its SPIFFE id', async () => {
    await assertLoggedInAs(alice, 'spiffe://dmr.test/client/alice-bot');
  });

  it('logs a node certificate in as its node SPIFFE id (DNS SANs do not count)', async () => {
    const node = await material({ kind: 'node', id: 'node-a', dns: ['localhost'], ips: ['127.0.0.1'] });
    await assertLoggedInAs(node, 'spiffe://dmr.test/node/node-a');
  });

  it('refuses an operator certificate whose CN is a client id (403), where the client’s own logs in', async () => {
    const operator = await material({ kind: 'operator', id: 'alice-bot', role: 'admin' });
    const error = await connectionError(() => harness.connect(operator));
    assert.match(error.message, ACCESS_REFUSED);
    await assertLoggedInAs(alice, alice.user);
  });

  it('names an operator login by its SPIFFE id (the first URI SAN), not by its role URN', async () => {
    const user = `spiffe://${TEST_TRUST_DOMAIN}/operator/carol`;
    await openUser('urn:dmr:role:viewer');
    const operator = await material({ kind: 'operator', id: 'carol', role: 'viewer' });
    assert.match((await connectionError(() => harness.connect(operator))).message, ACCESS_REFUSED);
    // Only once a user of the operator's SPIFFE id exists (DMR never creates one) does it log in, as exactly that.
    await openUser(user);
    try {
      await assertLoggedInAs(operator, 'spiffe://dmr.test/operator/carol');
    } finally {
      await management.deleteUser(user);
      await management.deleteUser('urn:dmr:role:viewer');
    }
  });

  it('refuses CentOps’ API certificate (CN api) even where a client named api exists', async () => {
    const api = await material({ kind: 'centops', id: 'api', dns: ['localhost'] });
    const error = await connectionError(() => harness.connect(api));
    // Its extended key usage is serverAuth only: the broker's TLS stack refuses it as a client (alert 40).
    assert.equal(error.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', error.message);
  });

  it('refuses the config and policy signer certificates (403) even where clients of those names exist', async () => {
    for (const id of ['config-signer', 'policy-signer'] as const) {
      const signer = await material({ kind: 'centops', id });
      const error = await connectionError(() => harness.connect(signer));
      assert.match(error.message, ACCESS_REFUSED, id);
    }
  });

  it('refuses a node certificate named like a client (403)', async () => {
    const node = await material({ kind: 'node', id: 'alice-bot', dns: ['localhost'] });
    assert.match((await connectionError(() => harness.connect(node))).message, ACCESS_REFUSED);
  });

  it('refuses a client certificate named like a node, i.e. as a peer or router (403)', async () => {
    const client = await issueClient(ca, 'node-a');
    assert.match((await connectionError(() => harness.connect(client))).message, ACCESS_REFUSED);
  });

  it('refuses a certificate of the CA that has no URI SAN, whatever its CN (403)', async () => {
    // Forged with the intermediate's own key: the DMR CA never issues such a certificate, older tools might.
    const dir = temp.path;
    const key = join(dir, 'cn-only.key');
    const csr = join(dir, 'cn-only.csr');
    const cert = join(dir, 'cn-only.crt');
    const extensions = join(dir, 'cn-only.ext');
    await writeFile(extensions, 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key);
    openssl('req', '-new', '-key', key, '-subj', '/CN=alice-bot', '-out', csr);
    openssl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(ca.dir, 'intermediate.crt'),
      '-CAkey',
      join(ca.dir, 'intermediate.key'),
      '-set_serial',
      '0x' + 'ab'.repeat(16),
      '-days',
      '1',
      '-extfile',
      extensions,
      '-out',
      cert,
    );
    const certificatePem = openssl('x509', '-in', cert);
    const privateKeyPem = openssl('pkey', '-in', key);
    const error = await connectionError(() =>
      harness.connect({ certificatePem: certificatePem + ca.intermediateCertificatePem, privateKeyPem }),
    );
    assert.match(error.message, ACCESS_REFUSED);
  });

  // Last: it widens the broker's trust bundle for the rest of the file.
  it('refuses a client of another trust domain whose root the broker trusts (403)', async () => {
    const other = await makeTestCa(`${temp.path}/other-pki`, 'other.test');
    const foreigner = await issueClient(other, 'alice-bot');
    await harness.installTrustBundle(`${harness.trustBundlePem}${trustBundleFor(other)}`);
    await installCrlFile(harness.node().tls.crlDir, await other.createCrl({ nextUpdateMs: 3600_000 }));
    assert.equal(foreigner.user, 'spiffe://other.test/client/alice-bot');
    assert.match((await connectionError(() => harness.connect(foreigner))).message, ACCESS_REFUSED);
    // The same trust lets that domain's clients in once a user of their SPIFFE id exists: the TLS path works.
    await openUser(foreigner.user);
    await assertLoggedInAs(foreigner, 'spiffe://other.test/client/alice-bot');
    await management.deleteUser(foreigner.user);
    await assertLoggedInAs(alice, alice.user);
  });
});
