/**
 * A minimal server-sent-events reader over node:http or node:https (by the
 * URL's scheme), for tests and the benchmark; events are parsed by @dmr/core's
 * SSE parser, the node agent's. For mutual TLS, pass an
 * https.Agent that carries the client certificate, key and CA.
 */
import http from 'node:http';
import https from 'node:https';
import { createSseParser, type SseEvent } from '@dmr/core';

export type { SseEvent };

export interface SseClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Resolves with the next `event:` (comments and retry lines are skipped), rejects after timeoutMs. */
  next(timeoutMs?: number): Promise<SseEvent>;
  /** Called for every event as it arrives (the benchmark times arrivals here). */
  onEvent?: (event: SseEvent) => void;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string>, agent?: http.Agent): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const get: typeof http.get = url.startsWith('https:') ? (https.get as typeof http.get) : http.get;
    const request = get(url, { headers: { accept: 'text/event-stream', ...headers }, agent }, (response) => {
      const queue: SseEvent[] = [];
      const waiters: Array<(event: SseEvent) => void> = [];
      let endResolve: () => void = () => undefined;
      const ended = new Promise<void>((done) => (endResolve = done));
      const client: SseClient = {
        status: response.statusCode ?? 0,
        headers: response.headers,
        next(timeoutMs = 5000) {
          const queued = queue.shift();
          if (queued) return Promise.resolve(queued);
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`no SSE event within ${timeoutMs} ms`)), timeoutMs);
            waiters.push((event) => {
              clearTimeout(timer);
              ok(event);
            });
          });
        },
        ended,
        close: () => request.destroy(),
      };
      const parser = createSseParser((event) => {
        client.onEvent?.(event);
        const waiter = waiters.shift();
        if (waiter) waiter(event);
        else queue.push(event);
      });
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => parser.feed(chunk));
      response.on('end', endResolve);
      response.on('close', endResolve);
      resolve(client);
    });
    request.on('error', reject);
  });
}
