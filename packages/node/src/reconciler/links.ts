/**
 * Links between nodes as the reconciler keeps them: one RabbitMQ dynamic
 * shovel `dmr.link.<peer>` per configured, not denylisted link, from this
 * node's `dmr.outbound.<peer>` to the peer's `dmr.mesh-ingress` over AMQPS,
 * logging in with this node's certificate (docs/mesh-links.md, "What the
 * reconciler does").
 *
 * The certificate, key and trust bundle are files the BROKER reads when a
 * shovel connects. They are copies named by their content
 * (`link-<sha256>.crt`/`.key`, `trust-<sha256>.pem`): a renewal or a new
 * trust bundle gives new paths, so the shovel's definition changes and
 * re-PUTting it restarts the worker with the new files. Replacing a file in
 * place would not do: a restart reads a CA file from OTP's cache, and an
 * unchanged definition does not restart at all (both measured).
 *
 * Everything here but the file and management I/O at the bottom is pure.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { basename, join } from 'node:path';
import {
  linkShovelSpec,
  writeFileAtomic,
  type LinkShovelSpec,
  type LinkTlsFiles,
  type ManagementClient,
  type QueueDepth,
  type ShovelDefinition,
  type ShovelStatus,
} from '@dmr/broker';
import { LINK_STATES, outboundQueueName, vhostName, type LinkStatus, type NodeConfig } from '@dmr/contract';
import { DmrError } from '@dmr/core';

/** Every shovel the reconciler owns is named with this prefix; other shovels in the vhost are left alone. */
export const LINK_SHOVEL_PREFIX = 'dmr.link.';
export const OUTBOUND_QUEUE_PREFIX = outboundQueueName('');
/** RabbitMQ's AMQPS port when an endpoint names none. */
const DEFAULT_AMQPS_PORT = 5671;

export function linkShovelName(peer: string): string {
  return `${LINK_SHOVEL_PREFIX}${peer}`;
}

/** The peer a `dmr.link.<peer>` shovel or a `dmr.outbound.<peer>` queue belongs to, or undefined. */
export function linkPeerOf(name: string): string | undefined {
  for (const prefix of [LINK_SHOVEL_PREFIX, OUTBOUND_QUEUE_PREFIX]) {
    if (name.startsWith(prefix) && name.length > prefix.length) return name.slice(prefix.length);
  }
  return undefined;
}

/** How the node's shovels reach its peers: where the broker finds this node's TLS files, and tuning. */
export interface LinkOptions {
  /** Paths on the broker's host (see installLinkTlsFiles). */
  tls: LinkTlsFiles;
  /**
   * The name the peer's server certificate is checked against (and SNI).
   * Default: the host of the link's `amqpsEndpoint`, which the peer's node
   * certificate names among its DNS SANs (`serverNameFor`: no check for an
   * IP address).
   */
  serverName?: (peer: string, host: string) => string;
  /** Seconds between a failed connection and the next attempt (default 5). */
  reconnectDelaySeconds?: number;
  /** AMQP heartbeat to the peer: a silent partition is noticed after about two (Erlang client default 10). */
  heartbeatSeconds?: number;
  /** Unconfirmed messages in flight per link (default 1000). */
  prefetchCount?: number;
}

export interface DesiredShovel {
  /** `dmr.link.<peer>`. */
  name: string;
  peer: string;
  spec: LinkShovelSpec;
}

/**
 * `amqps://host[:port]` (what CentOps' registry accepts for a node): host
 * and port. Anything else is CONFIG_INVALID: the document names an endpoint
 * no shovel could use.
 */
export function parseAmqpsEndpoint(endpoint: string, peer: string): { host: string; port: number } {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  const host = url?.hostname.replace(/^\[|\]$/g, '') ?? '';
  if (url === undefined || url.protocol !== 'amqps:' || host === '' || url.username !== '' || url.search !== '') {
    throw new DmrError(
      'CONFIG_INVALID',
      `link to ${peer}: amqpsEndpoint ${JSON.stringify(endpoint)} is not amqps://host:port`,
      {
        hint: "fix the peer node's amqpsEndpoint in CentOps (amqps://host:port, what this node's broker can reach)",
        details: { check: 'links', peer },
      },
    );
  }
  return { host, port: url.port === '' ? DEFAULT_AMQPS_PORT : Number(url.port) };
}

/**
 * What the shovel declares its source queue with, should the queue be
 * missing when its worker starts (the reconciler declares it first, but an
 * operator may delete it under a running shovel): the outbound queue's
 * arguments but `x-dead-letter-routing-key`. RabbitMQ 3.10.8 answers a PUT
 * of a shovel whose `src-queue-args` carry that key with a bare 500
 * (measured; its argument check looks for the dead-letter exchange in a table
 * the shovel does not pass). Dead letters then keep their own routing key,
 * which for the router's publishes is the queue's name anyway; the
 * reconciler reports the difference as a conflict.
 */
export function shovelQueueArguments(
  queueArguments: Record<string, string | number | boolean>,
): Record<string, string | number | boolean> {
  return Object.fromEntries(Object.entries(queueArguments).filter(([name]) => name !== 'x-dead-letter-routing-key'));
}

/**
 * The shovel's `server_name_indication` for an endpoint host. Erlang checks
 * the peer's certificate against it as a DNS name: an IP address there fails
 * `hostname_check_failed` even when the certificate names that IP (measured on
 * 3.10.8 / OTP 25), and the URI offers no other reference id. For an IP
 * endpoint the check is therefore `disable`d: the peer's certificate must still
 * chain to the trust bundle, but any mesh certificate would do (use DNS names
 * in `amqpsEndpoint` to have the host checked).
 */
export function serverNameFor(host: string): string {
  return isIP(host) === 0 ? host : 'disable';
}

/** The shovel of each configured link whose peer is not denylisted; `sourceQueueArguments` as the layout declares them. */
export function desiredShovels(
  config: NodeConfig,
  vhost: string,
  options: LinkOptions,
  outboundArguments: (peer: string) => Record<string, string | number | boolean>,
): DesiredShovel[] {
  const denied = new Set(config.denylist.filter((entry) => entry.kind === 'node').map((entry) => entry.id));
  return config.links
    .filter((link) => !denied.has(link.peer) && link.peer !== config.node.id)
    .map((link) => {
      const { host, port } = parseAmqpsEndpoint(link.amqpsEndpoint, link.peer);
      const spec = linkShovelSpec({
        sourceVhost: vhost,
        outboundQueue: outboundQueueName(link.peer),
        peer: {
          host,
          port,
          vhost: vhostName(link.peer),
          serverName: options.serverName?.(link.peer, host) ?? serverNameFor(host),
        },
        tls: options.tls,
        sourceQueueArguments: shovelQueueArguments(outboundArguments(link.peer)),
        ...(options.reconnectDelaySeconds === undefined
          ? {}
          : { reconnectDelaySeconds: options.reconnectDelaySeconds }),
        ...(options.heartbeatSeconds === undefined ? {} : { heartbeatSeconds: options.heartbeatSeconds }),
        ...(options.prefetchCount === undefined ? {} : { prefetchCount: options.prefetchCount }),
      });
      return { name: linkShovelName(link.peer), peer: link.peer, spec };
    });
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonical(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Whether the broker's stored definition is the desired spec (GET returns a definition exactly as sent). */
export function sameShovel(desired: LinkShovelSpec, actual: ShovelDefinition): boolean {
  return canonical(desired) === canonical(actual);
}

/**
 * When a link that left the configuration (or whose peer was denylisted) is
 * done: its outbound queue is empty and stayed so for `graceMs` after the
 * link was first seen leaving. The grace covers two lags: the routers read
 * the new document only after the reconcile, and the queue depth the
 * management API shows is a statistic up to `collect_statistics_interval`
 * (5 s) old. RabbitMQ has no atomic "delete if empty" for a quorum queue.
 */
export class DrainTracker {
  readonly graceMs: number;
  readonly #since = new Map<string, number>();
  readonly #usersSince = new Map<string, number>();

  constructor(options: { graceMs?: number } = {}) {
    this.graceMs = options.graceMs ?? 12_000;
  }

  /** True when the queue of `peer` may go now. `messages` undefined: no statistics yet, not known empty. */
  drained(peer: string, messages: number | undefined, now: number): boolean {
    const since = this.#since.get(peer) ?? now;
    this.#since.set(peer, since);
    return messages === 0 && now - since >= this.graceMs;
  }

  /**
   * True when the user of a peer whose link left (not denylisted) may go.
   * The peer's own drain of its queue towards this node logs in as that
   * user: deleting it at once closes the peer's shovel and strands what
   * waits there (403 on every reconnect), so it stays for the same grace.
   */
  peerUserExpired(user: string, now: number): boolean {
    const since = this.#usersSince.get(user) ?? now;
    this.#usersSince.set(user, since);
    if (now - since < this.graceMs) return false;
    this.#usersSince.delete(user);
    return true;
  }

  /** The peer user is wanted again. */
  keepPeerUser(user: string): void {
    this.#usersSince.delete(user);
  }

  /** The link is configured again, or gone: forget when its drain began. */
  forget(peer: string): void {
    this.#since.delete(peer);
  }

  /** Peers whose drain began and is not over. */
  get draining(): string[] {
    return [...this.#since.keys()].sort();
  }
}

/**
 * Trap 2 of docs/mesh-links.md: after a 403 (or a 404) on the peer, a shovel
 * keeps a dead channel and says `running` while nothing moves. Seen from
 * here: its source queue holds unacknowledged messages and its ack counter
 * stands still. A link seen so for `stuckAfterMs` is due for a restart.
 */
export class StuckLinkWatch {
  readonly stuckAfterMs: number;
  readonly #seen = new Map<string, { acked: number; since: number }>();

  constructor(options: { stuckAfterMs?: number } = {}) {
    this.stuckAfterMs = options.stuckAfterMs ?? 30_000;
  }

  /** Feeds one observation; true when the link should be restarted (the watch then starts over for it). */
  observe(peer: string, state: string | undefined, depth: QueueDepth | undefined, now: number): boolean {
    const unacked = depth?.messagesUnacknowledged ?? 0;
    const acked = depth?.acked ?? 0;
    const last = this.#seen.get(peer);
    if (state !== 'running' || unacked === 0 || last === undefined || last.acked !== acked) {
      this.#seen.set(peer, { acked, since: now });
      return false;
    }
    if (now - last.since < this.stuckAfterMs) return false;
    this.#seen.set(peer, { acked, since: now });
    return true;
  }

  /** Drops peers no longer linked. */
  retain(peers: ReadonlySet<string>): void {
    for (const peer of this.#seen.keys()) if (!peers.has(peer)) this.#seen.delete(peer);
  }
}

/**
 * The state of every link of `config` plus every link still draining on the
 * broker, from the shovel statuses and the outbound queues' depths.
 */
export function linkStatuses(
  config: NodeConfig,
  shovels: readonly ShovelStatus[],
  queues: readonly QueueDepth[],
): LinkStatus[] {
  const denied = new Set(config.denylist.filter((entry) => entry.kind === 'node').map((entry) => entry.id));
  const configured = new Set(config.links.map((link) => link.peer).filter((peer) => !denied.has(peer)));
  const workers = new Map(
    shovels.filter((s) => s.name.startsWith(LINK_SHOVEL_PREFIX)).map((s) => [linkPeerOf(s.name), s]),
  );
  const depths = new Map(
    queues.filter((q) => q.name.startsWith(OUTBOUND_QUEUE_PREFIX)).map((q) => [linkPeerOf(q.name), q]),
  );
  const peers = new Set<string>(configured);
  for (const peer of [...workers.keys(), ...depths.keys()]) if (peer !== undefined) peers.add(peer);
  return [...peers].sort().map((peer): LinkStatus => {
    const messages = depths.get(peer)?.messages ?? 0;
    if (!configured.has(peer)) return { peer, state: 'draining', messages };
    const state = workers.get(peer)?.state;
    return { peer, state: state !== undefined && LINK_STATES.includes(state) ? state : 'absent', messages };
  });
}

/** Reads the link states of `config` from the broker (two management calls). */
export async function readLinkStatuses(
  management: ManagementClient,
  vhost: string,
  config: NodeConfig,
): Promise<{ links: LinkStatus[]; shovels: ShovelStatus[]; queues: QueueDepth[] }> {
  const [shovels, queues] = await Promise.all([management.shovelStatuses(vhost), management.listQueues(vhost)]);
  return { links: linkStatuses(config, shovels, queues), shovels, queues };
}

/** This node's TLS material for its links: what the broker presents to peers and checks them against. */
export interface LinkTlsMaterial {
  /** Leaf then intermediate(s). */
  chainPem: string;
  privateKeyPem: string;
  /** What a peer's server certificate must chain to. */
  trustPem: string;
}

const LINK_FILE = /^(link-[0-9a-f]{64}\.(crt|key)|trust-[0-9a-f]{64}\.pem)$/;

function sha256(...parts: string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex');
}

/**
 * Writes the material as content-addressed files in `dir` (a directory the
 * broker process can read, on its host) and returns their paths. Files that
 * exist already are not rewritten: same name, same content. The key file is
 * 0600; the directory 0700.
 */
export async function installLinkTlsFiles(dir: string, material: LinkTlsMaterial): Promise<LinkTlsFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pair = sha256(material.chainPem, material.privateKeyPem);
  const files: LinkTlsFiles = {
    certFile: join(dir, `link-${pair}.crt`),
    keyFile: join(dir, `link-${pair}.key`),
    caFile: join(dir, `trust-${sha256(material.trustPem)}.pem`),
  };
  const present = new Set(await readdir(dir));
  const write = async (path: string, text: string, mode: number): Promise<void> => {
    if (!present.has(basename(path))) await writeFileAtomic(path, `${text.trim()}\n`, mode);
  };
  // Key before certificate: a file named for the pair exists only once both halves do.
  await write(files.keyFile, material.privateKeyPem, 0o600);
  await write(files.certFile, material.chainPem, 0o644);
  await write(files.caFile, material.trustPem, 0o644);
  return files;
}

/** The TLS file paths a stored shovel definition names in its destination URI. */
export function tlsFilesOf(definition: ShovelDefinition): string[] {
  const uri = definition['dest-uri'];
  if (typeof uri !== 'string') return [];
  const query = uri.slice(uri.indexOf('?') + 1);
  const found: string[] = [];
  for (const pair of query.split('&')) {
    const equals = pair.indexOf('=');
    const key = pair.slice(0, equals);
    if (['cacertfile', 'certfile', 'keyfile'].includes(key)) found.push(decodeURIComponent(pair.slice(equals + 1)));
  }
  return found;
}

/**
 * Removes the link files in `dir` that nothing uses any more: called after a
 * reconcile put the new definitions in place. `inUse` are the paths of the
 * current material and of every `dmr.link.*` shovel still defined (a link
 * draining after it left the configuration keeps the files it started with).
 */
export async function removeUnusedLinkFiles(dir: string, inUse: Iterable<string>): Promise<string[]> {
  const keep = new Set(inUse);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (!LINK_FILE.test(name) || keep.has(path)) continue;
    await rm(path, { force: true });
    removed.push(path);
  }
  return removed;
}
