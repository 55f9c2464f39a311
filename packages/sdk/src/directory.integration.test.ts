/**
 * End-to-end protection with peer certificates from the CentOps directory:
 * the test CentOps (`startTestCentOps`: SQLite, its own CA, mTLS) and a
 * real single-node DMR data plane (NodeFixture: TLS broker, router, policy).
 *
 * Two CAs meet here only because the two fixtures each make their own: the
 * clients connect to the node with certificates of the fixture's CA, and use
 * the certificates CentOps issued them (enrolled with `enrol`, keys made
 * here) to talk to CentOps and for end-to-end protection. In a deployment
 * both are the same certificate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, NodeFixture, startTestCentOps, waitFor, type Credentials, type TestCentOps } from '@dmr/testkit';
import { isDmrError } from '@dmr/core';
import { DmrClient, type ReceivedMessage } from './client.js';
import { fixtureConnection, receivedProtected } from './test-support.js';
import { CentOpsDirectory } from './directory.js';
import { enrol, renewCertificate, type EnrolledIdentity } from './enrolment.js';

const TD = 'dmr.test';
const PROFILE = { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] };

function codeOf(error: unknown): string | undefined {
  return isDmrError(error) ? error.code : undefined;
}

describe('CentOpsDirectory: end-to-end protection with certificates from CentOps', () => {
  let testCentOps: TestCentOps | undefined;
  let centops: TestCentOps['server'];
  let caPem: string;
  let admin: Credentials;
  let node: NodeFixture;
  const identities = new Map<string, EnrolledIdentity>();
  const open: DmrClient[] = [];

  const api = async (path: string, method = 'GET', body?: unknown) => {
    const response = await call(`${centops.apiUrl}${path}`, {
      ca: caPem,
      method,
      credentials: admin,
      ...(body === undefined ? {} : { body }),
    });
    assert.ok(response.status < 300, `${method} ${path}: ${response.status} ${response.text}`);
    return response;
  };

  async function enrolInCentOps(id: string): Promise<EnrolledIdentity> {
    const token = (await api('/v1/tokens', 'POST', { id, ttl: '1h' })).json as { token: string };
    const identity = await enrol({ enrolUrl: centops.enrolUrl, token: token.token, id, caPem, trustDomain: TD });
    identities.set(id, identity);
    return identity;
  }

  function directoryFor(id: string, cacheTtlMs?: number): CentOpsDirectory {
    const identity = identities.get(id);
    if (identity === undefined) throw new Error(`${id} is not enrolled`);
    return new CentOpsDirectory({
      apiUrl: centops.apiUrl,
      tls: { cert: identity.chainPem, key: identity.keyPem, ca: identity.trustBundlePem },
      ...(cacheTtlMs === undefined ? {} : { cacheTtlMs }),
    });
  }

  /** A DmrClient on the node (fixture CA) whose peer checks go to `directory`. */
  async function connect(id: string, directory: CentOpsDirectory): Promise<DmrClient> {
    const amqp = await node.ca.issueWithKey({ kind: 'client', id });
    const client = await DmrClient.connect({
      ...fixtureConnection(node, id),
      tls: { cert: amqp.chainPem, key: amqp.privateKeyPem, ca: node.harness.trustBundlePem },
      checkCertificate: directory.checkCertificate,
    });
    open.push(client);
    return client;
  }

  /** rik-bot receiving protected messages, its senders' certificates from `directory`: what got through, what not. */
  async function protectedReceiver(directory: CentOpsDirectory) {
    const rik = await connect('rik-bot', directory);
    const handled: ReceivedMessage[] = [];
    const errors: Error[] = [];
    rik.on('error', (error) => errors.push(error));
    const subscription = await rik.receive((message) => void handled.push(message), {
      unprotect: { decryptWith: identities.get('rik-bot')?.keyPem ?? '', verifySender: directory.verifySender },
    });
    return {
      handled,
      errors,
      subscription,
      /** Waits for one outcome; asserts it was handled (no refusal) and returns it. */
      async one(): Promise<ReceivedMessage> {
        await waitFor('the message', () => handled.length === 1 || errors.length > 0);
        assert.deepEqual(
          errors.map((error) => error.message),
          [],
        );
        return handled[0] as ReceivedMessage;
      },
    };
  }

  /** Renews ria-bot's CentOps certificate (a new key); `identities` holds the new one afterwards. */
  async function renewRia(): Promise<{ before: EnrolledIdentity; renewed: EnrolledIdentity }> {
    const before = identities.get('ria-bot') as EnrolledIdentity;
    const renewed = await renewCertificate({
      apiUrl: centops.apiUrl,
      current: { cert: before.chainPem, key: before.keyPem, ca: before.trustBundlePem },
    });
    identities.set('ria-bot', renewed);
    return { before, renewed };
  }

  before(async () => {
    const clients = [
      ['ria-bot', 'ria'],
      ['ria-desk', 'ria'],
      ['rik-bot', 'rik'],
      ['ppa-bot', 'ppa'],
    ] as const;
    testCentOps = await startTestCentOps({
      label: 'sdk-directory',
      trustDomain: TD,
      organisations: { ria: 'ria', rik: 'rik', ppa: 'ppa' },
      nodes: ['node-a'],
      clients: clients.map(([id, organisation]) => ({ id, organisation })),
      lifetime: '7d',
    });
    ({ server: centops, rootPem: caPem, admin } = testCentOps);
    for (const [id] of clients) await enrolInCentOps(id);
    node = await NodeFixture.start({ label: 'sdk-directory' });
  });

  after(async () => {
    await Promise.all(open.map((client) => client.close({ drainTimeoutMs: 1_000 })));
    await node?.stop();
    await testCentOps?.close();
  });

  it('gives a client’s current certificate after checking it, and refuses what is not in the directory', async () => {
    const directory = directoryFor('ria-bot');
    const rik = identities.get('rik-bot') as EnrolledIdentity;
    const entry = await directory.certificateOf('rik-bot');
    assert.deepEqual(
      [entry.id, entry.serial, entry.chainPem, entry.status],
      ['rik-bot', rik.serial, rik.chainPem, 'active'],
    );
    await directory.checkCertificate(rik.chainPem, { id: 'rik-bot', use: 'encrypt' });
    assert.deepEqual(await directory.verifySender('rik-bot'), [rik.chainPem]);
    assert.deepEqual(await directory.protectFor('rik-bot', 'KEY'), { signWith: 'KEY', encryptFor: rik.chainPem });

    // Somebody else's certificate presented as rik-bot's: refused whatever CentOps says about rik-bot.
    const ppa = identities.get('ppa-bot') as EnrolledIdentity;
    await assert.rejects(directory.checkCertificate(ppa.chainPem, { id: 'rik-bot', use: 'encrypt' }), {
      code: 'CERTIFICATE_INVALID',
    });
    await assert.rejects(directory.checkCertificate(ppa.chainPem, { id: 'rik-bot', use: 'verify' }), {
      code: 'CERTIFICATE_INVALID',
    });
    await assert.rejects(directory.certificateOf('nobody-bot', 'encrypt'), { code: 'RECIPIENT_UNKNOWN' });
    await assert.rejects(directory.certificateOf('nobody-bot', 'verify'), { code: 'SENDER_UNKNOWN' });
    await assert.rejects(directory.certificateOf('Not An Id'), { code: 'INVALID_ID' });
    // CentOps knows far-bot nowhere; the node fixture does, which does not make it trustworthy here.
    await assert.rejects(directory.certificateOf('far-bot'), { code: 'RECIPIENT_UNKNOWN' });
  });

  it('end-to-end protected round trip through the node, both sides taking the peer certificate from CentOps', async () => {
    const riaDirectory = directoryFor('ria-bot');
    const rikDirectory = directoryFor('rik-bot');
    const ria = await connect('ria-bot', riaDirectory);
    const rik = await connect('rik-bot', rikDirectory);
    const handled: ReceivedMessage[] = [];
    const subscription = await rik.receive((message) => void handled.push(message), {
      unprotect: { decryptWith: identities.get('rik-bot')?.keyPem ?? '', verifySender: rikDirectory.verifySender },
    });
    const riaKey = identities.get('ria-bot')?.keyPem ?? '';
    const id = await ria.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: { text: 'konfidentsiaalne' },
      protect: await riaDirectory.protectFor('rik-bot', riaKey),
    });
    await receivedProtected(handled, id, { text: 'konfidentsiaalne' });
    await subscription.cancel();
  });

  it('a sender that renewed since the receiver cached its certificate: the receiver asks again and verifies', async () => {
    // A long cache: without asking again, the receiver would hold the old certificate for an hour.
    const rikDirectory = directoryFor('rik-bot', 3_600_000);
    const receiver = await protectedReceiver(rikDirectory);
    const ria = await connect('ria-bot', directoryFor('ria-bot'));
    const cached = await rikDirectory.certificateOf('ria-bot', 'verify');
    assert.equal(cached.serial, identities.get('ria-bot')?.serial, 'cached');
    const { renewed } = await renewRia();
    const id = await ria.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: 'signed with the renewed key',
      protect: { signWith: renewed.keyPem, encryptFor: identities.get('rik-bot')?.chainPem ?? '' },
    });
    const message = await receiver.one();
    assert.equal(message.id, id);
    assert.equal(message.body.toString('utf8'), 'signed with the renewed key');
    assert.equal((await rikDirectory.certificateOf('ria-bot', 'verify')).serial, renewed.serial, 'cache refreshed');
    await receiver.subscription.cancel();
  });

  it('a message signed just before the sender renewed verifies at a receiver that never saw the old certificate', async () => {
    // No cache at all: the receiver only ever sees what the directory says now.
    const rikDirectory = directoryFor('rik-bot', 0);
    const receiver = await protectedReceiver(rikDirectory);
    const ria = await connect('ria-bot', directoryFor('ria-bot'));
    const { before, renewed } = await renewRia();
    const listed = await rikDirectory.verifySender('ria-bot');
    assert.equal(listed[0], renewed.chainPem, 'the current certificate first');
    assert.ok(listed.includes(before.chainPem), 'the earlier one is listed while valid');
    // Signed (and encrypted) with the key ria-bot had a moment ago, delivered after the renewal.
    const id = await ria.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: 'signed just before the renewal',
      protect: { signWith: before.keyPem, encryptFor: identities.get('rik-bot')?.chainPem ?? '' },
    });
    assert.equal((await receiver.one()).id, id);
    await receiver.subscription.cancel();
  });

  it('a receiver refuses a message from a sender CentOps has revoked and denylisted: the handler never sees it', async () => {
    // A long cache, to show what forget() is for (the default is 60 s).
    const rikDirectory = directoryFor('rik-bot', 3_600_000);
    const rik = await connect('rik-bot', rikDirectory);
    // Its own CentOps identity is about to be revoked: it checks rik-bot's certificate through ria-bot's.
    const desk = await connect('ria-desk', directoryFor('ria-bot'));
    const handled: ReceivedMessage[] = [];
    const errors: Error[] = [];
    rik.on('error', (error) => errors.push(error));
    const subscription = await rik.receive((message) => void handled.push(message), {
      unprotect: { decryptWith: identities.get('rik-bot')?.keyPem ?? '', verifySender: rikDirectory.verifySender },
    });
    assert.equal((await rikDirectory.certificateOf('ria-desk', 'verify')).id, 'ria-desk', 'trusted, and cached');

    const deskIdentity = identities.get('ria-desk') as EnrolledIdentity;
    await api(`/v1/certificates/${deskIdentity.serial}/revoke`, 'POST', { reason: 'keyCompromise' });
    // The cached verdict still lets it through until cacheTtlMs (documented); forget makes the revocation immediate.
    assert.equal((await rikDirectory.certificateOf('ria-desk', 'verify')).id, 'ria-desk');
    rikDirectory.forget('ria-desk');
    // The node does not know CentOps' denylist in this fixture, so the message does reach rik's queue.
    const id = await desk.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: 'from a revoked sender',
      protect: { signWith: deskIdentity.keyPem, encryptFor: identities.get('rik-bot')?.chainPem ?? '' },
    });
    await waitFor('the refusal', () => errors.length === 1);
    const [refusal] = errors;
    assert.equal(codeOf(refusal), 'PROTECTION_INVALID');
    assert.equal(codeOf((refusal as Error).cause), 'SENDER_DENIED');
    assert.match((refusal as Error).message, new RegExp(id));
    assert.equal(handled.length, 0);
    await subscription.cancel();
    await assert.rejects(rikDirectory.certificateOf('ria-desk', 'verify'), { code: 'SENDER_DENIED' });

    // The denylist entry lifted, the certificate itself stays revoked.
    await api('/v1/denylist/ria-desk', 'DELETE');
    rikDirectory.forget();
    await assert.rejects(rikDirectory.certificateOf('ria-desk', 'verify'), { code: 'CERTIFICATE_REVOKED' });
  });

  it('a sender’s earlier certificate verifies while valid; once revoked, the CRL refuses it', async () => {
    const directory = directoryFor('ria-bot');
    const ppa = identities.get('ppa-bot') as EnrolledIdentity;
    const renewed = await renewCertificate({
      apiUrl: centops.apiUrl,
      current: { cert: ppa.chainPem, key: ppa.keyPem, ca: ppa.trustBundlePem },
    });
    identities.set('ppa-bot', renewed);
    assert.equal((await directory.certificateOf('ppa-bot', 'verify')).serial, renewed.serial, 'the newest is served');
    // A message signed just before the renewal: the earlier certificate is still genuine, valid and unrevoked.
    await directory.checkCertificate(ppa.chainPem, { id: 'ppa-bot', use: 'verify' });
    // But nothing is encrypted for a superseded key.
    await assert.rejects(directory.checkCertificate(ppa.chainPem, { id: 'ppa-bot', use: 'encrypt' }), {
      code: 'CERTIFICATE_INVALID',
    });
    // `superseded` revokes that serial alone (a newer one exists); any other reason revokes the whole identity.
    await api(`/v1/certificates/${ppa.serial}/revoke`, 'POST', { reason: 'superseded' });
    directory.forget();
    // The directory still serves the renewed certificate; the revoked one is caught by CentOps' CRL.
    await directory.checkCertificate(renewed.chainPem, { id: 'ppa-bot', use: 'verify' });
    const crlAware = directoryFor('ria-bot', 0);
    await assert.rejects(crlAware.checkCertificate(ppa.chainPem, { id: 'ppa-bot', use: 'verify' }), {
      code: 'CERTIFICATE_REVOKED',
    });
  });

  it('a suspended client is refused as inactive on both sides, and accepted again once active', async () => {
    const rikSpec = (status: string) => ({
      kind: 'Client',
      spec: {
        id: 'rik-bot',
        organisation: 'rik',
        homeNode: 'node-a',
        roles: ['bot'],
        labels: {},
        status,
        certificateProfile: PROFILE,
      },
    });
    const directory = directoryFor('ria-bot', 0);
    const ria = await connect('ria-bot', directory);
    const rik = identities.get('rik-bot') as EnrolledIdentity;
    await api('/v1/apply', 'POST', [rikSpec('suspended')]);
    try {
      await assert.rejects(directory.certificateOf('rik-bot', 'encrypt'), { code: 'RECIPIENT_INACTIVE' });
      await assert.rejects(directory.verifySender('rik-bot'), { code: 'SENDER_INACTIVE' });
      const confirmed = ria.stats.confirmed;
      await assert.rejects(
        ria.send({
          to: 'rik-bot',
          type: 'ChatMessage',
          body: 'to a suspended client',
          protect: { signWith: identities.get('ria-bot')?.keyPem ?? '', encryptFor: rik.chainPem },
        }),
        (error: unknown) => codeOf(error) === 'RECIPIENT_INACTIVE',
      );
      assert.equal(ria.stats.confirmed, confirmed, 'nothing was published');
    } finally {
      await api('/v1/apply', 'POST', [rikSpec('active')]);
    }
    assert.equal((await directory.certificateOf('rik-bot', 'encrypt')).status, 'active');
  });

  it('after the recipient’s certificate is revoked in CentOps, a protected send is refused before anything is published', async () => {
    const riaDirectory = directoryFor('ria-bot');
    const ria = await connect('ria-bot', riaDirectory);
    const rik = identities.get('rik-bot') as EnrolledIdentity;
    const riaKey = identities.get('ria-bot')?.keyPem ?? '';
    const protectBefore = await riaDirectory.protectFor('rik-bot', riaKey);
    await api(`/v1/certificates/${rik.serial}/revoke`, 'POST', { reason: 'keyCompromise' });
    riaDirectory.forget('rik-bot');
    const confirmed = ria.stats.confirmed;
    await assert.rejects(
      ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'secret', protect: protectBefore }),
      (error: unknown) => codeOf(error) === 'RECIPIENT_DENIED',
    );
    await assert.rejects(riaDirectory.protectFor('rik-bot', riaKey), { code: 'RECIPIENT_DENIED' });
    assert.equal(ria.unconfirmed, 0, 'nothing waits for a confirm');
    assert.equal(ria.stats.confirmed, confirmed, 'nothing was published');
  });
});
