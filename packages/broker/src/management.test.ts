import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { ManagementClient } from './management.js';
import { linkShovelSpec } from './shovels.js';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => resolve(body));
  });
}

describe('management client', () => {
  let server: Server;
  let client: ManagementClient;
  const seen: Seen[] = [];

  before(async () => {
    server = createServer((request, response) => {
      void readBody(request).then((body) => {
        seen.push({
          method: request.method ?? '',
          url: request.url ?? '',
          authorization: request.headers.authorization,
          body,
        });
        const json = (value: unknown): void => {
          response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
        };
        if (request.url === '/api/users/missing') response.writeHead(404).end('{"error":"Object Not Found"}');
        else if (request.method === 'GET' && request.url === '/api/parameters/shovel/dmr%20a%2Fb/dmr.link.x')
          json({ vhost: 'dmr a/b', component: 'shovel', name: 'dmr.link.x', value: { 'src-queue': 'q' } });
        else if (request.url?.startsWith('/api/parameters/shovel/dmr%20a%2Fb/missing'))
          response.writeHead(404).end('{"error":"Object Not Found"}');
        else if (request.method === 'GET' && request.url === '/api/parameters/shovel/dmr%20a%2Fb')
          json([{ name: 'dmr.link.x', value: { 'src-queue': 'q' } }, { name: 'broken' }]);
        else if (request.method === 'GET' && request.url === '/api/shovels/dmr%20a%2Fb')
          json([
            { name: 'dmr.link.x', vhost: 'dmr a/b', type: 'dynamic', state: 'terminated', reason: 'r', timestamp: 't' },
          ]);
        else if (request.url === '/api/users/broken') response.writeHead(500).end('boom');
        else if (request.url === '/api/user-limits')
          response.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify([
              { user: 'spiffe://dmr.test/client/police-bot', value: { 'max-connections': 4, 'max-channels': 16 } },
              { user: 'odd', value: 'not a map' },
            ]),
          );
        else if (request.url === '/api/overview')
          response
            .writeHead(200, { 'content-type': 'application/json' })
            .end(
              JSON.stringify({ listeners: [{ node: 'n', protocol: 'amqp/ssl', ip_address: '127.0.0.1', port: 1 }] }),
            );
        else response.writeHead(request.method === 'GET' ? 200 : 204).end(request.method === 'GET' ? '[]' : '');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    client = new ManagementClient({
      baseUrl: `http://127.0.0.1:${address.port}/`,
      username: 'harness_admin',
      password: 'pw',
    });
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('creates certificate-only users with an empty password hash and tags present', async () => {
    await client.createCertificateUser('police-bot');
    const last = seen.at(-1);
    assert.equal(last?.method, 'PUT');
    assert.equal(last?.url, '/api/users/police-bot');
    assert.deepEqual(JSON.parse(last?.body ?? ''), { password_hash: '', tags: '' });
    assert.equal(last?.authorization, `Basic ${Buffer.from('harness_admin:pw').toString('base64')}`);
  });

  it('sets permissions per vhost, escaping the default vhost', async () => {
    await client.setPermissions('/', 'police-bot', { configure: '^$', write: '^ingress$', read: '^police-bot$' });
    assert.equal(seen.at(-1)?.url, '/api/permissions/%2F/police-bot');
    assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), {
      configure: '^$',
      write: '^ingress$',
      read: '^police-bot$',
    });
  });

  it('closes a user’s connections by user name', async () => {
    await client.closeUserConnections('police-bot');
    assert.equal(seen.at(-1)?.method, 'DELETE');
    assert.equal(seen.at(-1)?.url, '/api/connections/username/police-bot');
  });

  it('escapes SPIFFE ids as user names (one path segment: ":" and "/" encoded)', async () => {
    const user = 'spiffe://dmr.test/client/police-bot';
    const escaped = 'spiffe%3A%2F%2Fdmr.test%2Fclient%2Fpolice-bot';
    await client.createCertificateUser(user, ['dmr-client']);
    assert.equal(seen.at(-1)?.url, `/api/users/${escaped}`);
    await client.setPermissions('dmr-node-a', user, { configure: '', write: '', read: '' });
    assert.equal(seen.at(-1)?.url, `/api/permissions/dmr-node-a/${escaped}`);
    await client.closeUserConnections(user);
    assert.equal(seen.at(-1)?.url, `/api/connections/username/${escaped}`);
  });

  it('sets, clears and lists user limits', async () => {
    const user = 'spiffe://dmr.test/client/police-bot';
    await client.setUserLimit(user, 'max-channels', 16);
    assert.equal(seen.at(-1)?.method, 'PUT');
    assert.equal(seen.at(-1)?.url, '/api/user-limits/spiffe%3A%2F%2Fdmr.test%2Fclient%2Fpolice-bot/max-channels');
    assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), { value: 16 });
    await client.clearUserLimit(user, 'max-connections');
    assert.equal(seen.at(-1)?.method, 'DELETE');
    assert.equal(seen.at(-1)?.url, '/api/user-limits/spiffe%3A%2F%2Fdmr.test%2Fclient%2Fpolice-bot/max-connections');
    assert.deepEqual(await client.listUserLimits(), new Map([[user, { 'max-connections': 4, 'max-channels': 16 }]]));
  });

  it('treats deleting a missing user as done, and reports real failures', async () => {
    await client.deleteUser('missing');
    await assert.rejects(client.deleteUser('broken'), (error: unknown) => {
      return error instanceof DmrError && error.code === 'BROKER_COMMAND_FAILED' && error.details.status === 500;
    });
  });

  it('declares, reads, lists, restarts and deletes shovels with every name part escaped', async () => {
    const vhost = 'dmr a/b';
    const spec = linkShovelSpec({
      sourceVhost: vhost,
      outboundQueue: 'dmr.outbound.x',
      peer: { host: 'peer.example', port: 5671, vhost: 'dmr-x' },
      tls: { certFile: '/c', keyFile: '/k', caFile: '/ca' },
    });
    await client.declareShovel(vhost, 'dmr.link.x', spec);
    assert.equal(seen.at(-1)?.method, 'PUT');
    assert.equal(seen.at(-1)?.url, '/api/parameters/shovel/dmr%20a%2Fb/dmr.link.x');
    assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), {
      component: 'shovel',
      vhost,
      name: 'dmr.link.x',
      value: spec,
    });
    assert.deepEqual(await client.getShovel(vhost, 'dmr.link.x'), { 'src-queue': 'q' });
    assert.equal(await client.getShovel(vhost, 'missing'), undefined);
    assert.deepEqual([...(await client.listShovelDefinitions(vhost)).keys()], ['dmr.link.x']);
    assert.deepEqual(await client.shovelStatus(vhost, 'dmr.link.x'), {
      name: 'dmr.link.x',
      vhost,
      type: 'dynamic',
      state: 'terminated',
      reason: 'r',
      timestamp: 't',
      node: '',
    });
    assert.equal(await client.shovelStatus(vhost, 'other'), undefined);
    await client.restartShovel(vhost, 'dmr.link.x');
    assert.equal(seen.at(-1)?.method, 'DELETE');
    assert.equal(seen.at(-1)?.url, '/api/shovels/vhost/dmr%20a%2Fb/dmr.link.x/restart');
    await client.deleteShovel(vhost, 'dmr.link.x');
    assert.equal(seen.at(-1)?.url, '/api/parameters/shovel/dmr%20a%2Fb/dmr.link.x');
    await client.deleteShovel(vhost, 'missing'); // 404: already gone
  });

  it('reads listeners from the overview', async () => {
    assert.deepEqual(await client.listeners(), [{ node: 'n', protocol: 'amqp/ssl', ipAddress: '127.0.0.1', port: 1 }]);
  });

  it('reports an unreachable API as a node that is not running', async () => {
    const dead = new ManagementClient({ baseUrl: 'http://127.0.0.1:1', username: 'a', password: 'b' });
    await assert.rejects(
      dead.listUsers(),
      (error: unknown) => error instanceof DmrError && error.code === 'BROKER_NOT_RUNNING',
    );
  });
});
