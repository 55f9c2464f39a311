/**
 * The configuration feed through the real CentOps server: mutual TLS on
 * both ends, nodes enrolled with their own certificates through the
 * enrolment listener, documents verified as a node verifies them
 * (verifyNodeConfig against the trust bundle, signer
 * spiffe://<td>/centops/config-signer). Against SQLite and PostgreSQL.
 * (feed/feed.integration.test.ts covers the feed's HTTP details behind a
 * header stand-in; this is the same path with certificates.)
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@dmr/core/testing';
import { createCsr, generatePrivateKey, normaliseSerial } from '@dmr/pki';
import { verifyNodeConfig, type NodeConfig } from '../feed/index.js';
import { openSse, type SseClient, type SseEvent } from '../feed/sse-client.js';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, link, node, organisation } from '../store/test-support/fixtures.js';
import type { CentOpsServer } from './app.js';
import { startEmptyCentOps, type EmptyCentOps, type TestCallOptions } from './test-support/empty-centops.js';
import type { Credentials, Response } from './test-support/https.js';

const TD = 'dmr.test';
const SIGNER = `spiffe://${TD}/centops/config-signer`;
const TALLINN = 'dmr-tallinn';
const TARTU = 'dmr-tartu';

function errorCode(response: Response): string | undefined {
  return (response.json as { error?: { code?: string } } | undefined)?.error?.code;
}

/** The next `config` event with a revision above `after`, skipping re-sends. */
async function nextConfig(stream: SseClient, after: number, timeoutMs = 10_000): Promise<SseEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const event = await stream.next(Math.max(1, deadline - Date.now()));
    if (event.event === 'config' && Number(event.id) > after) return event;
  }
}

function suite(backend: Backend): void {
  describe(`config feed over mutual TLS on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: EmptyCentOps;
    let server: CentOpsServer;
    let ca: string;
    const nodes = new Map<string, { credentials: Credentials; serial: string; agent: Agent }>();
    const streams: SseClient[] = [];

    const api = (path: string, options: TestCallOptions = {}) => centops.api(path, options);
    const as = (id: string): Credentials => {
      const entry = nodes.get(id);
      assert.ok(entry, `${id} is enrolled`);
      return entry.credentials;
    };
    const verify = (jws: string, nodeId: string, minRevision?: number) =>
      verifyNodeConfig(jws, { trustBundlePem: ca, expectedSigner: SIGNER, expectedNodeId: nodeId, minRevision });
    const revision = async () => ((await api('/v1/status')).json as { revision: number }).revision;

    async function enrolNode(id: string): Promise<void> {
      const { serial, ...credentials } = await centops.enrol(id, { kind: 'node', dns: [`${id}.dmr.example.ee`] });
      nodes.get(id)?.agent.destroy();
      nodes.set(id, { credentials, serial, agent: new Agent({ ca, ...credentials }) });
    }

    async function stream(id: string): Promise<SseClient> {
      const agent = nodes.get(id)?.agent;
      assert.ok(agent);
      const opened = await openSse(`${server.apiUrl}/v1/nodes/${id}/config/stream`, {}, agent);
      streams.push(opened);
      return opened;
    }

    async function addClient(id: string, homeNode = TALLINN): Promise<number> {
      const created = await api('/v1/clients', { method: 'POST', body: client(id, 'police', homeNode) });
      assert.equal(created.status, 201, created.text);
      return (created.json as { revision: number }).revision;
    }

    before(async () => {
      await backend.setup();
      centops = await startEmptyCentOps({
        label: 'centops-feed',
        trustDomain: TD,
        database: await backend.fresh(),
        // A slow poll: every delivery below must come from the server's own publish, not the poll.
        server: { pollIntervalMs: 60_000 },
      });
      ({ server, rootPem: ca } = centops);
      const applied = await api('/v1/apply', {
        method: 'POST',
        body: [
          { kind: 'Organisation', spec: organisation('police') },
          { kind: 'Node', spec: node(TALLINN) },
          { kind: 'Node', spec: node(TARTU) },
          { kind: 'Link', spec: link(TALLINN, TARTU) },
          { kind: 'Client', spec: client('police-bot', 'police', TALLINN) },
        ],
      });
      assert.equal(applied.status, 200, applied.text);
      await enrolNode(TALLINN);
      await enrolNode(TARTU);
    });

    after(async () => {
      for (const opened of streams) opened.close();
      for (const entry of nodes.values()) entry.agent.destroy();
      await centops?.close();
      await backend.teardown();
    });

    it('a node streams its own signed configuration; an operator’s change reaches it and verifies', async () => {
      const tallinn = await stream(TALLINN);
      assert.equal(tallinn.status, 200);
      assert.match(String(tallinn.headers['content-type']), /^text\/event-stream/);
      const first = await nextConfig(tallinn, -1);
      const current = await revision();
      assert.equal(Number(first.id), current);
      const verified = await verify(first.data, TALLINN);
      assert.equal(verified.signer.uri, SIGNER);
      assert.equal(verified.config.node.id, TALLINN);
      assert.equal(verified.config.revision, current);
      assert.deepEqual(
        verified.config.links.map((entry) => entry.peer),
        [TARTU],
      );
      // Both enrolments are in the document: the peer's certificate, pinned by fingerprint.
      assert.equal(
        verified.config.links[0]?.peerCertificates[0]?.serial,
        normaliseSerial(nodes.get(TARTU)?.serial ?? ''),
      );

      const changed = await addClient('tax-bot');
      const event = await nextConfig(tallinn, current);
      assert.equal(Number(event.id), changed);
      const next = await verify(event.data, TALLINN, current);
      assert.equal(next.config.revision, changed);
      assert.ok(next.config.clients.some((entry) => entry.id === 'tax-bot'));

      // Another node's document, or a tampered one, does not verify as this node's.
      await assert.rejects(verify(event.data, TARTU), /node configuration refused \(node\)/);
      const [header, payload, signature] = event.data.split('.') as [string, string, string];
      const document = JSON.parse(Buffer.from(payload, 'base64url').toString()) as NodeConfig;
      const forged = Buffer.from(JSON.stringify({ ...document, clients: [] })).toString('base64url');
      await assert.rejects(verify(`${header}.${forged}.${signature}`, TALLINN), /refused \(signature\)/);
    });

    it('a node long-polls its configuration with If-None-Match; 304 when nothing changed', async () => {
      const credentials = as(TARTU);
      const got = await api(`/v1/nodes/${TARTU}/config`, { credentials });
      assert.equal(got.status, 200, got.text);
      assert.match(String(got.headers['content-type']), /^application\/jose/);
      const etag = String(got.headers.etag);
      const before = (await verify(got.text, TARTU)).config.revision;
      assert.equal(etag, `"${before}"`);

      const unchanged = await api(`/v1/nodes/${TARTU}/config?wait=1`, {
        credentials,
        headers: { 'if-none-match': etag },
      });
      assert.equal(unchanged.status, 304);

      const parked = server.feedWaiters();
      const waiting = api(`/v1/nodes/${TARTU}/config?wait=20`, { credentials, headers: { 'if-none-match': etag } });
      // The change must come while the request waits, or it would be answered at once and prove nothing.
      await waitFor('the long-poll to wait', () => server.feedWaiters() > parked);
      const changed = await addClient('tartu-bot', TARTU);
      const answered = await waiting;
      assert.equal(answered.status, 200, answered.text);
      assert.equal(answered.headers.etag, `"${changed}"`);
      const verified = await verify(answered.text, TARTU, before);
      assert.ok(verified.config.clients.some((entry) => entry.id === 'tartu-bot'));
    });

    it('a node cannot read another node’s configuration or report for it; a client reads none', async () => {
      const tallinn = as(TALLINN);
      const other = await api(`/v1/nodes/${TARTU}/config`, { credentials: tallinn });
      assert.equal(other.status, 403, other.text);
      assert.equal(errorCode(other), 'FORBIDDEN');
      const otherStream = await openSse(
        `${server.apiUrl}/v1/nodes/${TARTU}/config/stream`,
        {},
        nodes.get(TALLINN)?.agent,
      );
      streams.push(otherStream);
      assert.equal(otherStream.status, 403);
      const report = await api(`/v1/nodes/${TARTU}/status`, {
        method: 'PUT',
        credentials: tallinn,
        body: { appliedRevision: 1 },
      });
      assert.equal(report.status, 403);
      const registry = await api('/v1/nodes', { credentials: tallinn });
      assert.equal(registry.status, 403, 'a node learns the registry from its document only');

      const asClient = await centops.enrol('police-bot');
      assert.equal((await api(`/v1/nodes/${TALLINN}/config`, { credentials: asClient })).status, 403);
    });

    it('a node reports its status; GET /v1/status and the node’s status show it', async () => {
      const current = await revision();
      const reported = await api(`/v1/nodes/${TALLINN}/status`, {
        method: 'PUT',
        credentials: as(TALLINN),
        body: { appliedRevision: current, policyRevision: 'bundle-1' },
      });
      assert.equal(reported.status, 200, reported.text);
      const refused = await api(`/v1/nodes/${TARTU}/status`, {
        method: 'PUT',
        credentials: as(TARTU),
        body: { appliedRevision: current - 1, refused: { revision: current, reason: 'signature did not verify' } },
      });
      assert.equal(refused.status, 200, refused.text);
      const wrongType = await api(`/v1/nodes/${TALLINN}/status`, {
        method: 'PUT',
        credentials: as(TALLINN),
        body: { appliedRevision: String(current) },
      });
      assert.equal(wrongType.status, 422, 'a revision sent as a string is not coerced');

      const status = (await api('/v1/status')).json as {
        revision: number;
        nodes: Array<{ id: string; appliedRevision: number | null; upToDate: boolean; refused: unknown }>;
      };
      assert.equal(status.revision, current);
      assert.deepEqual(
        status.nodes.map((entry) => [entry.id, entry.appliedRevision, entry.upToDate, entry.refused]),
        [
          [TALLINN, current, true, null],
          [TARTU, current - 1, false, { revision: current, reason: 'signature did not verify' }],
        ],
      );
      const one = (await api(`/v1/nodes/${TALLINN}/status`)).json as { inSync: boolean; policyRevision: string };
      assert.deepEqual([one.inSync, one.policyRevision], [true, 'bundle-1']);
      assert.equal((await api(`/v1/nodes/${TALLINN}/status`, { credentials: as(TALLINN) })).status, 403);
    });

    it('a renewal is a new revision: the peer’s new certificate reaches the subscriber at once', async () => {
      const tallinn = await stream(TALLINN);
      const before = Number((await nextConfig(tallinn, -1)).id);
      const key = await generatePrivateKey();
      const csr = await createCsr({
        id: TARTU,
        kind: 'node',
        trustDomain: TD,
        privateKeyPem: key,
        dns: [`${TARTU}.dmr.example.ee`],
      });
      const renewed = await api('/v1/certificates/renew', { method: 'POST', body: { csr }, credentials: as(TARTU) });
      assert.equal(renewed.status, 201, renewed.text);
      const { fingerprint, serial, chain } = renewed.json as { fingerprint: string; serial: string; chain: string };
      const event = await nextConfig(tallinn, before, 5_000);
      const config: NodeConfig = (await verify(event.data, TALLINN, before)).config;
      assert.equal(config.revision, before + 1, 'one revision for one renewal');
      const peer = config.links.find((entry) => entry.peer === TARTU);
      assert.ok(
        peer?.peerCertificates.some((entry) => entry.fingerprint === fingerprint.replace(/:/g, '').toLowerCase()),
      );
      assert.equal(peer?.peerCertificates.length, 2, 'old and new during the renewal');
      const audit = (await api(`/v1/audit?kind=Certificate&id=${TARTU}&action=certificate.record`)).json as {
        items: Array<{ revision: number | null; detail: { serial?: string } }>;
      };
      assert.equal(audit.items.find((entry) => entry.detail.serial === serial)?.revision, before + 1);
      // The node switches to its new certificate.
      nodes.get(TARTU)?.agent.destroy();
      const credentials = { cert: chain, key };
      nodes.set(TARTU, { credentials, serial, agent: new Agent({ ca, ...credentials }) });
      tallinn.close();
    });

    it('a revoked node certificate is refused, its open stream ends, and peers are told', async () => {
      const tartu = await stream(TARTU);
      const tallinn = await stream(TALLINN);
      const before = Number((await nextConfig(tartu, -1)).id);
      await nextConfig(tallinn, -1);
      const serial = nodes.get(TARTU)?.serial as string;
      const revoked = await api(`/v1/certificates/${serial}/revoke`, {
        method: 'POST',
        body: { reason: 'keyCompromise' },
      });
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal((revoked.json as { denylisted: boolean }).denylisted, true);

      // The stream was authenticated before the revocation; it is not allowed to outlive it.
      const ended = await tartu.next(5_000);
      assert.equal(ended.event, 'error');
      assert.equal((JSON.parse(ended.data) as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
      await tartu.ended;

      const event = await nextConfig(tallinn, before, 5_000);
      const config = (await verify(event.data, TALLINN, before)).config;
      assert.equal(config.revision, before + 1, 'revocation and denylist entry are one revision');
      assert.deepEqual(
        config.denylist.map((entry) => [entry.id, entry.kind]),
        [[TARTU, 'node']],
      );
      assert.deepEqual(config.links, [], 'no link to a denylisted node');
      assert.ok(!config.routes.some((route) => route.destination === TARTU && route.reachable), 'no route to it');

      const refused = await api(`/v1/nodes/${TARTU}/config`, { credentials: as(TARTU) });
      assert.equal(refused.status, 401, refused.text);
      assert.equal(errorCode(refused), 'UNAUTHENTICATED');
      const report = await api(`/v1/nodes/${TARTU}/status`, {
        method: 'PUT',
        credentials: as(TARTU),
        body: { appliedRevision: before },
      });
      assert.equal(report.status, 401);
      const reopened = await openSse(`${server.apiUrl}/v1/nodes/${TARTU}/config/stream`, {}, nodes.get(TARTU)?.agent);
      streams.push(reopened);
      assert.equal(reopened.status, 401);
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
