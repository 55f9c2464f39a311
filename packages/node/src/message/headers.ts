/**
 * What the router makes of a client's AMQP header table: how large it is on
 * the wire, whether it tries to choose extra destinations (CC/BCC), and the
 * short list of headers that travel on to the recipient (the allowlist).
 *
 * amqplib decodes a field table into a plain object in which a key
 * `__proto__` sets the prototype, so every read here is of own properties,
 * and the size measure walks keys the way amqplib's encoder does (`for…in`,
 * inherited keys included) so that it bounds what a re-encode would need.
 */
import {
  APP_HEADER_PATTERN,
  E2E_CONTENT_TYPE_HEADER,
  RECIPIENT_HEADER,
  TRACEPARENT_HEADER,
  TRACESTATE_HEADER,
  VERSION_HEADER,
  type HeaderValue,
} from '@dmr/contract';
import { validTraceparent } from '@dmr/core';

/** Header names RabbitMQ reads as extra routing keys (rabbit_basic: `CC`, `BCC`). */
const ROUTING_HEADERS = new Set(['cc', 'bcc']);

export { APP_HEADER_PATTERN, E2E_CONTENT_TYPE_HEADER } from '@dmr/contract';

/** tracestate is W3C ASCII with a recommended cap of 512 characters (traceparent: core's parseTraceparent). */
const TRACESTATE_PATTERN = /^[\x20-\x7e]{1,512}$/;

/** Deeper nesting than this is refused as too large: no DMR client nests tables, and recursion must stay bounded. */
export const MAX_HEADER_DEPTH = 16;

/** Stand-in size of a table nested deeper than MAX_HEADER_DEPTH: larger than any allowed header table. */
const TOO_DEEP = Number.MAX_SAFE_INTEGER;

/**
 * An upper bound of the bytes amqplib needs to encode `headers` as a field
 * table (4-byte length + per entry 1 + key + tagged value), for every value a
 * decoded table can hold: strings, numbers (≤ 8 bytes), booleans, null,
 * byte arrays, arrays, nested tables and amqplib's `{'!': type, value}`
 * wrappers (measured as the table they are, plus 9). Stops adding once
 * `stopAbove` is passed: the answer is then only known to be larger.
 */
export function encodedTableSize(headers: object | undefined, stopAbove = Number.MAX_SAFE_INTEGER): number {
  if (headers === undefined || headers === null) return 0;
  return tableSize(headers, 0, stopAbove);
}

function tableSize(table: object, depth: number, stopAbove: number): number {
  if (depth > MAX_HEADER_DEPTH) return TOO_DEEP;
  let size = 4;
  for (const key in table) {
    const value = (table as Record<string, unknown>)[key];
    if (value === undefined) continue;
    size += 1 + Buffer.byteLength(key, 'utf8') + valueSize(value, depth, stopAbove - size);
    if (size > stopAbove) return size;
  }
  return size;
}

function valueSize(value: unknown, depth: number, stopAbove: number): number {
  switch (typeof value) {
    case 'string':
      return 5 + Buffer.byteLength(value, 'utf8');
    case 'boolean':
      return 2;
    case 'object': {
      if (value === null) return 1;
      if (value instanceof Uint8Array) return 5 + value.length;
      if (Array.isArray(value)) {
        if (depth + 1 > MAX_HEADER_DEPTH) return TOO_DEEP;
        let size = 5;
        for (const item of value as unknown[]) {
          size += valueSize(item, depth + 1, stopAbove - size);
          if (size > stopAbove) return size;
        }
        return size;
      }
      // A table, or amqplib's typed wrapper `{'!': type, value}`: its table form covers its value, +9 its number.
      return 9 + tableSize(value, depth + 1, stopAbove);
    }
    default:
      // numbers (at most 8 bytes), and anything else amqplib would have to guess at
      return 9;
  }
}

/** An own header of `headers` (never one inherited through a `__proto__` key). */
export function ownHeader(headers: Record<string, HeaderValue> | undefined, name: string): HeaderValue {
  return headers !== undefined && headers !== null && Object.hasOwn(headers, name) ? headers[name] : undefined;
}

/** The first header RabbitMQ would read as extra routing keys (`CC`, `BCC`, in any case), or undefined. */
export function routingHeader(headers: Record<string, HeaderValue> | undefined): string | undefined {
  if (headers === undefined || headers === null) return undefined;
  return Object.keys(headers).find((name) => ROUTING_HEADERS.has(name.toLowerCase()));
}

function isScalar(value: unknown): value is string | boolean | number {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isSafeInteger(value))
  );
}

/**
 * The client headers the delivered copy carries, and nothing else: the
 * recipient and version as validated, trace context, the SDK's protected
 * content type, and `app-*` headers with a string, boolean or integer value.
 * Everything else (CC/BCC above all, x-* headers RabbitMQ acts on, nested
 * tables, byte arrays) is dropped.
 */
export function forwardedHeaders(
  headers: Record<string, HeaderValue> | undefined,
  recipient: string,
  version: number,
): Record<string, unknown> {
  const forwarded = Object.create(null) as Record<string, unknown>;
  forwarded[RECIPIENT_HEADER] = recipient;
  forwarded[VERSION_HEADER] = version;
  // A tracestate without a valid traceparent means nothing (W3C), so both go or neither.
  const traceparent = validTraceparent(ownHeader(headers, TRACEPARENT_HEADER));
  if (traceparent !== undefined) {
    forwarded[TRACEPARENT_HEADER] = traceparent;
    const tracestate = ownHeader(headers, TRACESTATE_HEADER);
    if (typeof tracestate === 'string' && TRACESTATE_PATTERN.test(tracestate))
      forwarded[TRACESTATE_HEADER] = tracestate;
  }
  const contentType = ownHeader(headers, E2E_CONTENT_TYPE_HEADER);
  if (typeof contentType === 'string') forwarded[E2E_CONTENT_TYPE_HEADER] = contentType;
  for (const name of Object.keys(headers ?? {})) {
    const value = ownHeader(headers, name);
    if (APP_HEADER_PATTERN.test(name) && isScalar(value)) forwarded[name] = value;
  }
  return forwarded;
}
