/**
 * Server-sent events (the CentOps configuration feed) read with
 * `eventsource-parser`, a maintained parser of the WHATWG event-stream
 * format: any line ending (LF, CR, CRLF), comments, `retry:`, multi-line
 * data and a UTF-8 BOM, across arbitrary chunk boundaries. Here only the
 * Node stream plumbing and DMR's event shape.
 */
import type { Readable } from 'node:stream';
import { createParser } from 'eventsource-parser';

export interface SseEvent {
  /** The `event:` field; 'message' when the event names none (as in a browser). */
  event: string;
  id?: string;
  data: string;
}

/** A push parser: feed() it text as it arrives; it calls `onEvent` for each complete event. */
export interface SseParser {
  feed(chunk: string): void;
  /** Forgets a partly received event (on reconnect). */
  reset(): void;
}

export function createSseParser(onEvent: (event: SseEvent) => void): SseParser {
  const parser = createParser({
    onEvent: (message) =>
      onEvent({
        event: message.event ?? 'message',
        ...(message.id === undefined ? {} : { id: message.id }),
        data: message.data,
      }),
  });
  return { feed: (chunk) => parser.feed(chunk), reset: () => parser.reset() };
}

/**
 * Reads events from `stream` (an HTTP response body) until it ends or closes
 * (resolves) or fails (rejects with the stream's error).
 */
export function readSse(stream: Readable, onEvent: (event: SseEvent) => void): Promise<void> {
  const parser = createSseParser(onEvent);
  return new Promise<void>((resolve, reject) => {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => parser.feed(chunk));
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
}
