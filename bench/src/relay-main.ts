/**
 * Row b's relay, in its own process: consume the first queue, republish each
 * message to the second with a publisher confirm, and ack the original only
 * once that confirm arrived — the least any at-least-once two-hop relay must
 * do, so its throughput is the physical limit the DMR router is judged by.
 */
import { connectWithCertificate } from '@dmr/broker';
import type { ConsumeMessage } from 'amqplib';
import { serveChild } from './child.js';

export interface RelayConfig {
  port: number;
  vhost: string;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  from: string;
  to: string;
  prefetch: number;
}

function isRelayConfig(value: unknown): value is RelayConfig {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.port === 'number' &&
    typeof v.prefetch === 'number' &&
    ['vhost', 'caPem', 'certificatePem', 'privateKeyPem', 'from', 'to'].every((key) => typeof v[key] === 'string')
  );
}

serveChild(async (raw) => {
  if (!isRelayConfig(raw)) throw new Error('the relay was started without a valid RelayConfig');
  const config = raw;
  const connection = await connectWithCertificate({
    port: config.port,
    vhost: config.vhost,
    caPem: config.caPem,
    certificatePem: config.certificatePem,
    privateKeyPem: config.privateKeyPem,
  });
  const input = await connection.createChannel();
  const output = await connection.createConfirmChannel();
  await input.prefetch(config.prefetch);
  let relayed = 0;
  let failed = 0;
  const relay = (message: ConsumeMessage | null): void => {
    if (message === null) return;
    const { properties } = message;
    output.publish(
      '',
      config.to,
      message.content,
      { persistent: true, messageId: properties.messageId as string | undefined, headers: properties.headers },
      (error) => {
        if (error === null || error === undefined) {
          relayed += 1;
          input.ack(message);
        } else {
          failed += 1;
          // Refused downstream: back to the first queue, as a relay that must not lose it would.
          input.nack(message, false, true);
        }
      },
    );
  };
  const { consumerTag } = await input.consume(config.from, relay, { noAck: false });
  return {
    info: { pid: process.pid },
    stop: async () => {
      await input.cancel(consumerTag).catch(() => undefined);
      await output.waitForConfirms().catch(() => undefined);
      await connection.close().catch(() => undefined);
      return { relayed, failed };
    },
  };
});
