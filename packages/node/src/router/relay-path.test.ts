/** The relay seam ends in the shared tail: refused, recorded and acked like any refusal, never delivered. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumeMessage, Options } from 'amqplib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { SenderRateLimit } from '../message/rate-limit.js';
import { ReplayGuard } from '../message/replay.js';
import { NOW, TRUST_DOMAIN, testConfig, testMessage } from '../message/test-support.js';
import { messageContext } from '../message/validate.js';
import { DELIVERY_EXCHANGE, REJECTED_EXCHANGE } from '@dmr/contract';
import type { AuditEvent } from './audit.js';
import { REASON_HEADER } from './envelope.js';
import { RouterMetrics } from './metrics.js';
import { Outcomes, type Session } from './outcome.js';
import { RelayPath } from './relay-path.js';

describe('RelayPath (the seam)', () => {
  it('refuses a message from a peer node with RECIPIENT_UNREACHABLE: rejected copy, audit record, then the ack', async () => {
    const published: Array<{ exchange: string; options: Options.Publish }> = [];
    const acked: ConsumeMessage[] = [];
    const audited: AuditEvent[] = [];
    // Only what the tail touches: a channel that confirms every publish, and the ack batcher.
    const session = {
      alive: true,
      returned: new Set<string>(),
      inflightIds: new Set<string>(),
      channel: {
        publish: (
          exchange: string,
          _routingKey: string,
          _content: Buffer,
          options: Options.Publish,
          confirmed: (error: unknown) => void,
        ) => {
          published.push({ exchange, options });
          confirmed(null);
          return true;
        },
      },
      acks: { ack: (message: ConsumeMessage) => acked.push(message) },
    } as unknown as Session;
    const outcome = new Outcomes({
      nodeId: 'dmr-tallinn',
      now: () => NOW,
      logger: pino({ level: 'silent' }),
      metrics: new RouterMetrics(new Registry()),
      audit: {
        append: (event) => {
          audited.push(event);
          return Promise.resolve();
        },
        close: () => Promise.resolve(),
      },
    });
    const relayed = testMessage({ userId: `spiffe://${TRUST_DOMAIN}/node/dmr-tartu` });
    const message = {
      ...relayed,
      fields: { deliveryTag: 1, redelivered: false, exchange: 'dmr.mesh-ingress', routingKey: '' },
    } as unknown as ConsumeMessage;
    const config = testConfig();
    const path = new RelayPath({ nodeId: 'dmr-tallinn', outcome });

    await path.route(session, message, {
      context: { revision: 7, message: messageContext(config), principals: new Map(), localQueues: new Set() },
      guard: new ReplayGuard({ windowMs: config.limits.dedupWindowMs, maxEntries: 100 }),
      rate: new SenderRateLimit({ ratePerSecond: 100, burst: 100 }),
    });

    assert.deepEqual(
      published.map((publish) => publish.exchange),
      [REJECTED_EXCHANGE],
    );
    assert.ok(!published.some((publish) => publish.exchange === DELIVERY_EXCHANGE));
    assert.equal(published[0]?.options.headers?.[REASON_HEADER], 'RECIPIENT_UNREACHABLE');
    assert.equal(audited.length, 1);
    assert.equal(audited[0]?.result, 'rejected');
    assert.equal(audited[0]?.reason, 'RECIPIENT_UNREACHABLE');
    assert.equal(audited[0]?.configRevision, 7);
    assert.deepEqual(acked, [message]);
  });
});
