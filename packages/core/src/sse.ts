/**
 * Server-sent events (the CentOps configuration feed) read with
 * `eventsource-parser`, a maintained parser of the WHATWG event-stream
 * format: any line ending (LF, CR, CRLF), comments, `retry:`, multi-line
 * data and a UTF-8 BOM, across arbitrary chunk boundaries. Here only the
 * Node stream plumbing and DMR's event shape.
 */
import type { Readable } from 'node:stream';
import { createParser } from 'eventsource-parser';
import { DmrError } from './errors.js';

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

/** The most text one event may take before it completes (a whole signed configuration fits many times). */
export const MAX_SSE_EVENT_CHARS = 16 * 1024 * 1024;

/**
 * Reads events from `stream` (an HTTP response body) until it ends or closes
 * (resolves) or fails (rejects with the stream's error). A stream that sends
 * more than `maxEventChars` without completing an event is cut off
 * (VALIDATION_FAILED): the parser would otherwise buffer it without bound.
 */
export function readSse(
  stream: Readable,
  onEvent: (event: SseEvent) => void,
  maxEventChars = MAX_SSE_EVENT_CHARS,
): Promise<void> {
  let pending = 0;
  const parser = createSseParser((event) => {
    pending = 0;
    onEvent(event);
  });
  return new Promise<void>((resolve, reject) => {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      pending += chunk.length;
      parser.feed(chunk);
      if (pending > maxEventChars) {
        stream.destroy(
          new DmrError('VALIDATION_FAILED', `an event of the stream exceeds ${maxEventChars} characters`, {
            details: { maxEventChars },
          }),
        );
      }
    });
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
}
