import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { TcpProxy } from './tcp-proxy.js';
import { waitFor } from '@dmr/core/testing';

/** A client that collects what the echo server sends back. */
interface Client {
  socket: Socket;
  received: () => string;
  closed: () => boolean;
  error: () => (Error & { code?: string }) | undefined;
}

function client(port: number): Promise<Client> {
  return new Promise((resolve) => {
    let data = '';
    let closed = false;
    let failure: (Error & { code?: string }) | undefined;
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('close', () => (closed = true));
    socket.on('error', (error: Error & { code?: string }) => (failure = error));
    const made: Client = { socket, received: () => data, closed: () => closed, error: () => failure };
    socket.once('connect', () => resolve(made));
    // A connection the proxy resets at once may fail before 'connect'.
    socket.once('error', () => resolve(made));
  });
}

describe('TcpProxy', () => {
  let echo: Server;
  let echoPort: number;
  let echoAccepted = 0;
  let echoBytes = 0;
  const proxies: TcpProxy[] = [];

  before(async () => {
    echo = createServer((socket) => {
      echoAccepted += 1;
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => (echoBytes += chunk.length));
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const address = echo.address();
    assert.ok(address && typeof address === 'object');
    echoPort = address.port;
  });

  after(async () => {
    for (const proxy of proxies) await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  async function proxy(): Promise<TcpProxy> {
    const started = await TcpProxy.start({ targetPort: echoPort });
    proxies.push(started);
    return started;
  }

  it('forwards both ways on loopback', async () => {
    const p = await proxy();
    assert.equal(p.host, '127.0.0.1');
    const c = await client(p.port);
    c.socket.write('hello');
    await waitFor("c.received() === 'hello'", () => c.received() === 'hello', { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(p.stats.open, 1);
    c.socket.destroy();
    await waitFor('the pair is forgotten when a side closes', () => p.stats.open === 0, {
      timeoutMs: 5000,
      intervalMs: 10,
    });
  });

  it('holdReplies lets the client through and holds the answers until resume', async () => {
    const p = await proxy();
    const c = await client(p.port);
    c.socket.write('a');
    await waitFor("c.received() === 'a'", () => c.received() === 'a', { timeoutMs: 5000, intervalMs: 10 });
    p.holdReplies();
    assert.equal(p.mode, 'replies-held');
    const target = echoBytes;
    c.socket.write('bc');
    // The target got the bytes (the echo server counts them) while the client still has only the first answer.
    await waitFor('the echo server to read the held request', () => echoBytes === target + 2, {
      timeoutMs: 5000,
      intervalMs: 10,
    });
    assert.equal(c.received(), 'a');
    p.resume();
    assert.equal(p.mode, 'forwarding');
    await waitFor("c.received() === 'abc'", () => c.received() === 'abc', { timeoutMs: 5000, intervalMs: 10 });
    c.socket.destroy();
  });

  it('pause holds bytes and new connections; resume delivers them unchanged', async () => {
    const p = await proxy();
    const live = await client(p.port);
    live.socket.write('a');
    await waitFor("live.received() === 'a'", () => live.received() === 'a', { timeoutMs: 5000, intervalMs: 10 });
    p.pause();
    assert.equal(p.mode, 'paused');
    live.socket.write('b'.repeat(100_000));
    const acceptedBefore = echoAccepted;
    const held = await client(p.port);
    held.socket.write('held');
    // Bounded: nothing may arrive while paused, neither through the live connection nor the new one.
    // A paused proxy offers no call to synchronise on: the window is the proof.
    await assert.rejects(
      waitFor('bytes through a paused proxy', () => live.received().length > 1 || held.received().length > 0, {
        timeoutMs: 300,
        intervalMs: 10,
      }),
      /timed out/,
    );
    assert.equal(echoAccepted, acceptedBefore, 'a connection made during a pause does not reach the target');
    p.resume();
    await waitFor(
      "live.received() === `a${'b'.repeat(100_000)}`",
      () => live.received() === `a${'b'.repeat(100_000)}`,
      { timeoutMs: 5000, intervalMs: 10 },
    );
    await waitFor("held.received() === 'held'", () => held.received() === 'held', { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(live.closed() || held.closed(), false);
    live.socket.destroy();
    held.socket.destroy();
  });

  it('cut resets every connection and every new one; restore accepts again', async () => {
    const p = await proxy();
    const live = await client(p.port);
    live.socket.write('x');
    await waitFor("live.received() === 'x'", () => live.received() === 'x', { timeoutMs: 5000, intervalMs: 10 });
    p.cut();
    await waitFor('live.closed()', () => live.closed(), { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(live.error()?.code, 'ECONNRESET');
    const refused = await client(p.port);
    await waitFor('refused.closed()', () => refused.closed(), { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(refused.received(), '');
    assert.ok(p.stats.reset >= 2);
    p.restore();
    const again = await client(p.port);
    again.socket.write('back');
    await waitFor("again.received() === 'back'", () => again.received() === 'back', {
      timeoutMs: 5000,
      intervalMs: 10,
    });
    again.socket.destroy();
  });

  it('refuses to listen or forward off loopback', async () => {
    await assert.rejects(TcpProxy.start({ targetHost: '10.0.0.1', targetPort: 1 }), DmrError);
    await assert.rejects(TcpProxy.start({ listenHost: '0.0.0.0', targetPort: echoPort }), DmrError);
  });

  it('close() ends every connection and is idempotent', async () => {
    const p = await proxy();
    const c = await client(p.port);
    c.socket.write('1');
    await waitFor("c.received() === '1'", () => c.received() === '1', { timeoutMs: 5000, intervalMs: 10 });
    await p.close();
    await waitFor('c.closed()', () => c.closed(), { timeoutMs: 5000, intervalMs: 10 });
    assert.throws(() => p.pause(), DmrError);
    await p.close();
  });
});
