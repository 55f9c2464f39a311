import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import {
  linkShovelSpec,
  localDirectUri,
  moveShovelSpec,
  parseShovelDefinition,
  parseShovelStatuses,
  peerAmqpsUri,
} from './shovels.js';

const tls = { certFile: '/etc/dmr/node.crt', keyFile: '/etc/dmr/node.key', caFile: '/etc/dmr/trust.pem' };
const peer = { host: 'dmr-b.example.ee', port: 5671, vhost: 'dmr-b' };

/** What RabbitMQ's amqp_uri does with a query value or the vhost: %XX → byte, nothing else ('+' stays '+'). */
function erlangUnescape(value: string): string {
  return Buffer.from(
    value.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    'latin1',
  ).toString('utf8');
}

/** amqp_uri's own split: path up to '?', query on '&', each pair on its first '='. */
function erlangParse(uri: string): { vhost: string; query: Map<string, string> } {
  const rest = uri.replace(/^amqps?:\/\/[^/?#]*/, '');
  const [path = '', search = ''] = rest.split('?', 2);
  const query = new Map<string, string>();
  for (const pair of search.split('&').filter(Boolean)) {
    const at = pair.indexOf('=');
    query.set(pair.slice(0, at), erlangUnescape(pair.slice(at + 1)));
  }
  assert.ok(!path.slice(1).includes('/'), 'a literal / in the vhost is refused by RabbitMQ');
  return { vhost: erlangUnescape(path.slice(1)), query };
}

describe('link shovel spec', () => {
  it('is a confirmed AMQPS + EXTERNAL shovel from the outbound queue to the mesh ingress, no forward headers', () => {
    const spec = linkShovelSpec({ sourceVhost: 'dmr-a', outboundQueue: 'dmr.outbound.dmr-b', peer, tls });
    assert.deepEqual(spec, {
      'src-protocol': 'amqp091',
      'src-uri': 'amqp:///dmr-a',
      'src-queue': 'dmr.outbound.dmr-b',
      'src-prefetch-count': 1000,
      'src-delete-after': 'never',
      'dest-protocol': 'amqp091',
      'dest-uri':
        'amqps://dmr-b.example.ee:5671/dmr-b?cacertfile=%2Fetc%2Fdmr%2Ftrust.pem&certfile=%2Fetc%2Fdmr%2Fnode.crt' +
        '&keyfile=%2Fetc%2Fdmr%2Fnode.key&verify=verify_peer&server_name_indication=dmr-b.example.ee' +
        '&auth_mechanism=external',
      'dest-exchange': 'dmr.mesh-ingress',
      'dest-add-forward-headers': false,
      'ack-mode': 'on-confirm',
      'reconnect-delay': 5,
    });
  });

  it('percent-encodes vhosts and file paths so that RabbitMQ decodes them back exactly', () => {
    const odd = {
      certFile: '/srv/dmr certs/a&b=c/node+1%.crt',
      keyFile: '/srv/dmr#keys?/k;ey.pem',
      caFile: "/srv/'trust'/bundle (2).pem",
    };
    const uri = peerAmqpsUri({ host: '127.0.0.1', port: 25671, vhost: 'dmr b/&?#%+', serverName: 'localhost' }, odd);
    const parsed = erlangParse(uri);
    assert.equal(parsed.vhost, 'dmr b/&?#%+');
    assert.equal(parsed.query.get('certfile'), odd.certFile);
    assert.equal(parsed.query.get('keyfile'), odd.keyFile);
    assert.equal(parsed.query.get('cacertfile'), odd.caFile);
    assert.equal(parsed.query.get('server_name_indication'), 'localhost');
    assert.equal(parsed.query.get('auth_mechanism'), 'external');
    assert.ok(!uri.includes('#') && !uri.includes(' '), uri);
    assert.equal(localDirectUri('dmr b/ä'), 'amqp:///dmr%20b%2F%C3%A4');
    assert.equal(erlangUnescape('dmr%20b%2F%C3%A4'), 'dmr b/ä');
  });

  it('brackets IPv6 hosts and adds heartbeat, depth and source queue arguments when given', () => {
    const spec = linkShovelSpec({
      sourceVhost: 'dmr-a',
      outboundQueue: 'dmr.outbound.dmr-b',
      peer: { host: '::1', port: 5671, vhost: 'dmr-b', serverName: 'localhost' },
      tls,
      heartbeatSeconds: 5,
      depth: 3,
      reconnectDelaySeconds: 2,
      prefetchCount: 200,
      destinationExchange: 'other',
      sourceQueueArguments: { 'x-queue-type': 'quorum', 'x-max-length': 10 },
    });
    assert.match(spec['dest-uri'], /^amqps:\/\/\[::1\]:5671\/dmr-b\?/);
    assert.match(spec['dest-uri'], /&depth=3&heartbeat=5$/);
    assert.equal(spec['reconnect-delay'], 2);
    assert.equal(spec['src-prefetch-count'], 200);
    assert.equal(spec['dest-exchange'], 'other');
    assert.deepEqual(spec['src-queue-args'], { 'x-queue-type': 'quorum', 'x-max-length': 10 });
  });

  it('refuses input RabbitMQ would misread', () => {
    const base = { sourceVhost: 'dmr-a', outboundQueue: 'q', peer, tls };
    const bad = [
      { ...base, tls: { ...tls, certFile: '/srv/näide/node.crt' } }, // decoded byte by byte: another file
      { ...base, tls: { ...tls, keyFile: 'relative/key.pem' } },
      { ...base, tls: { ...tls, caFile: '/srv/a\nb.pem' } },
      { ...base, peer: { ...peer, host: 'a host' } },
      { ...base, peer: { ...peer, host: 'fe80::1%eth0' } },
      { ...base, peer: { ...peer, port: 0 } },
      { ...base, peer: { ...peer, port: 70_000 } },
      { ...base, peer: { ...peer, vhost: '' } },
      { ...base, peer: { ...peer, serverName: 'a&b' } },
      { ...base, sourceVhost: '' },
      { ...base, outboundQueue: '' },
      { ...base, reconnectDelaySeconds: 0 },
      { ...base, heartbeatSeconds: 1.5 },
    ];
    for (const input of bad) {
      assert.throws(
        () => linkShovelSpec(input),
        (error: unknown) => error instanceof DmrError && error.code === 'INVALID_ARGUMENT',
        JSON.stringify(input),
      );
    }
  });
});

describe('shovel status parsing', () => {
  it('reads the states the management API reports and skips what it does not know', () => {
    const statuses = parseShovelStatuses([
      {
        node: 'n@h',
        timestamp: '2026-12-05 5:33:31',
        name: 'dmr.link.b',
        vhost: 'dmr-a',
        type: 'dynamic',
        state: 'running',
        src_uri: 'amqp:///dmr-a',
        dest_uri: 'amqps://127.0.0.1:1/dmr-b',
        src_queue: 'dmr.outbound.b',
        dest_exchange: 'dmr.mesh-ingress',
      },
      { name: 'dmr.link.c', vhost: 'dmr-a', type: 'dynamic', state: 'terminated', reason: 'x', timestamp: '' },
      { name: 'weird', state: 'exploded' },
      'garbage',
      { state: 'running' },
    ]);
    assert.equal(statuses.length, 2);
    assert.equal(statuses[0]?.state, 'running');
    assert.equal(statuses[0]?.destinationExchange, 'dmr.mesh-ingress');
    assert.equal(statuses[1]?.reason, 'x');
    assert.deepEqual(parseShovelStatuses({ not: 'a list' }), []);
  });

  it('reads a stored definition from its value', () => {
    assert.deepEqual(parseShovelDefinition({ name: 'x', value: { 'src-queue': 'q' } }), { 'src-queue': 'q' });
    assert.equal(parseShovelDefinition({ name: 'x' }), undefined);
    assert.equal(parseShovelDefinition(null), undefined);
  });
});

describe('move shovel spec (dmr queue replay)', () => {
  it('moves within one vhost, acks on confirm, and ends after the queue length or a count', () => {
    const spec = moveShovelSpec({
      vhost: 'dmr-a',
      fromQueue: 'dmr.client.x.dlq',
      toExchange: 'dmr.delivery',
      routingKey: 'x',
    });
    assert.equal(spec['src-uri'], 'amqp:///dmr-a');
    assert.equal(spec['dest-uri'], 'amqp:///dmr-a');
    assert.equal(spec['ack-mode'], 'on-confirm');
    assert.equal(spec['src-delete-after'], 'queue-length');
    assert.equal(spec['dest-exchange-key'], 'x');
    assert.equal(spec['dest-add-forward-headers'], false);
    const counted = moveShovelSpec({ vhost: 'dmr-a', fromQueue: 'q', toExchange: 'e', routingKey: 'k', count: 7 });
    assert.equal(counted['src-delete-after'], 7);
  });

  it('refuses a count that is not a positive whole number and empty names', () => {
    for (const count of [0, -1, 1.5]) {
      assert.throws(
        () => moveShovelSpec({ vhost: 'v', fromQueue: 'q', toExchange: 'e', routingKey: 'k', count }),
        (error: unknown) => error instanceof DmrError && error.code === 'INVALID_ARGUMENT',
      );
    }
    assert.throws(() => moveShovelSpec({ vhost: 'v', fromQueue: '', toExchange: 'e', routingKey: 'k' }), DmrError);
  });
});
