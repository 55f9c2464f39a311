/** Fixtures shared by this directory's tests. Not exported from index. */
import { randomUUID } from 'node:crypto';
import type { MessageConfig } from './validate.js';
import { type HeaderValue, type SignableMessage } from '@dmr/contract';

export const NOW = Date.parse('2026-11-27T12:00:00.000Z');
export const TRUST_DOMAIN = 'dmr.test';

/** What a client sends as `user_id`: its certificate's SPIFFE id, the broker user it logged in as. */
export function userIdOf(clientId: string): string {
  return `spiffe://${TRUST_DOMAIN}/client/${clientId}`;
}

export const LIMITS: MessageConfig['limits'] = {
  maxMessageBytes: 1024,
  maxTtlMs: 86_400_000,
  queueMaxLength: 10_000,
  deliveryLimit: 5,
  timestampSkewMs: 300_000,
  dedupWindowMs: 86_700_000,
  maxHeaderBytes: 4096,
  queueMaxBytes: 1_048_576,
  ingressDeliveryLimit: 5,
  senderRatePerSecond: 100,
  senderBurst: 100,
  maxIdsPerSender: 1000,
  maxConnectionsPerUser: 10,
  maxChannelsPerUser: 100,
};

function entry(id: string, homeNode: string, status: 'active' | 'suspended' | 'revoked' = 'active') {
  return { id, homeNode, organisation: 'org', roles: [], status, certificates: [] };
}

/** Node dmr-tallinn: local clients tax-bot, police-bot, sleepy-bot (suspended); remote clients on dmr-tartu. */
export function testConfig(overrides: Partial<MessageConfig> = {}): MessageConfig {
  return {
    trustDomain: TRUST_DOMAIN,
    node: { id: 'dmr-tallinn', amqpsEndpoint: 'amqps://localhost:5671', managementEndpoint: 'https://localhost:15671' },
    directory: [
      entry('bad-bot', 'dmr-tallinn'),
      entry('edu-bot', 'dmr-tartu'),
      entry('gone-bot', 'dmr-tartu', 'revoked'),
      entry('police-bot', 'dmr-tallinn'),
      entry('sleepy-bot', 'dmr-tallinn', 'suspended'),
      entry('tax-bot', 'dmr-tallinn'),
    ],
    denylist: [{ id: 'bad-bot', kind: 'client', reason: 'compromised', since: '2026-11-01T00:00:00.000Z' }],
    limits: LIMITS,
    ...overrides,
  };
}

export interface MessageParts {
  messageId?: unknown;
  userId?: unknown;
  type?: unknown;
  timestamp?: unknown;
  expiration?: unknown;
  headers?: Record<string, HeaderValue>;
  body?: Uint8Array;
}

/** A message that passes every origin check of testConfig() at NOW, with `parts` overriding. */
export function testMessage(parts: MessageParts = {}): SignableMessage {
  const properties: SignableMessage['properties'] = {
    messageId: randomUUID(),
    userId: userIdOf('tax-bot'),
    type: 'ChatMessage',
    timestamp: Math.floor(NOW / 1000),
    headers: { 'dmr-recipient': 'police-bot', 'dmr-version': 1 },
  };
  for (const key of ['messageId', 'userId', 'type', 'timestamp', 'expiration', 'headers'] as const) {
    if (key in parts) properties[key] = parts[key] as never;
  }
  return { content: parts.body ?? Buffer.from('{"hello":"world"}'), properties };
}

/** `message` with one property or header removed (a header name starts with "dmr-" or "trace"). */
export function without(message: SignableMessage, field: string): SignableMessage {
  // Rebuilt by filtering rather than `delete obj[field]`, which the lint rules forbid for computed keys.
  const keep = ([key]: [string, unknown]): boolean => key !== field;
  const headers = Object.fromEntries(Object.entries(message.properties.headers ?? {}).filter(keep));
  const properties = Object.fromEntries(Object.entries(message.properties).filter(keep));
  return { ...message, properties: { ...properties, headers } };
}
