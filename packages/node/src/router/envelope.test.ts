import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/contract';
import { ROUTER_TEST_LIMITS } from './test-support.js';
import { isPolicyInput } from '@dmr/policy';
import type { ValidatedMessage } from '../message/contract.js';
import {
  DELIVERY_REPORT_TYPE,
  deadLetterReason,
  deliveredOptions,
  deliveryReport,
  policyInputFor,
  rejectedCopy,
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
    limits: ROUTER_TEST_LIMITS,
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

  it('delivers with the client properties and allowlisted headers, without user_id, with DMR headers and remaining TTL', () => {
    const properties = {
      messageId: validated().messageId,
      userId: 'spiffe://dmr.test/client/ria-bot',
      type: 'ChatMessage',
      timestamp: NOW / 1000,
      expiration: '30000',
      correlationId: 'c-1',
      replyTo: 'ria-bot',
      contentType: 'application/json',
      headers: {
        'dmr-recipient': 'rik-bot',
        'dmr-version': '1',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        tracestate: 'ts',
        'dmr-e2e-content-type': 'text/plain',
        'app-ticket': 'T-1',
        'app-count': 3,
        'app-flag': true,
        'app-nested': { a: 1 },
        'app-bytes': Buffer.from('x'),
        'App-Upper': 'dropped',
        CC: ['ppa-bot'],
        cc: ['ppa-bot'],
        BCC: ['ppa-bot'],
        'x-death': [{ reason: 'expired' }],
        'x-custom': 'dropped',
      },
    };
    const options = deliveredOptions(properties, validated(), 'node-a', NOW, 29_000);
    assert.deepEqual(Object.keys(options.headers as object).sort(), [
      'app-count',
      'app-flag',
      'app-ticket',
      'dmr-e2e-content-type',
      'dmr-hops',
      'dmr-origin',
      'dmr-recipient',
      'dmr-sender',
      'dmr-version',
      'traceparent',
      'tracestate',
    ]);
    assert.equal((options.headers as Record<string, unknown>)['dmr-version'], 1, 'the validated version, as a number');
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
    assert.equal(headers.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    assert.equal(headers.tracestate, 'ts');
    assert.deepEqual(JSON.parse(String(headers['dmr-hops'])), [{ node: 'node-a', at: '2026-11-27T12:00:00.000Z' }]);
    assert.equal(deliveredOptions(properties, validated(), 'node-a', NOW, undefined).expiration, undefined);
  });

  it('makes a rejected copy of DMR metadata and a body digest only: no body, no client headers', () => {
    const body = Buffer.from('{"secret":"payload"}');
    const { content, options } = rejectedCopy(
      {
        messageId: '0b5a8f4e-3c43-4d52-9d0e-7e2a0c1f9a11',
        sender: 'ria-bot',
        recipient: 'rik-bot',
        body,
        type: 'ChatMessage',
        timestamp: NOW / 1000,
      },
      { reason: 'POLICY_DENIED', detail: 'd', policy: { revision: '3', reasons: ['NO_GRANT', 'SIZE_LIMIT'] } },
    );
    assert.equal(content.length, 0);
    assert.equal(options.userId, undefined);
    assert.equal(options.messageId, '0b5a8f4e-3c43-4d52-9d0e-7e2a0c1f9a11');
    assert.equal(options.type, 'ChatMessage');
    assert.equal(options.timestamp, NOW / 1000);
    assert.deepEqual(
      { ...(options.headers as Record<string, unknown>) },
      {
        'dmr-reason': 'POLICY_DENIED',
        'dmr-detail': 'd',
        'dmr-sender': 'ria-bot',
        'dmr-recipient': 'rik-bot',
        'dmr-body-sha256': 'sha256:' + createHash('sha256').update(body).digest('hex'),
        'dmr-body-bytes': body.length,
        'dmr-policy-revision': '3',
        'dmr-policy-reasons': 'NO_GRANT,SIZE_LIMIT',
      },
    );
    const anonymous = rejectedCopy(
      { messageId: null, sender: undefined, recipient: null, body, type: '1 bad type', timestamp: -1 },
      { reason: 'SENDER_MISSING', detail: 'd' },
    );
    const headers = anonymous.options.headers as Record<string, unknown>;
    assert.equal(headers['dmr-sender'], undefined);
    assert.equal(headers['dmr-recipient'], undefined);
    assert.equal(anonymous.options.messageId, undefined);
    assert.equal(anonymous.options.type, undefined, 'a type of the wrong shape is not copied');
    assert.equal(anonymous.options.timestamp, undefined);
  });

  it('copies no property that would not fit a shortstr again (invalid UTF-8 grows when decoded)', () => {
    const grown = Buffer.from(Array.from({ length: 200 }, () => 0xff)).toString('utf8');
    const options = deliveredOptions(
      { contentType: grown, correlationId: grown, appId: 'app', headers: {} },
      validated(),
      'node-a',
      NOW,
      undefined,
    );
    assert.equal(options.contentType, undefined);
    assert.equal(options.correlationId, undefined);
    assert.equal(options.appId, 'app');
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
    const options = reportOptions(report, 'node-a', NOW, 'ria-bot');
    assert.equal(options.type, DELIVERY_REPORT_TYPE);
    // Addressed like any message: the SDK drops a report whose dmr-recipient is not its own id.
    assert.equal(options.headers?.['dmr-recipient'], 'ria-bot');
    assert.equal(options.correlationId, 'm-1');
    assert.equal(options.timestamp, NOW / 1000);
    assert.notEqual(options.messageId, 'm-1');
    const withoutId = deliveryReport(null, 'rejected', { reason: 'MESSAGE_ID_INVALID', detail: 'x' }, 'node-a', NOW);
    assert.equal(reportOptions(withoutId, 'node-a', NOW, 'ria-bot').correlationId, undefined);
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
