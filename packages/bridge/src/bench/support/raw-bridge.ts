/**
 * The bridge benchmark's raw baseline (not a product part): the least an
 * HTTP → RabbitMQ → HTTP bridge pair can do on this machine, run as two child
 * processes like the two DMR bridges. `send`: an HTTP server that publishes
 * each POST body as it is (persistent, publisher confirm) to one quorum queue
 * and answers 202 after the confirm. `receive`: consumes that queue with the
 * same prefetch as the DMR bridge and POSTs each body to the endpoint over an
 * undici Pool, acking after the 2xx. Same broker, TLS and SASL EXTERNAL as the
 * DMR bridges; no router, no checks, no policy, no audit, no validation.
 * Configured by one JSON argument (RawBridgeConfig); prints `ready <port>`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, credentials } from 'amqplib';
import { Pool } from 'undici';

export interface RawBridgeConfig {
  role: 'send' | 'receive';
  amqpsPort: number;
  vhost: string;
  queue: string;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  /** receive: where to POST, and how many at once (the prefetch). */
  endpointUrl?: string;
  concurrency?: number;
}

async function main(config: RawBridgeConfig): Promise<void> {
  const connection = await connect(
    { protocol: 'amqps', hostname: '127.0.0.1', port: config.amqpsPort, vhost: config.vhost, heartbeat: 30 },
    {
      credentials: credentials.external(),
      noDelay: true,
      servername: 'localhost',
      ca: config.caPem,
      cert: config.certificatePem,
      key: config.privateKeyPem,
    },
  );
  if (config.role === 'send') {
    const channel = await connection.createConfirmChannel();
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        channel.sendToQueue(
          config.queue,
          Buffer.concat(chunks),
          { persistent: true, contentType: 'application/json' },
          (error) => res.writeHead(error ? 503 : 202).end(),
        );
      });
    });
    // As fastify (the DMR bridge): the generator's kept-alive sockets must not be closed under it between levels.
    server.keepAliveTimeout = 72_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    console.log(`ready ${(server.address() as AddressInfo).port}`);
    return;
  }
  const url = new URL(config.endpointUrl ?? '');
  const concurrency = config.concurrency ?? 32;
  const pool = new Pool(url.origin, { connections: concurrency, pipelining: 1 });
  const channel = await connection.createChannel();
  await channel.prefetch(concurrency);
  await channel.consume(config.queue, (message) => {
    if (message === null) return;
    void pool
      .request({
        path: url.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: message.content,
      })
      .then(async (response) => {
        await response.body.dump();
        if (response.statusCode < 300) channel.ack(message);
        else channel.nack(message, false, true);
      })
      .catch(() => channel.nack(message, false, true));
  });
  console.log('ready 0');
}

await main(JSON.parse(process.argv[2] ?? '{}') as RawBridgeConfig);
