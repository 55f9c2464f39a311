/**
 * Enrolment with a bootstrap token and automatic renewal before expiry,
 * against the real parts: CentOps in process (real mutual TLS, its own CA)
 * and a DMR node (NodeFixture) whose broker, policy signer and fixture
 * clients use CentOps' CA, so the broker accepts what CentOps issues.
 *
 * `ria-desk` enrols with a token, connects with `renew`, and renews twice:
 * once on demand (renewNow) while it sends, once by the timer with a
 * certificate that lives for seconds. Every message sent before, during and
 * after a renewal reaches `rik-bot` exactly once.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDmrError } from '@dmr/core';
import { createCsr } from '@dmr/pki';
import { clientUser, NodeFixture, startTestCentOps, type TestCentOps, waitFor } from '@dmr/testkit';
import { DmrClient, type ClientState } from './client.js';
import { fixtureConnection } from './test-support.js';
import { enrol, renewCertificate, type EnrolledIdentity } from './enrolment.js';

interface BrokerConnection {
  name: string;
  user?: string;
  /** RabbitMQ's `<notBefore> - <notAfter>` of the certificate the client presented, e.g. `2026-11-27T21:00:08Z - …`. */
  peer_cert_validity?: string;
}

/** Whether `connection` presented a certificate that expires at `notAfter` (whole seconds, as X.509 has them). */
function presents(connection: BrokerConnection | undefined, notAfter: Date): boolean {
  const end = notAfter.toISOString().replace(/\.\d+Z$/, 'Z');
  return connection?.peer_cert_validity?.endsWith(` - ${end}`) === true;
}

describe('SDK enrolment and certificate renewal through a real CentOps and node', () => {
  let centops: TestCentOps;
  let node: NodeFixture;
  const open: DmrClient[] = [];

  before(async () => {
    centops = await startTestCentOps({
      label: 'sdk-renewal',
      organisations: { ria: 'RIA', rik: 'RIK' },
      nodes: ['node-a'],
      clients: [
        { id: 'ria-desk', organisation: 'ria' },
        { id: 'rik-bot', organisation: 'rik' },
      ],
    });
    node = await NodeFixture.start({ label: 'sdk-renewal', ca: centops.server.ca });
  });

  after(async () => {
    await Promise.all(open.map((client) => client.close({ drainTimeoutMs: 1_000 })));
    await node?.stop();
    await centops?.close();
  });

  const base = (id: string) => fixtureConnection(node, id);

  /** Enrols `id` with a one-time token, as a new client does. */
  const enrolWithToken = async (id: string): Promise<EnrolledIdentity> =>
    enrol({ enrolUrl: centops.server.enrolUrl, token: await centops.token(id), id, caPem: centops.trustBundlePem });

  /** rik-bot (an enrolled client too), recording how often each message id reached its handler. */
  async function recipient(): Promise<{ client: DmrClient; handled: Map<string, number> }> {
    const identity = await enrolWithToken('rik-bot');
    const client = await DmrClient.connect({
      ...base('rik-bot'),
      tls: { cert: identity.chainPem, key: identity.keyPem, ca: identity.trustBundlePem },
    });
    open.push(client);
    const handled = new Map<string, number>();
    await client.receive((message) => {
      handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
    });
    return { client, handled };
  }

  /** The broker connections of client `id` (its broker user is its SPIFFE id). */
  async function connections(id: string): Promise<BrokerConnection[]> {
    const list = (await node.management.request('GET', '/connections')) as BrokerConnection[];
    return list.filter((connection) => connection.user === clientUser(id));
  }

  it('enrols with a token, renews on demand while sending: new key and serial, same stream, nothing lost', async (t) => {
    const enrolled = await enrolWithToken('ria-desk');
    const desk = await DmrClient.connect({
      ...base('ria-desk'),
      tls: { cert: enrolled.chainPem, key: enrolled.keyPem, ca: enrolled.trustBundlePem },
      renew: { apiUrl: centops.server.apiUrl },
    });
    open.push(desk);
    const renewed: EnrolledIdentity[] = [];
    const states: ClientState[] = [];
    desk.on('renewed', (identity) => renewed.push(identity));
    desk.on('state', (state) => states.push(state));
    const rik = await recipient();

    // The broker shows which certificate a connection presented only by its validity: give the next
    // certificate a different lifetime so the two cannot be mistaken for each other.
    await waitFor('the connection with the enrolled certificate', async () =>
      (await connections('ria-desk')).some((connection) => presents(connection, enrolled.notAfter)),
    );
    await centops.setLifetime('ria-desk', '3h');

    const sent: string[] = [];
    const send = async (label: string): Promise<void> => {
      sent.push(await desk.send({ to: 'rik-bot', type: 'ChatMessage', body: { label } }));
    };
    for (let i = 0; i < 10; i += 1) await send(`before ${i}`);
    // Sends in flight while the client renews and reconnects: unconfirmed ones go out again on the new connection.
    const during = Promise.all(Array.from({ length: 20 }, (_, i) => send(`during ${i}`)));
    const identity = await desk.renewNow();
    await during;
    await waitFor('the reconnect', () => states.includes('reconnecting') && desk.state === 'open');
    for (let i = 0; i < 10; i += 1) await send(`after ${i}`);

    assert.deepEqual(renewed, [identity], 'one `renewed` event with what renewNow returned');
    assert.notEqual(identity.serial, enrolled.serial);
    assert.notEqual(identity.keyPem, enrolled.keyPem);
    assert.equal(desk.certificatePem, identity.chainPem);
    assert.ok(identity.notAfter.getTime() - enrolled.notAfter.getTime() > 3_600_000, 'the 3 h profile applied');

    // The broker connection now open presents the renewed certificate, and only that one is left.
    await waitFor('the broker connection with the renewed certificate only', async () => {
      const now = await connections('ria-desk');
      return now.length === 1 && presents(now[0], identity.notAfter);
    });

    await waitFor('every message at rik-bot', () => sent.every((id) => rik.handled.has(id)));
    assert.equal(sent.length, 40);
    assert.equal(new Set(sent).size, 40);
    for (const id of sent) assert.equal(rik.handled.get(id), 1, `message ${id} handled once`);

    // What CentOps does with the certificate that was just replaced (it is not revoked by a renewal).
    const again = await renewCertificate({
      apiUrl: centops.server.apiUrl,
      current: { cert: enrolled.chainPem, key: enrolled.keyPem, ca: enrolled.trustBundlePem },
    }).then(
      () => 'accepted',
      (error: unknown) => `refused (${String((error as { code?: unknown }).code)})`,
    );
    t.diagnostic(`a renewal with the replaced certificate: ${again}`);

    await Promise.all([desk.close(), rik.client.close()]);
  });

  it('renews by itself at 2/3 of a short lifetime, and keeps working after the old certificate expired', async () => {
    await centops.setLifetime('ria-desk', '1h');
    const now = Date.now();
    // CentOps' profiles live for an hour at least; its CA (the same one CentOps signs with) issues a
    // certificate that lives for 8 s. Explicit notBefore: the CA back-dates by a minute otherwise.
    const shortLived = await centops.server.ca.issueWithKey({
      kind: 'client',
      id: 'ria-desk',
      notBefore: new Date(now - 1_000),
      notAfter: new Date(now + 8_000),
    });
    const desk = await DmrClient.connect({
      ...base('ria-desk'),
      tls: { cert: shortLived.chainPem, key: shortLived.privateKeyPem, ca: centops.trustBundlePem },
      renew: { apiUrl: centops.server.apiUrl },
    });
    open.push(desk);
    const renewed: EnrolledIdentity[] = [];
    desk.on('renewed', (identity) => renewed.push(identity));
    let reconnects = 0;
    desk.on('state', (state) => {
      if (state === 'reconnecting') reconnects += 1;
    });
    const rik = await recipient();
    const sent = [await desk.send({ to: 'rik-bot', type: 'ChatMessage', body: 'before the timer' })];

    await waitFor('the timed renewal', () => renewed.length === 1);
    const identity = renewed[0] as EnrolledIdentity;
    assert.notEqual(identity.serial, shortLived.serial);
    assert.notEqual(identity.keyPem, shortLived.privateKeyPem);
    assert.ok(identity.notAfter.getTime() > now + 3_000_000, 'the profile lifetime (1 h), not 8 s');
    await waitFor('the broker connection with the renewed certificate only', async () => {
      const listed = await connections('ria-desk');
      return listed.length === 1 && presents(listed[0], identity.notAfter);
    });

    // Once the old certificate has expired the broker would refuse it: a connection that is cut now comes
    // back only because the client presents the renewed one.
    await sleep(Math.max(0, now + 8_500 - Date.now()));
    const before = reconnects;
    for (const connection of await connections('ria-desk')) {
      await node.management
        .request('DELETE', `/connections/${encodeURIComponent(connection.name)}`)
        .catch(() => undefined); // already gone
    }
    await waitFor('the client to notice the cut', () => reconnects > before);
    await waitFor('the client to be back', () => desk.state === 'open');
    sent.push(await desk.send({ to: 'rik-bot', type: 'ChatMessage', body: 'after expiry' }));
    await waitFor('both messages at rik-bot', () => sent.every((id) => rik.handled.has(id)));
    for (const id of sent) assert.equal(rik.handled.get(id), 1);
    assert.equal(renewed.length, 1, 'the renewed certificate (1 h) is not renewed again yet');

    await Promise.all([desk.close(), rik.client.close()]);
  });

  it('renews a certificate that expired while the client was down with a proof of its key (enrolUrl), not without', async () => {
    const enrolled = await enrolWithToken('ria-desk');
    // The same key under a certificate that expired a moment ago, from CentOps' own CA (as its last one was).
    const intermediate = new X509Certificate(enrolled.chainPem.split(/(?<=-----END CERTIFICATE-----)/)[1] ?? '');
    const expired = await centops.server.ca.issue({
      csrPem: await createCsr({
        id: 'ria-desk',
        kind: 'client',
        trustDomain: 'dmr.test',
        privateKeyPem: enrolled.keyPem,
      }),
      kind: 'client',
      id: 'ria-desk',
      notBefore: new Date(intermediate.validFrom),
      notAfter: new Date(Date.now() - 1_000),
    });
    const current = { cert: expired.chainPem, key: enrolled.keyPem, ca: enrolled.trustBundlePem };
    await assert.rejects(renewCertificate({ apiUrl: centops.server.apiUrl, current }), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'CERTIFICATE_INVALID');
      assert.match(error.hint ?? '', /enrolUrl/);
      return true;
    });
    const renewed = await renewCertificate({
      apiUrl: centops.server.apiUrl,
      enrolUrl: centops.server.enrolUrl,
      current,
    });
    assert.notEqual(renewed.serial, expired.serial.toLowerCase());
    assert.ok(renewed.notAfter.getTime() > Date.now());
    assert.notEqual(renewed.keyPem, enrolled.keyPem);
  });

  it('end-to-end protection across the recipient’s renewal: its previous key still decrypts, by default', async () => {
    // Earlier tests' consumers of rik-bot's queue would take a share of the messages.
    await Promise.all(open.splice(0).map((client) => client.close({ drainTimeoutMs: 1_000 })));
    const [deskIdentity, rikIdentity] = await Promise.all([enrolWithToken('ria-desk'), enrolWithToken('rik-bot')]);
    const desk = await DmrClient.connect({
      ...base('ria-desk'),
      tls: { cert: deskIdentity.chainPem, key: deskIdentity.keyPem, ca: deskIdentity.trustBundlePem },
    });
    const rik = await DmrClient.connect({
      ...base('rik-bot'),
      tls: { cert: rikIdentity.chainPem, key: rikIdentity.keyPem, ca: rikIdentity.trustBundlePem },
      renew: { apiUrl: centops.server.apiUrl },
    });
    open.push(desk, rik);
    const handled = new Map<string, string>();
    const errors: Error[] = [];
    rik.on('error', (error) => errors.push(error));
    // No decryptWith: the client's own key, and after a renewal also the one it had before.
    await rik.receive(
      (message) => {
        assert.equal(message.protected, true);
        handled.set(message.id, message.body.toString('utf8'));
      },
      { unprotect: { verifySender: () => deskIdentity.chainPem } },
    );
    const send = (text: string, encryptFor: string): Promise<string> =>
      desk.send({
        to: 'rik-bot',
        type: 'ChatMessage',
        body: text,
        protect: { signWith: deskIdentity.keyPem, encryptFor },
      });

    const before = await send('for the enrolled certificate', rikIdentity.chainPem);
    await waitFor('the first message', () => handled.has(before));
    const renewed = await rik.renewNow();
    await waitFor('the reconnect with the renewed certificate', () => rik.state === 'open');
    // A sender that has not seen the renewal yet (a cached directory answer) encrypts for the previous certificate.
    const stale = await send('for the previous certificate', rikIdentity.chainPem);
    const fresh = await send('for the renewed certificate', renewed.chainPem);
    await waitFor('both messages', () => handled.has(stale) && handled.has(fresh));
    assert.deepEqual(
      [handled.get(before), handled.get(stale), handled.get(fresh)],
      ['for the enrolled certificate', 'for the previous certificate', 'for the renewed certificate'],
    );
    assert.deepEqual(
      errors.map((error) => error.message),
      [],
    );
  });
});
