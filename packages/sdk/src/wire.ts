/**
 * The message contract as the SDK sees it on the wire: the exchange a client
 * writes, the queue it reads and the headers are @dmr/contract's
 * (docs/contract.md), re-exported under the SDK's names; the lenient readers
 * of header values the client's parts share are here.
 */
import { parseHops as parseHopsHeader, type Hop } from '@dmr/contract';

export * from './contract-names.js';
// Internal: the headers a client may not set itself.
export { RESERVED_HEADERS } from '@dmr/contract';

export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function headerString(headers: Record<string, unknown>, name: string): string | undefined {
  const value = headers[name];
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** `dmr-hops` as delivered; none when it is absent or malformed (nodes write it, a client only shows it). */
export function parseHops(text: string | undefined): Hop[] {
  return parseHopsHeader(text) ?? [];
}
