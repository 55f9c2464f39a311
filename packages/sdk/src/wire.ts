/**
 * The message contract as the SDK sees it on the wire (docs/contract.md "Message
 * contract"): the exchange a client writes, the queue it reads, the headers,
 * and the lenient readers of header values the client's parts share.
 */

/** The exchange every client publishes to (the only thing it may write). */
export const INGRESS_EXCHANGE = 'dmr.ingress';
export const CONTRACT_VERSION = 1;
/** Headers the client sets. */
export const RECIPIENT_HEADER = 'dmr-recipient';
export const VERSION_HEADER = 'dmr-version';
/** Headers only DMR sets (a client setting one is refused with HEADER_RESERVED). */
export const SENDER_HEADER = 'dmr-sender';
export const ORIGIN_HEADER = 'dmr-origin';
export const HOPS_HEADER = 'dmr-hops';
export const SIGNATURE_HEADER = 'dmr-sig';
export const RESERVED_HEADERS: readonly string[] = [SENDER_HEADER, ORIGIN_HEADER, HOPS_HEADER, SIGNATURE_HEADER];

/** The queue a client reads. */
export function clientQueue(id: string): string {
  return `dmr.client.${id}`;
}

/** The vhost of a DMR node. */
export function nodeVhost(node: string): string {
  return `dmr-${node}`;
}

export interface Hop {
  node: string;
  at: string;
}

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

export function parseHops(text: string | undefined): Hop[] {
  if (text === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) return [];
    return parsed
      .filter(isRecord)
      .filter((hop) => typeof hop.node === 'string' && typeof hop.at === 'string')
      .map((hop) => ({ node: hop.node as string, at: hop.at as string }));
  } catch {
    return [];
  }
}
