/**
 * A minimal server-sent-events reader over node:http or node:https (by the
 * URL's scheme), for tests and the benchmark. For mutual TLS, pass an
 * https.Agent that carries the client certificate, key and CA.
 */
import http from 'node:http';
import https from 'node:https';

export interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

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
      let buffer = '';
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
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = { event: 'message', data: '' };
          let hasData = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':') || line === '') continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') event.event = value;
            else if (field === 'id') event.id = value;
            else if (field === 'data') {
              event.data = hasData ? `${event.data}\n${value}` : value;
              hasData = true;
            }
          }
          if (!hasData) continue;
          client.onEvent?.(event);
          const waiter = waiters.shift();
          if (waiter) waiter(event);
          else queue.push(event);
        }
      });
      response.on('end', endResolve);
      response.on('close', endResolve);
      resolve(client);
    });
    request.on('error', reject);
  });
}
