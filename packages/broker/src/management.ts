/**
 * The few management-API calls that tests and DMR's node code need. The API
 * listens on 127.0.0.1 only and is the one place the admin password is used:
 * AMQP accepts EXTERNAL (certificates) and nothing else.
 */
import { DmrError } from '@dmr/core';
import {
  parseShovelDefinition,
  parseShovelStatuses,
  type LinkShovelSpec,
  type MoveShovelSpec,
  type ShovelDefinition,
  type ShovelStatus,
} from './shovels.js';

export interface ManagementCredentials {
  baseUrl: string;
  username: string;
  password: string;
}

export interface Permissions {
  /** Regular expressions over resource names, as RabbitMQ defines them; '' grants nothing. */
  configure: string;
  write: string;
  read: string;
}

/** RabbitMQ's per-user limits (3.10: `max-connections`, `max-channels`; a negative value means none). */
export const USER_LIMIT_NAMES = ['max-connections', 'max-channels'] as const;
export type UserLimitName = (typeof USER_LIMIT_NAMES)[number];

export interface ConnectionInfo {
  name: string;
  user: string;
  vhost: string;
  peerHost?: string;
  peerPort?: number;
  protocol?: string;
  sslProtocol?: string;
  peerCertSubject?: string;
  /** "<notBefore> - <notAfter>" of the client certificate: tells a renewed certificate from its predecessor. */
  peerCertValidity?: string;
}

export interface ListenerInfo {
  node: string;
  protocol: string;
  ipAddress: string;
  port: number;
}

/** A queue's depth as the management API reports it: statistics, refreshed every `collect_statistics_interval` (5 s by default). */
export interface QueueDepth {
  name: string;
  /** Ready + unacknowledged; undefined before the broker emitted the queue's first statistics. */
  messages: number | undefined;
  messagesReady: number | undefined;
  messagesUnacknowledged: number | undefined;
  consumers: number | undefined;
  /** Acknowledgements since the queue started (a counter): tells a consumer that moves from one that is stuck. */
  acked: number | undefined;
  /** `quorum`, `classic` or `stream`. */
  type?: string | undefined;
  /** Messages per second published into the queue, over the broker's last sample window (undefined before any). */
  publishRate?: number | undefined;
  /** Messages per second delivered to consumers (deliver + get), likewise. */
  deliverRate?: number | undefined;
}

/**
 * One message as `POST /api/queues/…/get` returns it. Its properties are the
 * AMQP basic properties in the management API's snake_case; `payload` is
 * the body as text (UTF-8) or base64, as `payloadEncoding` says.
 */
export interface PeekedMessage {
  properties: Record<string, unknown>;
  routingKey: string;
  exchange: string;
  redelivered: boolean;
  payloadBytes: number;
  payload: string;
  payloadEncoding: 'string' | 'base64';
}

export type ExchangeType = 'direct' | 'topic' | 'fanout' | 'headers' | 'x-consistent-hash';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const enc = encodeURIComponent;

export class ManagementClient {
  readonly baseUrl: string;
  readonly #authorization: string;

  constructor(credentials: ManagementCredentials) {
    this.baseUrl = credentials.baseUrl.replace(/\/+$/, '');
    this.#authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  }

  /** Any management call; the helpers below cover what DMR uses. Returns the parsed body, or undefined for 204. */
  async request(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: Json): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}/api${path}`, {
        method,
        headers: {
          authorization: this.#authorization,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (error) {
      throw new DmrError('BROKER_NOT_RUNNING', `management API at ${this.baseUrl} is unreachable`, {
        hint: 'is the node running? check `dmr broker status --dir DIR`',
        details: { method, path },
        cause: error,
      });
    }
    const text = await response.text();
    if (!response.ok) {
      throw new DmrError('BROKER_COMMAND_FAILED', `${method} ${path} → ${response.status}: ${text.slice(0, 300)}`, {
        details: { method, path, status: response.status },
      });
    }
    if (text.length === 0) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }

  /**
   * A user who can only log in with a certificate: an empty password hash
   * never matches a password, and EXTERNAL does not look at it. (The API
   * refuses a user without `tags`, hence the empty tag list.)
   */
  async createCertificateUser(name: string, tags: readonly string[] = []): Promise<void> {
    await this.request('PUT', `/users/${enc(name)}`, { password_hash: '', tags: tags.join(',') });
  }

  /** Deleting a user also closes its connections. Missing users are not an error (idempotent). */
  async deleteUser(name: string): Promise<void> {
    try {
      await this.request('DELETE', `/users/${enc(name)}`);
    } catch (error) {
      if (!(error instanceof DmrError && error.details.status === 404)) throw error;
    }
  }

  async listUsers(): Promise<string[]> {
    const body = await this.request('GET', '/users');
    return Array.isArray(body)
      ? body.flatMap((user) => (isRecord(user) && typeof user.name === 'string' ? [user.name] : []))
      : [];
  }

  /**
   * Sets one limit of a user. `max-channels` counts the user's channels over
   * all its connections. The limits live in the user record: deleting the
   * user deletes them.
   */
  async setUserLimit(user: string, name: UserLimitName, value: number): Promise<void> {
    await this.request('PUT', `/user-limits/${enc(user)}/${enc(name)}`, { value });
  }

  async clearUserLimit(user: string, name: UserLimitName): Promise<void> {
    await this.request('DELETE', `/user-limits/${enc(user)}/${enc(name)}`);
  }

  /** Every user that has limits, with them by name (`{ 'max-connections': 2 }`). */
  async listUserLimits(): Promise<Map<string, Record<string, number>>> {
    const body = await this.request('GET', '/user-limits');
    const limits = new Map<string, Record<string, number>>();
    for (const item of Array.isArray(body) ? body : []) {
      if (!isRecord(item) || typeof item.user !== 'string' || !isRecord(item.value)) continue;
      const values: Record<string, number> = {};
      for (const [name, value] of Object.entries(item.value)) if (typeof value === 'number') values[name] = value;
      limits.set(item.user, values);
    }
    return limits;
  }

  async declareVhost(name: string): Promise<void> {
    await this.request('PUT', `/vhosts/${enc(name)}`, {});
  }

  async deleteVhost(name: string): Promise<void> {
    await this.request('DELETE', `/vhosts/${enc(name)}`);
  }

  async setPermissions(vhost: string, user: string, permissions: Permissions): Promise<void> {
    await this.request('PUT', `/permissions/${enc(vhost)}/${enc(user)}`, { ...permissions });
  }

  async clearPermissions(vhost: string, user: string): Promise<void> {
    await this.request('DELETE', `/permissions/${enc(vhost)}/${enc(user)}`);
  }

  /**
   * Closes every connection the user has open. Needed after a revocation:
   * the CRL only stops new handshakes, live connections survive it.
   */
  async closeUserConnections(user: string, reason = 'closed by DMR'): Promise<void> {
    // The reason travels in a header; keep it to plain ASCII.
    const header = reason.replace(/[^\x20-\x7e]/g, '?');
    const response = await fetch(`${this.baseUrl}/api/connections/username/${enc(user)}`, {
      method: 'DELETE',
      headers: { authorization: this.#authorization, 'x-reason': header },
      signal: AbortSignal.timeout(15_000),
    }).catch((error: unknown) => {
      throw new DmrError('BROKER_NOT_RUNNING', `management API at ${this.baseUrl} is unreachable`, { cause: error });
    });
    if (!response.ok && response.status !== 404) {
      throw new DmrError('BROKER_COMMAND_FAILED', `closing connections of ${user} → ${response.status}`, {
        details: { status: response.status, user },
      });
    }
  }

  async listConnections(): Promise<ConnectionInfo[]> {
    const body = await this.request('GET', '/connections');
    if (!Array.isArray(body)) return [];
    return body.flatMap((item): ConnectionInfo[] => {
      if (!isRecord(item) || typeof item.name !== 'string' || typeof item.user !== 'string') return [];
      return [
        {
          name: item.name,
          user: item.user,
          vhost: typeof item.vhost === 'string' ? item.vhost : '',
          peerHost: typeof item.peer_host === 'string' ? item.peer_host : undefined,
          peerPort: typeof item.peer_port === 'number' ? item.peer_port : undefined,
          protocol: typeof item.protocol === 'string' ? item.protocol : undefined,
          sslProtocol: typeof item.ssl_protocol === 'string' ? item.ssl_protocol : undefined,
          peerCertSubject: typeof item.peer_cert_subject === 'string' ? item.peer_cert_subject : undefined,
          peerCertValidity: typeof item.peer_cert_validity === 'string' ? item.peer_cert_validity : undefined,
        },
      ];
    });
  }

  /** `args` e.g. `{ 'hash-property': 'message_id' }` for an x-consistent-hash exchange. */
  async declareExchange(
    vhost: string,
    name: string,
    type: ExchangeType,
    durable = true,
    args: Record<string, Json> = {},
  ): Promise<void> {
    await this.request('PUT', `/exchanges/${enc(vhost)}/${enc(name)}`, {
      type,
      durable,
      auto_delete: false,
      arguments: args,
    });
  }

  async declareQueue(
    vhost: string,
    name: string,
    options: { durable?: boolean; arguments?: Record<string, Json> } = {},
  ): Promise<void> {
    await this.request('PUT', `/queues/${enc(vhost)}/${enc(name)}`, {
      durable: options.durable ?? true,
      auto_delete: false,
      arguments: options.arguments ?? {},
    });
  }

  /** Every queue of the vhost with its depth (statistics: see QueueDepth). */
  async listQueues(vhost: string): Promise<QueueDepth[]> {
    const body = await this.request('GET', `/queues/${enc(vhost)}`);
    return (Array.isArray(body) ? body : []).flatMap((item): QueueDepth[] => {
      const queue = parseQueueDepth(item);
      return queue === undefined ? [] : [queue];
    });
  }

  /** One queue with its depth, or undefined when the vhost has no such queue (a node has hundreds: list only to list). */
  async getQueue(vhost: string, name: string): Promise<QueueDepth | undefined> {
    try {
      return parseQueueDepth(await this.request('GET', `/queues/${enc(vhost)}/${enc(name)}`));
    } catch (error) {
      if (error instanceof DmrError && error.details.status === 404) return undefined;
      throw error;
    }
  }

  /**
   * Deletes a queue and what it holds. Missing queues are not an error. There
   * is no safe "only if empty" for quorum queues: RabbitMQ 3.10 refuses
   * `if-empty` on them (400), so callers decide emptiness themselves.
   */
  async deleteQueue(vhost: string, name: string): Promise<void> {
    try {
      await this.request('DELETE', `/queues/${enc(vhost)}/${enc(name)}`);
    } catch (error) {
      if (!(error instanceof DmrError && error.details.status === 404)) throw error;
    }
  }

  /**
   * Up to `count` messages from the head of the queue, put back at once
   * (`ack_requeue_true`). Not harmless on every queue: a quorum queue counts
   * the return as a delivery attempt, so on a queue with `x-delivery-limit`
   * a peek can dead-letter a message. Callers choose the queues.
   * `truncate` bounds each payload the broker returns, in bytes.
   */
  async getMessages(vhost: string, queue: string, count: number, truncate: number): Promise<PeekedMessage[]> {
    const body = await this.request('POST', `/queues/${enc(vhost)}/${enc(queue)}/get`, {
      count,
      ackmode: 'ack_requeue_true',
      encoding: 'auto',
      truncate,
    });
    return (Array.isArray(body) ? body : []).flatMap((item): PeekedMessage[] => {
      if (!isRecord(item)) return [];
      return [
        {
          properties: isRecord(item.properties) ? item.properties : {},
          routingKey: typeof item.routing_key === 'string' ? item.routing_key : '',
          exchange: typeof item.exchange === 'string' ? item.exchange : '',
          redelivered: item.redelivered === true,
          payloadBytes: typeof item.payload_bytes === 'number' ? item.payload_bytes : 0,
          payload: typeof item.payload === 'string' ? item.payload : '',
          payloadEncoding: item.payload_encoding === 'base64' ? 'base64' : 'string',
        },
      ];
    });
  }

  /** Removes every ready message of the queue (unacknowledged ones stay with their consumer). */
  async purgeQueue(vhost: string, queue: string): Promise<void> {
    await this.request('DELETE', `/queues/${enc(vhost)}/${enc(queue)}/contents`);
  }

  async bindQueue(vhost: string, exchange: string, queue: string, routingKey: string): Promise<void> {
    await this.request('POST', `/bindings/${enc(vhost)}/e/${enc(exchange)}/q/${enc(queue)}`, {
      routing_key: routingKey,
    });
  }

  /**
   * Creates or replaces a dynamic shovel. Replacing one restarts its worker:
   * messages it had sent but not yet seen confirmed go back to the source
   * queue and are sent again (duplicates, not losses).
   *
   * A direct `src-uri` (`amqp:///<vhost>`) is checked against the user making
   * this call: the admin needs permissions in that vhost, or the broker
   * answers 400 "user … may not connect to vhost".
   */
  async declareShovel(vhost: string, name: string, spec: LinkShovelSpec | MoveShovelSpec): Promise<void> {
    await this.request('PUT', `/parameters/shovel/${enc(vhost)}/${enc(name)}`, {
      component: 'shovel',
      vhost,
      name,
      value: { ...spec },
    });
  }

  /** The stored definition, or undefined if there is no such shovel. */
  async getShovel(vhost: string, name: string): Promise<ShovelDefinition | undefined> {
    try {
      return parseShovelDefinition(await this.request('GET', `/parameters/shovel/${enc(vhost)}/${enc(name)}`));
    } catch (error) {
      if (error instanceof DmrError && error.details.status === 404) return undefined;
      throw error;
    }
  }

  /** Names and definitions of every dynamic shovel in the vhost. */
  async listShovelDefinitions(vhost: string): Promise<Map<string, ShovelDefinition>> {
    const body = await this.request('GET', `/parameters/shovel/${enc(vhost)}`);
    const found = new Map<string, ShovelDefinition>();
    for (const item of Array.isArray(body) ? body : []) {
      const definition = parseShovelDefinition(item);
      if (isRecord(item) && typeof item.name === 'string' && definition) found.set(item.name, definition);
    }
    return found;
  }

  /**
   * Stops the shovel's worker (its connections close) and forgets it.
   * Unconfirmed messages go back to the source queue. Missing shovels are
   * not an error (idempotent).
   */
  async deleteShovel(vhost: string, name: string): Promise<void> {
    try {
      await this.request('DELETE', `/parameters/shovel/${enc(vhost)}/${enc(name)}`);
    } catch (error) {
      if (!(error instanceof DmrError && error.details.status === 404)) throw error;
    }
  }

  /**
   * Stops the shovel's worker and starts it again with the stored definition:
   * new connections, so certificate files are read again; unconfirmed
   * messages are redelivered. Re-PUTting an unchanged definition does NOT
   * restart the worker, so this is how files changed in place take effect.
   */
  async restartShovel(vhost: string, name: string): Promise<void> {
    await this.request('DELETE', `/shovels/vhost/${enc(vhost)}/${enc(name)}/restart`);
  }

  /** Worker status of every shovel in the vhost (a deleted shovel is absent). */
  async shovelStatuses(vhost: string): Promise<ShovelStatus[]> {
    return parseShovelStatuses(await this.request('GET', `/shovels/${enc(vhost)}`));
  }

  /** One shovel's worker status, or undefined when it has none (not declared, or deleted). */
  async shovelStatus(vhost: string, name: string): Promise<ShovelStatus | undefined> {
    return (await this.shovelStatuses(vhost)).find((status) => status.name === name);
  }

  /** Which listeners the node runs (e.g. proof that plain `amqp` is off). */
  async listeners(): Promise<ListenerInfo[]> {
    const body = await this.request('GET', '/overview');
    const listeners = isRecord(body) && Array.isArray(body.listeners) ? body.listeners : [];
    return listeners.flatMap((item): ListenerInfo[] =>
      isRecord(item) && typeof item.protocol === 'string' && typeof item.port === 'number'
        ? [
            {
              node: typeof item.node === 'string' ? item.node : '',
              protocol: item.protocol,
              ipAddress: typeof item.ip_address === 'string' ? item.ip_address : '',
              port: item.port,
            },
          ]
        : [],
    );
  }
}

/** A queue as `GET /api/queues/…` returns it (one item of the list, or the single queue). */
function parseQueueDepth(item: unknown): QueueDepth | undefined {
  if (!isRecord(item) || typeof item.name !== 'string') return undefined;
  const count = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);
  const rate = (details: unknown): number | undefined => (isRecord(details) ? count(details.rate) : undefined);
  const stats = isRecord(item.message_stats) ? item.message_stats : {};
  return {
    name: item.name,
    messages: count(item.messages),
    messagesReady: count(item.messages_ready),
    messagesUnacknowledged: count(item.messages_unacknowledged),
    consumers: count(item.consumers),
    acked: count(stats.ack),
    type: typeof item.type === 'string' ? item.type : undefined,
    publishRate: rate(stats.publish_details),
    deliverRate: rate(stats.deliver_get_details),
  };
}
