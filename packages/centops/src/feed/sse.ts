/**
 * One server-sent-events stream of a node's signed configuration. Writing is
 * serialised and coalesced: if revisions arrive faster than the client
 * reads, the stream sends only the newest (a node only ever wants the
 * latest document), and never two events out of order.
 */
import type { ServerResponse } from 'node:http';
import { isDmrError } from '@dmr/core';
import type { SignedConfig } from './source.js';

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  // no-transform: proxies must not compress or buffer the stream.
  'cache-control': 'no-cache, no-transform',
  // nginx buffers responses unless told not to.
  'x-accel-buffering': 'no',
} as const;

/** How long a client waits before reconnecting after the stream drops (the SSE `retry` field). */
export const SSE_RETRY_MS = 3000;

export class ConfigStream {
  #lastSent = -1;
  #busy = false;
  #again = false;
  #closed = false;
  readonly #heartbeat: NodeJS.Timeout;

  constructor(
    private readonly response: ServerResponse,
    private readonly load: () => Promise<SignedConfig>,
    heartbeatMs: number,
    private readonly onEnd: () => void,
  ) {
    response.on('close', () => this.#cleanup());
    // A comment line keeps proxies and the node's idle timers from closing a quiet stream.
    this.#heartbeat = setInterval(() => this.#write(`: heartbeat ${new Date().toISOString()}\n\n`), heartbeatMs);
    this.#heartbeat.unref();
    this.#write(`retry: ${SSE_RETRY_MS}\n\n`);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends the current document if it is newer than the last one sent; safe to call any number of times. */
  async pump(): Promise<void> {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    try {
      do {
        this.#again = false;
        if (this.#closed) return;
        const current = await this.load();
        if (current.revision > this.#lastSent) {
          this.#lastSent = current.revision;
          this.#write(`id: ${current.revision}\nevent: config\ndata: ${current.jws}\n\n`);
        }
      } while (this.#again);
    } catch (error) {
      // The node was deleted, or the store failed: say so and end; the client reconnects and gets a proper error.
      const body = isDmrError(error)
        ? error.toJSON()
        : { error: { code: 'INTERNAL', message: 'the configuration could not be built', details: {} } };
      this.#write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
      this.end();
    } finally {
      this.#busy = false;
    }
  }

  /** Ends the stream cleanly (node gone). */
  end(): void {
    if (!this.response.writableEnded) this.response.end();
    this.#cleanup();
  }

  /**
   * Ends the stream and closes its connection once the end is flushed. At
   * server shutdown a kept-alive socket would otherwise hold server.close()
   * until the keep-alive timeout (72 s in Fastify).
   */
  shutdown(): Promise<void> {
    return new Promise((resolve) => {
      const socket = this.response.socket;
      const done = () => {
        socket?.destroy();
        this.#cleanup();
        resolve();
      };
      if (this.response.writableEnded) done();
      else this.response.end(done);
    });
  }

  #write(chunk: string): void {
    if (this.#closed || this.response.writableEnded) return;
    this.response.write(chunk);
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.onEnd();
  }
}
