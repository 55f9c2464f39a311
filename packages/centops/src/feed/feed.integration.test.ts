/**
 * The feed over real HTTP on loopback, against SQLite and PostgreSQL: what a
 * node sees when it fetches, long-polls and streams its configuration, and
 * who may do what. The principal comes from a test header (test-app.ts); the
 * mutual-TLS server registers the same plugin behind its certificate check.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@dmr/core/testing';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, link, node, organisation } from '../store/test-support/fixtures.js';
import { openStore } from '../store/store.js';
import type { Store } from '../store/types.js';
import { RevisionHub } from './hub.js';
import { verifyNodeConfig, type VerifyOptions } from './signing.js';
import { openSse } from './sse-client.js';
import { principalHeader, startTestApp, type TestApp } from './test-app.js';
import { TEST_SIGNER_URI, testPki, type TestPki } from './test-support.js';

const ACTOR = 'spiffe://dmr.test/operator/alice';
const TALLINN = principalHeader('node:dmr-tallinn');
const TARTU = principalHeader('node:dmr-tartu');
const VIEWER = principalHeader('operator:viewer:vera');

async function get(url: string, headers: Record<string, string>): Promise<Response> {
  return fetch(url, { headers });
}

async function errorCode(response: Response): Promise<string> {
  const body = (await response.json()) as { error?: { code?: string } };
  return body.error?.code ?? `(no error code, status ${response.status})`;
}

for (const backend of [sqliteBackend(), await postgresBackend()] satisfies Backend[]) {
  describe(`config feed over HTTP (${backend.name})`, { skip: backend.skip }, () => {
    let pki: TestPki;
    let store: Store;
    let hub: RevisionHub;
    let server: TestApp;
    let verify: VerifyOptions;
    let clientCount = 0;

    /** An accepted change, the way the server makes one: write, then publish. */
    async function change(): Promise<number> {
      clientCount += 1;
      await store.create('Client', client(`bot-${clientCount}`, 'police', 'dmr-tallinn'), ACTOR);
      const revision = await store.revision();
      hub.publish(revision);
      return revision;
    }

    before(async () => {
      await backend.setup();
      pki = await testPki();
      store = await openStore(await backend.fresh());
      await store.applyChanges(
        [
          { op: 'create', kind: 'Organisation', spec: organisation('police') },
          { op: 'create', kind: 'Node', spec: node('dmr-tallinn') },
          { op: 'create', kind: 'Node', spec: node('dmr-tartu') },
          { op: 'create', kind: 'Link', spec: link('dmr-tallinn', 'dmr-tartu') },
          { op: 'create', kind: 'Client', spec: client('police-bot', 'police', 'dmr-tallinn') },
        ],
        ACTOR,
      );
      hub = new RevisionHub({ store, pollIntervalMs: 100 });
      server = await startTestApp(store, pki.signer, hub, { heartbeatMs: 200 });
      verify = {
        trustBundlePem: pki.ca.trustBundlePem(),
        expectedSigner: TEST_SIGNER_URI,
        expectedNodeId: 'dmr-tallinn',
      };
    });

    after(async () => {
      await server?.close();
      hub?.close();
      await store?.close();
      await pki?.cleanup();
      await backend.teardown();
    });

    it('serves the signed configuration with its revision as ETag, verifiable end to end', async () => {
      const response = await get(`${server.url}/v1/nodes/dmr-tallinn/config`, TALLINN);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^application\/jose/);
      const revision = await store.revision();
      assert.equal(response.headers.get('etag'), `"${revision}"`);
      const { config } = await verifyNodeConfig(await response.text(), { ...verify, minRevision: revision });
      assert.equal(config.revision, revision);
      assert.deepEqual(
        config.clients.map((c) => c.id),
        ['police-bot'],
      );
      assert.deepEqual(config.routes, [{ destination: 'dmr-tartu', reachable: true, nextHop: 'dmr-tartu', cost: 10 }]);
    });

    it('a tampered document from the feed fails verification', async () => {
      const jws = await (await get(`${server.url}/v1/nodes/dmr-tallinn/config`, TALLINN)).text();
      const [header, payload, signature] = jws.split('.') as [string, string, string];
      const text = Buffer.from(payload, 'base64url').toString().replace('"police-bot"', '"police-bou"');
      await assert.rejects(
        verifyNodeConfig(`${header}.${Buffer.from(text).toString('base64url')}.${signature}`, verify),
        (error: Error & { code?: string }) => error.code === 'CONFIG_SIGNATURE_INVALID',
      );
    });

    it('authorization: a node only its own config and status, operators any, clients none', async () => {
      const config = (who: Record<string, string>, id = 'dmr-tallinn') =>
        get(`${server.url}/v1/nodes/${id}/config`, who);
      const other = await config(TARTU);
      assert.equal(other.status, 403);
      assert.equal(await errorCode(other), 'FORBIDDEN');
      assert.equal((await config(TARTU, 'dmr-tartu')).status, 200);
      assert.equal((await config(VIEWER)).status, 200);
      assert.equal((await config(principalHeader('operator:admin:ada'))).status, 200);
      assert.equal((await config(principalHeader('client:police-bot'))).status, 403);
      const anonymous = await config({});
      assert.equal(anonymous.status, 401);
      assert.equal(await errorCode(anonymous), 'UNAUTHENTICATED');
      assert.equal((await get(`${server.url}/v1/nodes/dmr-tallinn/config/stream`, TARTU)).status, 403);
      assert.equal(
        (await get(`${server.url}/v1/nodes/dmr-tallinn/config/stream`, principalHeader('client:police-bot'))).status,
        403,
      );
      const missing = await config(VIEWER, 'dmr-nowhere');
      assert.equal(missing.status, 404);

      const put = (who: Record<string, string>, id = 'dmr-tallinn', body: unknown = { appliedRevision: 1 }) =>
        fetch(`${server.url}/v1/nodes/${id}/status`, {
          method: 'PUT',
          headers: { ...who, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      assert.equal((await put(TARTU)).status, 403);
      assert.equal((await put(principalHeader('operator:admin:ada'))).status, 403);
      assert.equal((await put(principalHeader('client:police-bot'))).status, 403);
      assert.equal((await get(`${server.url}/v1/nodes/dmr-tallinn/status`, TALLINN)).status, 403);
      assert.equal(
        (await get(`${server.url}/v1/nodes/dmr-tallinn/status`, principalHeader('client:police-bot'))).status,
        403,
      );
    });

    it('stores a node status report and shows it to operators', async () => {
      const revision = await store.revision();
      const put = (body: unknown) =>
        fetch(`${server.url}/v1/nodes/dmr-tallinn/status`, {
          method: 'PUT',
          headers: { ...TALLINN, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const stored = await put({
        appliedRevision: revision - 1,
        refused: { revision, reason: 'policy bundle missing' },
      });
      assert.equal(stored.status, 200);
      let status = (await (await get(`${server.url}/v1/nodes/dmr-tallinn/status`, VIEWER)).json()) as Record<
        string,
        unknown
      >;
      assert.deepEqual(
        { ...status, reportedAt: typeof status.reportedAt },
        {
          nodeId: 'dmr-tallinn',
          currentRevision: revision,
          appliedRevision: revision - 1,
          refused: { revision, reason: 'policy bundle missing' },
          policyRevision: null,
          reportedAt: 'string',
          inSync: false,
        },
      );
      assert.equal((await put({ appliedRevision: revision, policyRevision: 'p-1' })).status, 200);
      status = (await (await get(`${server.url}/v1/nodes/dmr-tallinn/status`, VIEWER)).json()) as Record<
        string,
        unknown
      >;
      assert.equal(status.inSync, true);
      assert.equal(status.refused, null);
      assert.equal((await put({ appliedRevision: -1 })).status, 400);
      assert.equal((await put({ appliedRevision: revision + 100 })).status, 400);
      const tartu = (await (await get(`${server.url}/v1/nodes/dmr-tartu/status`, VIEWER)).json()) as Record<
        string,
        unknown
      >;
      assert.equal(tartu.reportedAt, null);
    });

    it('long-poll: returns the new document when a change lands', async () => {
      const revision = await store.revision();
      const pending = get(`${server.url}/v1/nodes/dmr-tallinn/config?wait=10`, {
        ...TALLINN,
        'if-none-match': `"${revision}"`,
      });
      await waitFor('the long-poll to listen', () => hub.listenerCount === 1);
      const next = await change();
      const response = await pending;
      assert.equal(response.status, 200);
      // Answered on the change, not at the timeout: a timed-out wait answers 304 with the old ETag.
      assert.equal(response.headers.get('etag'), `"${next}"`);
      const { config } = await verifyNodeConfig(await response.text(), { ...verify, minRevision: next });
      assert.ok(config.clients.some((c) => c.id === `bot-${clientCount}`));
    });

    it('long-poll: sees a change written by another process (no publish) through polling', async () => {
      const revision = await store.revision();
      const pending = get(`${server.url}/v1/nodes/dmr-tallinn/config?wait=10`, {
        ...TALLINN,
        'if-none-match': `W/"${revision}"`,
      });
      await waitFor('the long-poll to listen', () => hub.listenerCount === 1);
      await store.create('Client', client('quiet-bot', 'police', 'dmr-tartu'), ACTOR);
      const response = await pending;
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('etag'), `"${revision + 1}"`);
    });

    it('long-poll: 304 with the ETag when nothing changes within ?wait=', async () => {
      const revision = await store.revision();
      const started = Date.now();
      const response = await get(`${server.url}/v1/nodes/dmr-tallinn/config?wait=1`, {
        ...TALLINN,
        'if-none-match': `"${revision}"`,
      });
      assert.equal(response.status, 304);
      assert.equal(response.headers.get('etag'), `"${revision}"`);
      // A lower bound only: a loaded machine makes the wait longer, never shorter.
      assert.ok(Date.now() - started >= 900);
      assert.equal((await get(`${server.url}/v1/nodes/dmr-tallinn/config?wait=61`, TALLINN)).status, 400);
      const stale = await get(`${server.url}/v1/nodes/dmr-tallinn/config?wait=1`, {
        ...TALLINN,
        'if-none-match': `"${revision - 1}"`,
      });
      assert.equal(stale.status, 200, 'an old ETag gets the current document at once');
      assert.equal(hub.listenerCount, 0, 'no waiter left behind');
    });

    it('long-poll: a client that hangs up leaves no waiter', async () => {
      const revision = await store.revision();
      const controller = new AbortController();
      const pending = fetch(`${server.url}/v1/nodes/dmr-tallinn/config?wait=30`, {
        headers: { ...TALLINN, 'if-none-match': `"${revision}"` },
        signal: controller.signal,
      }).catch(() => undefined);
      await waitFor('the long-poll to listen', () => hub.listenerCount === 1);
      controller.abort();
      await pending;
      await waitFor('the aborted long-poll to stop listening', () => hub.listenerCount === 0);
    });

    it('SSE: the document at connect, every new revision, heartbeats; unsubscribes on disconnect', async () => {
      const stream = await openSse(`${server.url}/v1/nodes/dmr-tallinn/config/stream`, TALLINN);
      assert.equal(stream.status, 200);
      assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
      assert.match(String(stream.headers['cache-control']), /no-cache/);
      const first = await stream.next();
      assert.equal(first.event, 'config');
      assert.equal(first.id, String(await store.revision()));
      const next = await change();
      const second = await stream.next();
      assert.equal(second.id, String(next));
      const { config } = await verifyNodeConfig(second.data, { ...verify, minRevision: next });
      assert.equal(config.revision, next);
      assert.equal(hub.listenerCount, 1);
      stream.close();
      await waitFor('the stream to unsubscribe when the client left', () => hub.listenerCount === 0);
    });

    it('SSE: two nodes each get their own document; closing the server ends open streams', async () => {
      const tallinn = await openSse(`${server.url}/v1/nodes/dmr-tallinn/config/stream`, TALLINN);
      const tartu = await openSse(`${server.url}/v1/nodes/dmr-tartu/config/stream`, TARTU);
      await tallinn.next();
      await tartu.next();
      const next = await change();
      const [a, b] = await Promise.all([tallinn.next(), tartu.next()]);
      assert.equal((await verifyNodeConfig(a.data, verify)).config.revision, next);
      assert.equal(
        (await verifyNodeConfig(b.data, { ...verify, expectedNodeId: 'dmr-tartu' })).config.node.id,
        'dmr-tartu',
      );
      const closing = server.close();
      await Promise.all([tallinn.ended, tartu.ended]);
      await closing;
      assert.equal(hub.listenerCount, 0);
      server = await startTestApp(store, pki.signer, hub);
    });
  });
}
