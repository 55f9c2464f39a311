/**
 * Dynamic shovels as DMR links use them: the spec of a link (pure, so the
 * URI encoding is unit-tested) and the parsing of what the management API
 * answers about shovels. The calls themselves are ManagementClient methods.
 *
 * How RabbitMQ 3.10.8 reads these URIs (amqp_uri, uri_parser of its
 * amqp_client, read from the installed beams):
 * - the path after the first `/` is the vhost, percent-decoded byte by byte;
 *   a literal `/` in it is refused (`invalid_vhost`), so the vhost is encoded
 *   as a URI component;
 * - the query is split on `&`, each pair on its first `=`, and each TLS value
 *   is percent-decoded (`+` is NOT a space); a value must therefore encode
 *   `&`, `=`, `#`, `?` and `%` — encodeURIComponent does;
 * - file paths decode to a list of bytes that Erlang's file layer then reads
 *   as Unicode code points, so a non-ASCII path names another file: refused here.
 */
import { DmrError } from '@dmr/core';

/** What DMR sends: a dynamic AMQP 0-9-1 shovel from a local queue to a remote exchange. */
export interface LinkShovelSpec {
  'src-protocol': 'amqp091';
  'src-uri': string;
  'src-queue': string;
  /**
   * Arguments the shovel declares the source queue with if it does not exist
   * (it checks with a passive declare first). Without them it would create a
   * classic queue, which a later quorum declare by the reconciler fails on
   * (406 inequivalent arg 'x-queue-type'); with them both declares agree.
   */
  'src-queue-args'?: Record<string, string | number | boolean>;
  'src-prefetch-count': number;
  'src-delete-after': 'never';
  'dest-protocol': 'amqp091';
  'dest-uri': string;
  'dest-exchange': string;
  'dest-add-forward-headers': false;
  'ack-mode': 'on-confirm';
  'reconnect-delay': number;
}

/** A shovel definition as stored (GET /api/parameters/shovel/…): any keys, JSON values. */
export type ShovelDefinition = Record<string, unknown>;

export interface PeerEndpoint {
  /** Host name or IP address the peer's AMQPS listener is reached at (IPv6 without brackets). */
  host: string;
  port: number;
  /** The peer's vhost (`dmr-<peer id>`). */
  vhost: string;
  /** SNI and the name the peer's server certificate is checked against (default `host`). */
  serverName?: string;
}

/** This node's TLS files, as paths on the broker's host (the broker process reads them, not DMR). */
export interface LinkTlsFiles {
  certFile: string;
  keyFile: string;
  /** Trust bundle the peer's server certificate is verified against. */
  caFile: string;
}

export interface LinkShovelInput {
  /** This node's vhost, where the outbound queue lives. */
  sourceVhost: string;
  /** `dmr.outbound.<peer>`. */
  outboundQueue: string;
  peer: PeerEndpoint;
  /** The peer's mesh ingress exchange (default `dmr.mesh-ingress`). */
  destinationExchange?: string;
  tls: LinkTlsFiles;
  /** Seconds between a failure and the next connection attempt (default 5). */
  reconnectDelaySeconds?: number;
  /** Unconfirmed messages in flight (default 1000, RabbitMQ's default). */
  prefetchCount?: number;
  /**
   * AMQP heartbeat to the peer in seconds. A silent network path is noticed
   * after about two of them; RabbitMQ's Erlang client default is 10.
   */
  heartbeatSeconds?: number;
  /** TLS chain depth for the peer's certificate (default: Erlang's, 10). */
  depth?: number;
  sourceQueueArguments?: Record<string, string | number | boolean>;
}

export const DEFAULT_MESH_INGRESS_EXCHANGE = 'dmr.mesh-ingress';
export const DEFAULT_RECONNECT_DELAY_SECONDS = 5;
export const DEFAULT_SHOVEL_PREFETCH = 1000;

function invalid(message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('INVALID_ARGUMENT', message, {
    hint: 'fix the link input (peer endpoint, vhost names, TLS file paths)',
    details,
  });
}

function nonEmpty(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${what} must be a non-empty string`);
  // Control characters have no place in a name or path and would survive into the broker's logs.
  if ([...value].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f))
    throw invalid(`${what} contains a control character`, { what });
  return value;
}

function filePath(value: string, what: string): string {
  nonEmpty(value, what);
  if (!value.startsWith('/')) throw invalid(`${what} must be an absolute path on the broker's host`, { path: value });
  if (!/^[\x20-\x7e]+$/.test(value)) {
    throw invalid(`${what} must be ASCII: RabbitMQ decodes URI file paths byte by byte into code points`, {
      path: value,
    });
  }
  return value;
}

function hostPart(host: string): string {
  nonEmpty(host, 'peer host');
  if (host.includes(':')) {
    // IPv6 literal: uri_parser takes everything inside [] as the host.
    if (!/^[0-9a-fA-F:.]+$/.test(host)) throw invalid('peer host is not a valid IPv6 address', { host });
    return `[${host}]`;
  }
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw invalid('peer host must be a DNS name or an IP address', { host });
  return host;
}

function positive(value: number, what: string, max: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalid(`${what} must be a whole number from 1 to ${max}`, { [what]: value });
  }
  return value;
}

/** A direct (in-broker, no network, no login) connection to a local vhost: `amqp:///<vhost>`. */
export function localDirectUri(vhost: string): string {
  return `amqp:///${encodeURIComponent(nonEmpty(vhost, 'source vhost'))}`;
}

/**
 * The peer's AMQPS URI with mutual TLS and EXTERNAL: the broker presents
 * `certFile` and logs in as that certificate's identity.
 */
export function peerAmqpsUri(
  peer: PeerEndpoint,
  tls: LinkTlsFiles,
  options: { heartbeatSeconds?: number; depth?: number } = {},
): string {
  const port = positive(peer.port, 'peer port', 65_535);
  const serverName = nonEmpty(peer.serverName ?? peer.host, 'peer server name');
  if (!/^[A-Za-z0-9.:-]+$/.test(serverName)) throw invalid('peer server name must be a host name', { serverName });
  const query: Array<[string, string]> = [
    ['cacertfile', filePath(tls.caFile, 'CA file')],
    ['certfile', filePath(tls.certFile, 'certificate file')],
    ['keyfile', filePath(tls.keyFile, 'key file')],
    ['verify', 'verify_peer'],
    ['server_name_indication', serverName],
    ['auth_mechanism', 'external'],
  ];
  if (options.depth !== undefined) query.push(['depth', String(positive(options.depth, 'depth', 20))]);
  if (options.heartbeatSeconds !== undefined) {
    query.push(['heartbeat', String(positive(options.heartbeatSeconds, 'heartbeat', 3600))]);
  }
  const vhost = encodeURIComponent(nonEmpty(peer.vhost, 'peer vhost'));
  const search = query.map(([key, value]) => `${key}=${encodeURIComponent(value)}`).join('&');
  return `amqps://${hostPart(peer.host)}:${port}/${vhost}?${search}`;
}

/** The dynamic shovel of one link: outbound queue here → the peer's mesh ingress, confirmed. */
export function linkShovelSpec(input: LinkShovelInput): LinkShovelSpec {
  const spec: LinkShovelSpec = {
    'src-protocol': 'amqp091',
    'src-uri': localDirectUri(input.sourceVhost),
    'src-queue': nonEmpty(input.outboundQueue, 'outbound queue'),
    'src-prefetch-count': positive(input.prefetchCount ?? DEFAULT_SHOVEL_PREFETCH, 'prefetch count', 65_535),
    'src-delete-after': 'never',
    'dest-protocol': 'amqp091',
    'dest-uri': peerAmqpsUri(input.peer, input.tls, {
      heartbeatSeconds: input.heartbeatSeconds,
      depth: input.depth,
    }),
    'dest-exchange': nonEmpty(input.destinationExchange ?? DEFAULT_MESH_INGRESS_EXCHANGE, 'destination exchange'),
    'dest-add-forward-headers': false,
    'ack-mode': 'on-confirm',
    'reconnect-delay': positive(
      input.reconnectDelaySeconds ?? DEFAULT_RECONNECT_DELAY_SECONDS,
      'reconnect delay',
      3600,
    ),
  };
  if (input.sourceQueueArguments !== undefined) spec['src-queue-args'] = { ...input.sourceQueueArguments };
  return spec;
}

/**
 * A one-off shovel that moves what a local queue holds to a local exchange
 * and then deletes itself: RabbitMQ's own "move messages" (the management
 * UI's button is this shovel). `src-delete-after: 'queue-length'` moves the
 * messages the queue held when the shovel started, a number moves at most
 * that many; `on-confirm` acks each source message only after the
 * destination confirmed it, so a crash mid-move duplicates, never loses.
 */
export interface MoveShovelSpec {
  'src-protocol': 'amqp091';
  'src-uri': string;
  'src-queue': string;
  'src-prefetch-count': number;
  'src-delete-after': 'queue-length' | number;
  'dest-protocol': 'amqp091';
  'dest-uri': string;
  'dest-exchange': string;
  'dest-exchange-key': string;
  'dest-add-forward-headers': false;
  'ack-mode': 'on-confirm';
}

export interface MoveShovelInput {
  vhost: string;
  fromQueue: string;
  toExchange: string;
  routingKey: string;
  /** At most this many messages (default: what the queue holds when the shovel starts). */
  count?: number;
}

export function moveShovelSpec(input: MoveShovelInput): MoveShovelSpec {
  const local = localDirectUri(input.vhost);
  return {
    'src-protocol': 'amqp091',
    'src-uri': local,
    'src-queue': nonEmpty(input.fromQueue, 'source queue'),
    'src-prefetch-count': DEFAULT_SHOVEL_PREFETCH,
    'src-delete-after': input.count === undefined ? 'queue-length' : positive(input.count, 'count', 1_000_000_000),
    'dest-protocol': 'amqp091',
    'dest-uri': local,
    'dest-exchange': nonEmpty(input.toExchange, 'destination exchange'),
    'dest-exchange-key': nonEmpty(input.routingKey, 'routing key'),
    'dest-add-forward-headers': false,
    'ack-mode': 'on-confirm',
  };
}

/**
 * `starting`: connecting (also after every failure, for reconnect-delay);
 * `running`: both connections and channels open; `terminated`: the worker
 * stopped with `reason` and will be restarted after reconnect-delay.
 */
export type ShovelState = 'starting' | 'running' | 'terminated';

export interface ShovelStatus {
  name: string;
  vhost: string;
  type: 'dynamic' | 'static';
  state: ShovelState;
  /** Erlang's rendering of why a terminated shovel stopped. */
  reason?: string;
  /**
   * When the state last changed, as the broker reports it: its LOCAL time,
   * whole seconds ("2026-12-05 10:00:01"), so only good for display.
   */
  timestamp: string;
  node: string;
  /** While running: the URIs without credentials (the TLS file paths are still in dest_uri). */
  sourceUri?: string;
  destinationUri?: string;
  sourceQueue?: string;
  destinationExchange?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const STATES: readonly string[] = ['starting', 'running', 'terminated'];

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Parses GET /api/shovels[/<vhost>]; entries of unknown shape are skipped, not trusted. */
export function parseShovelStatuses(body: unknown): ShovelStatus[] {
  if (!Array.isArray(body)) return [];
  return body.flatMap((item): ShovelStatus[] => {
    if (!isRecord(item) || typeof item.name !== 'string' || typeof item.state !== 'string') return [];
    if (!STATES.includes(item.state)) return [];
    const status: ShovelStatus = {
      name: item.name,
      vhost: typeof item.vhost === 'string' ? item.vhost : '',
      type: item.type === 'static' ? 'static' : 'dynamic',
      state: item.state as ShovelState,
      timestamp: typeof item.timestamp === 'string' ? item.timestamp : '',
      node: typeof item.node === 'string' ? item.node : '',
    };
    const extra: Array<[keyof ShovelStatus, unknown]> = [
      ['reason', item.reason],
      ['sourceUri', item.src_uri],
      ['destinationUri', item.dest_uri],
      ['sourceQueue', item.src_queue],
      ['destinationExchange', item.dest_exchange],
    ];
    for (const [key, value] of extra) {
      const text = optionalString(value);
      if (text !== undefined) Object.assign(status, { [key]: text });
    }
    return [status];
  });
}

/** Parses GET /api/parameters/shovel/<vhost>/<name>: the stored definition (`value`). */
export function parseShovelDefinition(body: unknown): ShovelDefinition | undefined {
  return isRecord(body) && isRecord(body.value) ? { ...body.value } : undefined;
}
