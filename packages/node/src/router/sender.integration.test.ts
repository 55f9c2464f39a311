/**
 * Who the sender is, end to end on one NodeFixture: the broker logs a client
 * in as its SPIFFE id and accepts only that as `user_id`; the router reads
 * the client id from it and carries the plain id on (dmr-sender, reports,
 * audit, policy). A `user_id` that is not a client's SPIFFE id can only come
 * from a user that is no client certificate; the router refuses it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ADMIN_USERNAME } from '@dmr/broker-harness';
import type { ConfirmChannel } from 'amqplib';
import type { AuditRecord } from './audit.js';
import { waitFor } from '@dmr/core/testing';
import { NodeFixture, clientUser, parseReport, type TestClient } from '../testing/node-fixture.js';

/** Publishes as a fresh connection of `id`; resolves with the close code when the broker closes the channel. */
async function publishAs(node: NodeFixture, id: string, userId: string): Promise<number | 'confirmed'> {
  const connection = await node.connectAs(id);
  try {
    const channel: ConfirmChannel = await connection.createConfirmChannel();
    const closed = new Promise<number>((resolve) =>
      channel.once('error', (error: Error & { code?: number }) => resolve(error.code ?? -1)),
    );
    const confirmed = new Promise<'confirmed'>((resolve, reject) => {
      channel.publish(
        'dmr.ingress',
        '',
        Buffer.from('{}'),
        {
          messageId: randomUUID(),
          userId,
          type: 'ChatMessage',
          timestamp: Math.floor(Date.now() / 1000),
          persistent: true,
          headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
        },
        (error: unknown) => (error ? reject(new Error(String(error))) : resolve('confirmed')),
      );
    });
    // Either the broker confirms the publish or it closes the channel, which also fails the confirm.
    return await Promise.race([closed, confirmed.catch(() => closed)]);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** The router's decision log line about `messageId`, once written (after its audit record was confirmed). */
async function decision(node: NodeFixture, messageId: string): Promise<Record<string, unknown>> {
  return waitFor(`a decision about ${messageId}`, () => node.decisions(messageId)[0], {
    timeoutMs: 10_000,
    intervalMs: 50,
  });
}

describe('the sender is the SPIFFE id the broker checked', () => {
  let node: NodeFixture;
  let ria: TestClient;
  let rik: TestClient;

  before(async () => {
    node = await NodeFixture.start({ label: 'sender' });
    ria = await node.client('ria-bot');
    rik = await node.client('rik-bot');
  });

  after(async () => {
    await node?.stop();
  });

  it('routes with user_id = the client’s SPIFFE id; dmr-sender, report and audit carry the plain id', async () => {
    const sent = await ria.send({ to: 'rik-bot', userId: clientUser('ria-bot') });
    const delivered = await rik.next();
    assert.equal(delivered.properties.messageId, sent);
    assert.equal(delivered.properties.headers?.['dmr-sender'], 'ria-bot');
    assert.equal(delivered.properties.userId, undefined);
    // rik → ria has no grant: the report finds rik's queue by the plain id read from rik's SPIFFE id.
    const denied = await rik.send({ to: 'ria-bot' });
    const report = await rik.next();
    assert.equal(report.properties.correlationId, denied);
    assert.equal(parseReport(report).reason, 'POLICY_DENIED');
    const line = await decision(node, denied ?? '');
    assert.equal(line.sender, 'rik-bot');
    assert.equal((await decision(node, sent ?? '')).sender, 'ria-bot');
    const audited = (await node.auditRecords(300))
      .map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord)
      .filter((record) => record.messageId === sent || record.messageId === denied)
      .map((record) => [record.messageId, record.sender]);
    assert.deepEqual(
      audited.sort(([a], [b]) => (a === sent ? -1 : b === sent ? 1 : 0)),
      [
        [sent, 'ria-bot'],
        [denied, 'rik-bot'],
      ],
    );
  });

  it('never lets a plain id or another client’s SPIFFE id through: the broker closes the channel (406)', async () => {
    assert.equal(await publishAs(node, 'ria-bot', clientUser('ria-bot')), 'confirmed');
    assert.equal(await publishAs(node, 'ria-bot', 'ria-bot'), 406);
    assert.equal(await publishAs(node, 'ria-bot', clientUser('rik-bot')), 406);
    assert.equal(await publishAs(node, 'ria-bot', 'spiffe://other.test/client/ria-bot'), 406);
  });

  it('refuses SENDER_INVALID a user_id that is no client SPIFFE id (an admin account’s publish): no report', async () => {
    // The broker admin (who created the vhost, so may write to it) publishes through the management API as
    // itself, and RabbitMQ accepts its own name as user_id.
    const reportsSent = async (): Promise<number> => {
      const found = (await node.routers[0]?.registry.getMetricsAsJSON())?.find(
        (metric) => metric.name === 'dmr_router_reports_total',
      );
      return ((found?.values ?? []) as Array<{ value: number }>).reduce((sum, value) => sum + value.value, 0);
    };
    const reportsBefore = await reportsSent();
    const messageId = randomUUID();
    const published = await node.management.request(
      'POST',
      `/exchanges/${encodeURIComponent(node.vhost)}/dmr.ingress/publish`,
      {
        routing_key: '',
        payload: '{"text":"as admin"}',
        payload_encoding: 'string',
        properties: {
          message_id: messageId,
          user_id: ADMIN_USERNAME,
          type: 'ChatMessage',
          timestamp: Math.floor(Date.now() / 1000),
          delivery_mode: 2,
          headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
        },
      },
    );
    assert.deepEqual(published, { routed: true });
    // The decision is logged after its audit record is confirmed (and after any report was sent).
    const line = await decision(node, messageId);
    assert.equal(line.reason, 'SENDER_INVALID');
    assert.equal(line.detail, 'user_id is not spiffe://dmr.test/client/<id>');
    assert.equal(line.sender, null);
    assert.equal(await reportsSent(), reportsBefore, 'nobody to report to');
    const audited = (await node.auditRecords(300))
      .map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord)
      .filter((record) => record.messageId === messageId);
    assert.deepEqual(
      audited.map((record) => [record.result, record.reason, record.sender]),
      [['rejected', 'SENDER_INVALID', null]],
    );
    const copies = (await node.take('dmr.rejected')).filter((copy) => copy.properties.message_id === messageId);
    assert.equal(copies.length, 1);
    assert.equal(copies[0]?.properties.headers?.['dmr-reason'], 'SENDER_INVALID');
    assert.equal(copies[0]?.properties.headers?.['dmr-sender'], undefined);
  });
});
