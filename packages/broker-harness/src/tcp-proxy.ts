/**
 * A TCP proxy on loopback that fault tests put between two processes (e.g. a
 * shovel and its peer broker) to break that one path while both ends keep
 * running:
 *
 * - `pause()`: a partition. Nothing moves in either direction and new
 *   connections are held unanswered; the kernel buffers fill and senders
 *   block, as when packets are dropped and retransmitted. `resume()` lets
 *   everything through again, unchanged, so connections that did not time
 *   out themselves (AMQP heartbeats, TLS) carry on.
 * - `holdReplies()`: a one-way loss. What the client sends still reaches
 *   the target; what the target answers is held (e.g. a publisher confirm
 *   the broker sent for a message it stored). `resume()` lets it through;
 *   `cut()` drops it with the connection.
 * - `cut()`: the peer host is gone. Every connection is reset (RST) and new
 *   ones are reset at once. `restore()` accepts again.
 *
 * TLS passes through untouched (the proxy never reads it), so the client
 * still verifies the real server's certificate; point the client at the
 * proxy's port with the server's name for SNI.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { DmrError } from '@dmr/core';

export type TcpProxyMode = 'forwarding' | 'paused' | 'replies-held' | 'cut';

export interface TcpProxyTarget {
  /** Default 127.0.0.1; loopback only. */
  host?: string;
  port: number;
}

export interface TcpProxyOptions {
  targetHost?: string;
  targetPort: number;
  /** Default 127.0.0.1: never listen off loopback. */
  listenHost?: string;
  /** Default 0 (a free port). */
  listenPort?: number;
}

interface Pair {
  client: Socket;
  /** Undefined while a connection accepted during a pause waits for resume(). */
  server?: Socket;
  /** Ends both sides and forgets the pair (once). */
  forget: () => void;
}

export interface TcpProxyStats {
  /** Connections accepted since start. */
  accepted: number;
  /** Connections open now (client side). */
  open: number;
  /** Connections reset by cut() or while cut. */
  reset: number;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class TcpProxy {
  readonly host: string;
  readonly port: number;
  readonly target: { host: string; port: number };
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  #mode: TcpProxyMode = 'forwarding';
  #closed = false;
  readonly #stats: TcpProxyStats = { accepted: 0, open: 0, reset: 0 };

  private constructor(server: Server, host: string, port: number, target: { host: string; port: number }) {
    this.#server = server;
    this.host = host;
    this.port = port;
    this.target = target;
  }

  /** Starts listening; resolves once the port is bound. */
  static async start(options: TcpProxyOptions): Promise<TcpProxy> {
    const listenHost = options.listenHost ?? '127.0.0.1';
    const targetHost = TcpProxy.#checkTarget(options.targetHost, options.targetPort);
    // Fault tests may only send traffic to this machine.
    if (!isLoopback(listenHost)) {
      throw new DmrError('INVALID_ARGUMENT', `the test proxy only works on loopback, not ${listenHost}`);
    }
    const holder: { proxy?: TcpProxy } = {};
    const server = createServer({ pauseOnConnect: true }, (client) => holder.proxy?.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listenPort ?? 0, listenHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') {
      server.close();
      throw new DmrError('INTERNAL', 'the proxy has no TCP address');
    }
    const proxy = new TcpProxy(server, listenHost, address.port, { host: targetHost, port: options.targetPort });
    holder.proxy = proxy;
    return proxy;
  }

  /**
   * Forwards what a listener opened elsewhere accepts to a loopback target:
   * NetnsPartition's listeners live in another network namespace (their
   * socket was opened there and handed over), so `host`/`port` name an
   * address of that namespace, not of loopback.
   */
  static adopt(server: Server, listening: { host: string; port: number }, target: TcpProxyTarget): TcpProxy {
    const targetHost = TcpProxy.#checkTarget(target.host, target.port);
    const proxy = new TcpProxy(server, listening.host, listening.port, { host: targetHost, port: target.port });
    server.on('connection', (client: Socket) => proxy.accept(client));
    return proxy;
  }

  static #checkTarget(host: string | undefined, port: number): string {
    const targetHost = host ?? '127.0.0.1';
    // Fault tests may only send traffic to this machine.
    if (!isLoopback(targetHost)) {
      throw new DmrError('INVALID_ARGUMENT', `the test proxy only works on loopback, not ${targetHost}`);
    }
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new DmrError('INVALID_ARGUMENT', `target port must be 1–65535, not ${port}`);
    }
    return targetHost;
  }

  get mode(): TcpProxyMode {
    return this.#mode;
  }

  get stats(): Readonly<TcpProxyStats> {
    return { ...this.#stats, open: this.#pairs.size };
  }

  /** @internal */
  accept(client: Socket): void {
    this.#stats.accepted += 1;
    client.setNoDelay(true);
    if (this.#closed || this.#mode === 'cut') {
      this.#stats.reset += 1;
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = {
      client,
      forget: () => {
        if (!this.#pairs.delete(pair)) return;
        // One side ended or failed: end the other too, as a real path would.
        client.destroy();
        pair.server?.destroy();
      },
    };
    this.#pairs.add(pair);
    client.on('error', pair.forget);
    client.on('close', pair.forget);
    if (this.#mode === 'forwarding' || this.#mode === 'replies-held') this.#connectTarget(pair);
  }

  #connectTarget(pair: Pair): void {
    const server = connect({ host: this.target.host, port: this.target.port, noDelay: true });
    pair.server = server;
    server.on('error', pair.forget);
    server.on('close', pair.forget);
    TcpProxy.#flow(pair.client, server);
    if (this.#mode === 'replies-held') TcpProxy.#holdReplies(pair.client, server);
  }

  static #holdReplies(client: Socket, server: Socket): void {
    server.unpipe(client);
    server.pause();
  }

  /** pipe() carries backpressure both ways and resumes the sockets it reads. */
  static #flow(client: Socket, server: Socket): void {
    client.pipe(server);
    server.pipe(client);
  }

  /**
   * Unpiped and paused, a socket reads nothing more (a paused pipe could be
   * resumed by a late 'drain'); what it had read stays buffered for later.
   */
  static #hold(client: Socket, server: Socket | undefined): void {
    client.unpipe();
    client.pause();
    if (server) {
      server.unpipe();
      server.pause();
    }
  }

  /** A partition: no bytes in either direction, new connections wait unanswered. */
  pause(): void {
    this.#assertOpen();
    this.#mode = 'paused';
    for (const pair of this.#pairs) TcpProxy.#hold(pair.client, pair.server);
  }

  /** One way only: the target's answers are held, the client's bytes still reach it. */
  holdReplies(): void {
    this.#assertOpen();
    if (this.#mode !== 'forwarding') {
      throw new DmrError('INVALID_ARGUMENT', `the proxy holds replies only while forwarding, not ${this.#mode}`);
    }
    this.#mode = 'replies-held';
    for (const pair of this.#pairs) if (pair.server) TcpProxy.#holdReplies(pair.client, pair.server);
  }

  /** Ends a pause or held replies: held bytes flow, held connections reach the target. */
  resume(): void {
    this.#assertOpen();
    if (this.#mode === 'replies-held') {
      this.#mode = 'forwarding';
      for (const pair of this.#pairs) pair.server?.pipe(pair.client);
      return;
    }
    if (this.#mode !== 'paused') return;
    this.#mode = 'forwarding';
    for (const pair of [...this.#pairs]) {
      if (pair.server) TcpProxy.#flow(pair.client, pair.server);
      else this.#connectTarget(pair);
    }
  }

  /** The peer is gone: every connection is reset, and so is every new one until restore(). */
  cut(): void {
    this.#assertOpen();
    this.#mode = 'cut';
    for (const pair of [...this.#pairs]) {
      this.#pairs.delete(pair);
      this.#stats.reset += 1;
      pair.client.resetAndDestroy();
      pair.server?.resetAndDestroy();
    }
  }

  /** Accept and forward again after cut(). */
  restore(): void {
    this.#assertOpen();
    if (this.#mode === 'cut') this.#mode = 'forwarding';
  }

  /** Stops listening and destroys every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pair of [...this.#pairs]) {
      this.#pairs.delete(pair);
      pair.client.destroy();
      pair.server?.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #assertOpen(): void {
    if (this.#closed) throw new DmrError('INVALID_ARGUMENT', 'the proxy was closed');
  }
}
