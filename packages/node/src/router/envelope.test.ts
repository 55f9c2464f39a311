import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/centops';
import { isPolicyInput } from '@dmr/policy';
import type { ValidatedMessage } from '../message/contract.js';
import {
  DELIVERY_REPORT_TYPE,
  deadLetterReason,
  deliveredOptions,
  deliveryReport,
  policyInputFor,
  rejectedOptions,
  remainingTtl,
  reportOptions,
  routingContext,
} from './envelope.js';

const NOW = Date.parse('2026-11-27T12:00:00.000Z');

function config(): NodeConfig {
  const entry = (id: string, homeNode: string, organisation: string) => ({
    id,
    homeNode,
    organisation,
    roles: ['bot'],
    status: 'active' as const,
    certificates: [],
  });
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain: 'dmr.test',
    node: { id: 'node-a', amqpsEndpoint: 'amqps://127.0.0.1:5671', managementEndpoint: 'https://127.0.0.1:15671' },
    revision: 7,
    issuedAt: '2026-01-01T00:00:00.000Z',
    clients: [
      { id: 'ria-bot', organisation: 'ria', roles: ['bot'], labels: { tier: 'gold' }, status: 'active' },
      { id: 'rik-bot', organisation: 'rik', roles: ['bot'], labels: {}, status: 'active' },
    ],
    directory: [entry('ria-bot', 'node-a', 'ria'), entry('rik-bot', 'node-a', 'rik'), entry('far-bot', 'node-b', 'x')],
    links: [],
    routes: [],
    denylist: [],
    limits: {
      maxMessageBytes: 1024,
      maxTtlMs: 60_000,
      queueMaxLength: 10,
      deliveryLimit: 3,
      timestampSkewMs: 300_000,
      dedupWindowMs: 400_000,
      maxConnectionsPerUser: 10,
      maxChannelsPerUser: 100,
    },
  };
}

function validated(overrides: Partial<ValidatedMessage> = {}): ValidatedMessage {
  return {
    messageId: '00000000-0000-4000-8000-000000000001',
    sender: 'ria-bot',
    recipient: 'rik-bot',
    recipientHomeNode: 'node-a',
    type: 'ChatMessage',
    timestampMs: NOW,
    expirationMs: undefined,
    sizeBytes: 12,
    traceparent: undefined,
    tracestate: undefined,
    ...overrides,
  };
}

describe('router envelope', () => {
  it('builds a contract-valid policy input: labels for local clients only, hop 0 at this node', () => {
    const context = routingContext(config());
    const input = policyInputFor(validated(), context, NOW);
    assert.ok(isPolicyInput(input));
    assert.deepEqual(input.sender, { id: 'ria-bot', organisation: 'ria', roles: ['bot'], labels: { tier: 'gold' } });
    assert.deepEqual(input.recipient.labels, {});
    assert.deepEqual(input.hop, { origin: 'node-a', count: 0 });
    assert.deepEqual(input.node, { id: 'node-a' });
    assert.deepEqual(input.message, { id: validated().messageId, type: 'ChatMessage', size: 12 });
    const withTtl = policyInputFor(validated({ expirationMs: 30_000 }), context, NOW + 5_000);
    assert.equal(withTtl?.message.ttl, 25_999);
    assert.ok(isPolicyInput(withTtl));
    assert.equal(policyInputFor(validated({ recipient: 'nobody-bot' }), context, NOW), undefined);
    assert.equal(context.localQueues.has('far-bot'), false);
  });

  it('credits the truncated second to the sender and reports an expired TTL as ≤ 0', () => {
    assert.equal(remainingTtl(validated(), NOW), undefined);
    assert.equal(remainingTtl(validated({ expirationMs: 1_000 }), NOW + 999), 1_000);
    assert.equal(remainingTtl(validated({ expirationMs: 1_000 }), NOW + 1_999), 0);
    assert.equal(remainingTtl(validated({ expirationMs: 1_000 }), NOW - 60_000), 1_000, 'a clock ahead is not a bonus');
  });

  it('delivers with the client properties and headers, without user_id, with DMR headers and remaining TTL', () => {
    const properties = {
      messageId: validated().messageId,
      userId: 'spiffe://dmr.test/client/ria-bot',
      type: 'ChatMessage',
      timestamp: NOW / 1000,
      expiration: '30000',
      correlationId: 'c-1',
      replyTo: 'ria-bot',
      contentType: 'application/json',
      headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1, traceparent: 'tp', tracestate: 'ts' },
    };
    const options = deliveredOptions(properties, validated(), 'node-a', NOW, 29_000);
    assert.equal(options.userId, undefined);
    assert.equal(options.expiration, '29000');
    assert.equal(options.persistent, true);
    assert.equal(options.mandatory, true);
    assert.equal(options.correlationId, 'c-1');
    assert.equal(options.replyTo, 'ria-bot');
    assert.equal(options.messageId, properties.messageId);
    const headers = options.headers as Record<string, unknown>;
    assert.equal(headers['dmr-sender'], 'ria-bot');
    assert.equal(headers['dmr-origin'], 'node-a');
    assert.equal(headers.traceparent, 'tp');
    assert.equal(headers.tracestate, 'ts');
    assert.deepEqual(JSON.parse(String(headers['dmr-hops'])), [{ node: 'node-a', at: '2026-11-27T12:00:00.000Z' }]);
    assert.equal(deliveredOptions(properties, validated(), 'node-a', NOW, undefined).expiration, undefined);
  });

  it('marks a rejected copy with the reason and the authenticated sender, over any client-set dmr-sender', () => {
    const options = rejectedOptions(
      { messageId: 'm', userId: 'spiffe://dmr.test/client/ria-bot', headers: { 'dmr-sender': 'forged', 'x-a': 1 } },
      { reason: 'POLICY_DENIED', detail: 'd', policy: { revision: '3', reasons: ['NO_GRANT', 'SIZE_LIMIT'] } },
      'ria-bot',
    );
    const headers = options.headers as Record<string, unknown>;
    assert.equal(options.userId, undefined);
    assert.equal(headers['dmr-sender'], 'ria-bot');
    assert.equal(headers['dmr-reason'], 'POLICY_DENIED');
    assert.equal(headers['dmr-detail'], 'd');
    assert.equal(headers['dmr-policy-revision'], '3');
    assert.equal(headers['dmr-policy-reasons'], 'NO_GRANT,SIZE_LIMIT');
    assert.equal(headers['x-a'], 1);
    const anonymous = rejectedOptions(
      { headers: { 'dmr-sender': 'forged' } },
      { reason: 'SENDER_MISSING', detail: 'd' },
      undefined,
    );
    assert.equal((anonymous.headers as Record<string, unknown>)['dmr-sender'], undefined);
  });

  it('writes reports without payload, correlated to the refused message', () => {
    const report = deliveryReport('m-1', 'rejected', { reason: 'MESSAGE_REPLAYED', detail: 'seen' }, 'node-a', NOW);
    assert.deepEqual(report, {
      messageId: 'm-1',
      status: 'rejected',
      reason: 'MESSAGE_REPLAYED',
      detail: 'seen',
      node: 'node-a',
      at: '2026-11-27T12:00:00.000Z',
    });
    const options = reportOptions(report, 'node-a', NOW);
    assert.equal(options.type, DELIVERY_REPORT_TYPE);
    assert.equal(options.correlationId, 'm-1');
    assert.equal(options.timestamp, NOW / 1000);
    assert.notEqual(options.messageId, 'm-1');
    const withoutId = deliveryReport(null, 'rejected', { reason: 'MESSAGE_ID_INVALID', detail: 'x' }, 'node-a', NOW);
    assert.equal(reportOptions(withoutId, 'node-a', NOW).correlationId, undefined);
    const denied = deliveryReport(
      'm-2',
      'rejected',
      { reason: 'POLICY_DENIED', detail: 'x', policy: { revision: '1', reasons: ['NO_GRANT'] } },
      'node-a',
      NOW,
    );
    assert.deepEqual(denied.policy, { revision: '1', reasons: ['NO_GRANT'] });
  });

  it('maps x-death reasons: expired and delivery_limit get reports, others none', () => {
    const death = (reason: string) => ({ 'x-death': [{ reason, count: 1, queue: 'dmr.client.a' }] });
    assert.equal(deadLetterReason(death('expired')), 'MESSAGE_EXPIRED');
    assert.equal(deadLetterReason(death('delivery_limit')), 'DELIVERY_LIMIT_EXCEEDED');
    assert.equal(deadLetterReason(death('rejected')), undefined);
    assert.equal(deadLetterReason({ 'x-first-death-reason': 'expired' }), 'MESSAGE_EXPIRED');
    assert.equal(deadLetterReason(undefined), undefined);
  });
});
