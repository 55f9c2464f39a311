/**
 * awaitNodeReady without RabbitMQ: a fake epmd that lists the node, and an
 * AMQPS port that is closed (the listener not open yet: keep waiting) or
 * open but failing every handshake (a broken listener: fail after the
 * grace). The ready path itself is every integration test's broker boot.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '@dmr/core/testing';
import { awaitNodeReady, type LaunchedNode } from './node.js';
import { makeTempDir, sampleState } from './testing.js';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

describe('awaitNodeReady', () => {
  let temp: { path: string; remove: () => Promise<void> };
  let epmd: Server;
  let epmdPort: number;
  const stillRunning: LaunchedNode = {
    shell: { pid: process.pid, startTicks: 0 },
    exited: new Promise(() => undefined),
    hasExited: () => false,
  };

  before(async () => {
    temp = await makeTempDir('await-ready');
    // NAMES: the node is registered at once, so the wait is all on the listener.
    epmd = createServer((socket) => {
      socket.once('data', () =>
        socket.end(Buffer.concat([Buffer.from([0, 0, 0x11, 0x11]), Buffer.from('name dmr-broker-1 at port 1\n')])),
      );
    });
    epmdPort = await listen(epmd);
  });

  after(async () => {
    epmd.close();
    await temp.remove();
  });

  function options(amqps: number, timeoutMs: number) {
    const [node] = sampleState(join(temp.path, 'h')).nodes;
    assert.ok(node !== undefined);
    node.ports = { ...node.ports, amqps };
    return {
      epmdPort,
      node,
      launched: stillRunning,
      startedAt: Date.now(),
      timeoutMs,
      handshakeGraceMs: 300,
      probe: { port: amqps, caPem: '', certificatePem: '', privateKeyPem: '' },
    };
  }

  it('waits through a closed port (the boot goes on) until the boot timeout, not the handshake grace', async () => {
    const closed = await freePort();
    await assert.rejects(awaitNodeReady(options(closed, 1500)), (error: Error) => {
      assert.match(error.message, /was not ready after 1500 ms/);
      return true;
    });
  });

  it('fails a listener that accepts and breaks every handshake once the grace is over', async () => {
    const broken = createServer((socket) => socket.destroy());
    const port = await listen(broken);
    try {
      await assert.rejects(awaitNodeReady(options(port, 30_000)), (error: Error) => {
        assert.match(error.message, new RegExp(`TLS listener on 127.0.0.1:${port} refused a client handshake`));
        return true;
      });
    } finally {
      broken.close();
    }
  });
});
