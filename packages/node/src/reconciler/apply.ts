/**
 * Makes a RabbitMQ vhost match a BrokerLayout (layout.ts) through the
 * management API: read what is there, plan the difference, apply it.
 *
 * Ownership: only exchanges and queues whose names start with `dmr.`,
 * bindings whose source starts with `dmr.`, and users carrying one of the
 * MANAGED_USER_TAGS are looked at; anything else in the vhost (and every
 * other vhost) is left alone. The vhost itself is created but never deleted.
 * Of a managed user's limits, only those its DesiredUser names are set; the
 * reconciler never clears a limit (deleting the user removes them all).
 *
 * Conflicts: a quorum queue's arguments (and any queue's type) cannot change
 * in place, and re-creating it would drop the messages it holds. Such a queue
 * is reported in `plan.conflicts` and left as it is; an operator drains and
 * deletes it, and the next apply re-creates it. The same holds for an
 * exchange of another type and for an existing user without a DMR tag (we do
 * not take over accounts we did not create). A queue whose client or peer was
 * removed from the configuration is deleted with its messages: the
 * configuration is the authority and a removed client cannot consume them.
 *
 * Links (links.ts): with `layout.shovels` the reconciler owns the shovels
 * named `dmr.link.*` in the vhost. A missing or different one is PUT (a
 * different definition restarts its worker), after its outbound queue was
 * declared: a shovel that finds no source queue declares one itself. A link
 * whose peer is denylisted loses its shovel at once. A link that left the
 * configuration is drained: its shovel stays while `dmr.outbound.<peer>`
 * holds messages (`plan.draining`), and shovel and queue go once the
 * DrainTracker says the queue is empty; the same rule keeps a denylisted
 * peer's queue until what it holds has expired into dead-letter reports. A
 * `dmr.outbound.*` queue is never deleted with messages in it.
 *
 * Order: user deletions and the shovels to denylisted peers come first, so
 * a newly denylisted client or peer loses its user (which closes its live
 * connections, RABBITMQ-FACTS) and its link before anything else happens in
 * the same apply; then creations (vhost, exchanges, queues, bindings, users,
 * permissions, shovels); then the remaining deletions (a drained link's
 * shovel before its queue).
 */
import { DmrError } from '@dmr/core';
import { USER_LIMIT_NAMES, type ManagementClient, type ShovelDefinition, type UserLimitName } from '@dmr/broker';
import {
  type ArgumentValue,
  type BrokerLayout,
  type DesiredBinding,
  type DesiredExchange,
  type DesiredPermissions,
  type DesiredQueue,
  type DesiredUser,
} from './layout.js';
import { DMR_PREFIX, MANAGED_USER_TAGS, PEER_USER_TAG } from '@dmr/contract';
import {
  DrainTracker,
  LINK_SHOVEL_PREFIX,
  OUTBOUND_QUEUE_PREFIX,
  linkPeerOf,
  sameShovel,
  type DesiredShovel,
} from './links.js';

export type ResourceKind =
  'vhost' | 'exchange' | 'queue' | 'binding' | 'user' | 'permissions' | 'user-limit' | 'shovel';

export type Change =
  | { action: 'create'; kind: 'vhost'; name: string }
  | { action: 'create'; kind: 'exchange'; name: string; exchange: DesiredExchange }
  | { action: 'create'; kind: 'queue'; name: string; queue: DesiredQueue }
  | { action: 'create'; kind: 'binding'; name: string; binding: DesiredBinding }
  | { action: 'create' | 'update'; kind: 'user'; name: string; tag: string }
  | { action: 'create' | 'update'; kind: 'permissions'; name: string; permissions: DesiredPermissions }
  /** `name` is the user; `limit` which of its limits. */
  | { action: 'create' | 'update'; kind: 'user-limit'; name: string; limit: UserLimitName; value: number }
  | { action: 'create' | 'update'; kind: 'shovel'; name: string; shovel: DesiredShovel }
  | { action: 'delete'; kind: 'exchange' | 'queue' | 'user' | 'shovel'; name: string }
  | { action: 'delete'; kind: 'binding'; name: string; source: string; destination: string; propertiesKey: string };

export interface Conflict {
  kind: ResourceKind;
  name: string;
  /** Why the reconciler did not touch it, for the operator. */
  reason: string;
}

export interface Plan {
  vhost: string;
  changes: Change[];
  conflicts: Conflict[];
  /** How many desired resources already matched. */
  unchanged: number;
  /**
   * Links that left the configuration (or whose peer is denylisted) and whose
   * outbound queue is kept until it is empty; `shovel`: its shovel still
   * moves it to the peer (false: what it holds waits for its TTL).
   */
  draining: Array<{ peer: string; messages: number | undefined; shovel: boolean }>;
}

/** What the broker has (only the resources the reconciler owns). */
export interface ActualState {
  vhostExists: boolean;
  exchanges: Map<string, { type: string; arguments: Record<string, unknown> }>;
  /** `messages`: ready + unacknowledged by the broker's statistics (undefined before the first). */
  queues: Map<string, { arguments: Record<string, unknown>; durable: boolean; messages?: number | undefined }>;
  /** Keyed by bindingKey(); `propertiesKey` is what DELETE needs. */
  bindings: Map<string, { source: string; destination: string; routingKey: string; propertiesKey: string }>;
  /** Every user by name, with tags, so unmanaged ones can be recognised as conflicts. */
  users: Map<string, { tags: string[] }>;
  permissions: Map<string, DesiredPermissions>;
  /** Limits of managed users that have any, by user (`{ 'max-connections': 10 }`). */
  userLimits: Map<string, Readonly<Record<string, number>>>;
  /** Stored definitions of the `dmr.link.*` shovels of the vhost. */
  shovels: Map<string, ShovelDefinition>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function records(body: unknown): Record<string, unknown>[] {
  return Array.isArray(body) ? body.filter(isRecord) : [];
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

const enc = encodeURIComponent;

function bindingKey(binding: { source: string; destination: string; routingKey: string }): string {
  return `${binding.source} -> ${binding.destination} [${binding.routingKey}]`;
}

function isManaged(tags: readonly string[]): boolean {
  return tags.some((tag) => MANAGED_USER_TAGS.includes(tag));
}

/** 3.10 answers tags as a list; older versions as a comma-separated string. */
function parseTags(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((tag): tag is string => typeof tag === 'string');
  return str(value)
    .split(',')
    .map((tag) => tag.trim())
    .filter((tag) => tag.length > 0);
}

async function getOrMissing(management: ManagementClient, path: string): Promise<unknown> {
  try {
    return await management.request('GET', path);
  } catch (error) {
    if (error instanceof DmrError && error.details.status === 404) return undefined;
    throw error;
  }
}

/** A broker without the shovel plugin answers 404: it has no shovels. */
async function shovelDefinitions(management: ManagementClient, vhost: string): Promise<Map<string, ShovelDefinition>> {
  try {
    return await management.listShovelDefinitions(vhost);
  } catch (error) {
    if (error instanceof DmrError && error.details.status === 404) return new Map();
    throw error;
  }
}

export async function readActualState(management: ManagementClient, vhost: string): Promise<ActualState> {
  const v = enc(vhost);
  const state: ActualState = {
    vhostExists: (await getOrMissing(management, `/vhosts/${v}`)) !== undefined,
    exchanges: new Map(),
    queues: new Map(),
    bindings: new Map(),
    users: new Map(),
    permissions: new Map(),
    userLimits: new Map(),
    shovels: new Map(),
  };
  const [users, limits] = await Promise.all([management.request('GET', '/users'), management.listUserLimits()]);
  for (const user of records(users)) {
    state.users.set(str(user.name), { tags: parseTags(user.tags) });
  }
  for (const [user, values] of limits) {
    if (isManaged(state.users.get(user)?.tags ?? [])) state.userLimits.set(user, values);
  }
  if (!state.vhostExists) return state;
  const [exchanges, queues, bindings, permissions] = await Promise.all(
    ['exchanges', 'queues', 'bindings']
      .map((what) => management.request('GET', `/${what}/${v}`))
      .concat([management.request('GET', `/vhosts/${v}/permissions`)]),
  );
  for (const exchange of records(exchanges)) {
    const name = str(exchange.name);
    if (name.startsWith(DMR_PREFIX)) {
      state.exchanges.set(name, {
        type: str(exchange.type),
        arguments: isRecord(exchange.arguments) ? exchange.arguments : {},
      });
    }
  }
  for (const queue of records(queues)) {
    const name = str(queue.name);
    if (!name.startsWith(DMR_PREFIX)) continue;
    state.queues.set(name, {
      arguments: isRecord(queue.arguments) ? queue.arguments : {},
      durable: queue.durable === true,
      messages: typeof queue.messages === 'number' ? queue.messages : undefined,
    });
  }
  for (const [name, definition] of await shovelDefinitions(management, vhost)) {
    if (name.startsWith(LINK_SHOVEL_PREFIX)) state.shovels.set(name, definition);
  }
  for (const binding of records(bindings)) {
    const source = str(binding.source);
    // The default exchange's implicit bindings have source '' and are not ours.
    if (!source.startsWith(DMR_PREFIX) || binding.destination_type !== 'queue') continue;
    const entry = {
      source,
      destination: str(binding.destination),
      routingKey: str(binding.routing_key),
      propertiesKey: str(binding.properties_key),
    };
    state.bindings.set(bindingKey(entry), entry);
  }
  for (const permission of records(permissions)) {
    const user = str(permission.user);
    if (!isManaged(state.users.get(user)?.tags ?? [])) continue;
    state.permissions.set(user, {
      configure: str(permission.configure),
      write: str(permission.write),
      read: str(permission.read),
    });
  }
  return state;
}

function argumentsMismatch(
  desired: Readonly<Record<string, ArgumentValue>>,
  actual: Record<string, unknown>,
): string | undefined {
  const names = new Set([...Object.keys(desired), ...Object.keys(actual)]);
  const differences: string[] = [];
  for (const name of [...names].sort()) {
    const want: ArgumentValue | undefined = desired[name];
    const have = actual[name];
    if (want !== have) differences.push(`${name}: ${JSON.stringify(have)} → ${JSON.stringify(want)}`);
  }
  return differences.length === 0 ? undefined : `arguments differ (${differences.join(', ')})`;
}

/** Why the broker's queue differs from the desired one, or undefined when it matches. */
function queueMismatch(
  desired: DesiredQueue,
  actual: { arguments: Record<string, unknown>; durable: boolean },
): string | undefined {
  if (!actual.durable) return 'the queue is not durable';
  return argumentsMismatch(desired.arguments, actual.arguments);
}

function samePermissions(a: DesiredPermissions, b: DesiredPermissions): boolean {
  return a.configure === b.configure && a.write === b.write && a.read === b.read;
}

export interface PlanOptions {
  /** Keeps when each removed link began draining, across plans (default: a new one, so nothing drained yet). */
  drains?: DrainTracker;
  /** Epoch ms (default Date.now()). */
  now?: number;
}

/** Pure but for `drains`: the changes that turn `actual` into `layout`. */
export function planChanges(layout: BrokerLayout, actual: ActualState, options: PlanOptions = {}): Plan {
  const changes: Change[] = [];
  const deletions: Change[] = [];
  const userDeletions: Change[] = [];
  const conflicts: Conflict[] = [];
  let unchanged = 0;

  if (!actual.vhostExists) changes.push({ action: 'create', kind: 'vhost', name: layout.vhost });
  else unchanged += 1;

  const wantedExchanges = new Set(layout.exchanges.map((exchange) => exchange.name));
  for (const exchange of layout.exchanges) {
    const have = actual.exchanges.get(exchange.name);
    if (have === undefined) changes.push({ action: 'create', kind: 'exchange', name: exchange.name, exchange });
    else if (have.type !== exchange.type) {
      conflicts.push({
        kind: 'exchange',
        name: exchange.name,
        reason: `type is ${have.type}, configured ${exchange.type}; delete it to let the reconciler re-create it`,
      });
    } else {
      const mismatch = argumentsMismatch(exchange.arguments, have.arguments);
      if (mismatch === undefined) unchanged += 1;
      else {
        conflicts.push({
          kind: 'exchange',
          name: exchange.name,
          reason: `${mismatch}; cannot change in place: delete it to let the reconciler re-create it`,
        });
      }
    }
  }

  const wantedQueues = new Set(layout.queues.map((queue) => queue.name));
  for (const queue of layout.queues) {
    const have = actual.queues.get(queue.name);
    if (have === undefined) {
      changes.push({ action: 'create', kind: 'queue', name: queue.name, queue });
      continue;
    }
    const mismatch = queueMismatch(queue, have);
    if (mismatch === undefined) unchanged += 1;
    else {
      conflicts.push({
        kind: 'queue',
        name: queue.name,
        reason: `${mismatch}; cannot change in place and may hold messages: drain and delete it, the next apply re-creates it`,
      });
    }
  }

  const wantedBindings = new Set<string>();
  for (const binding of layout.bindings) {
    const key = bindingKey(binding);
    wantedBindings.add(key);
    if (actual.bindings.has(key)) unchanged += 1;
    else changes.push({ action: 'create', kind: 'binding', name: key, binding });
  }

  const wantedUsers = new Map<string, DesiredUser>(layout.users.map((user) => [user.name, user]));
  for (const user of layout.users) {
    const have = actual.users.get(user.name);
    if (have !== undefined && !isManaged(have.tags)) {
      conflicts.push({
        kind: 'user',
        name: user.name,
        reason: 'a user of that name exists without a DMR tag; not taken over',
      });
      continue;
    }
    if (have === undefined) changes.push({ action: 'create', kind: 'user', name: user.name, tag: user.tag });
    else if (have.tags.length !== 1 || have.tags[0] !== user.tag) {
      changes.push({ action: 'update', kind: 'user', name: user.name, tag: user.tag });
    } else unchanged += 1;
    const granted = actual.permissions.get(user.name);
    if (granted === undefined) {
      changes.push({ action: 'create', kind: 'permissions', name: user.name, permissions: user.permissions });
    } else if (!samePermissions(granted, user.permissions)) {
      changes.push({ action: 'update', kind: 'permissions', name: user.name, permissions: user.permissions });
    } else unchanged += 1;
    const { limits } = user;
    if (limits === undefined) continue;
    const current = actual.userLimits.get(user.name) ?? {};
    for (const limit of USER_LIMIT_NAMES) {
      const value = limits[limit];
      const have = current[limit];
      if (have === value) unchanged += 1;
      else {
        const action = have === undefined ? 'create' : 'update';
        changes.push({ action, kind: 'user-limit', name: user.name, limit, value });
      }
    }
  }

  const drains = options.drains ?? new DrainTracker();
  const denied = new Set(layout.deniedPeers);
  for (const [name, user] of actual.users) {
    if (wantedUsers.has(name)) {
      drains.keepPeerUser(name);
      continue;
    }
    if (!isManaged(user.tags)) continue;
    // A peer whose link left (not denylisted) still drains its queue towards us as this user.
    // (A user named by CN predates SPIFFE logins: its SPIFFE-named successor replaces it at once.)
    const peerUser =
      user.tags.includes(PEER_USER_TAG) &&
      name.includes('/node/') &&
      !denied.has(name.slice(name.lastIndexOf('/') + 1));
    if (peerUser && !drains.peerUserExpired(name, options.now ?? Date.now())) continue;
    // Deleting the user also drops its permissions and closes its connections.
    userDeletions.push({ action: 'delete', kind: 'user', name });
  }
  for (const [key, binding] of actual.bindings) {
    // A binding to a queue being deleted goes with the queue.
    if (!wantedBindings.has(key) && wantedQueues.has(binding.destination)) {
      deletions.push({ action: 'delete', kind: 'binding', name: key, ...binding });
    }
  }

  const links = planLinks(layout, actual, wantedQueues, options);
  changes.push(...links.changes);
  userDeletions.unshift(...links.first);
  deletions.push(...links.deletions);
  unchanged += links.unchanged;
  for (const name of actual.queues.keys()) {
    // Outbound queues are planLinks' (they go only once drained).
    if (!wantedQueues.has(name) && !name.startsWith(OUTBOUND_QUEUE_PREFIX)) {
      deletions.push({ action: 'delete', kind: 'queue', name });
    }
  }
  for (const name of actual.exchanges.keys()) {
    if (!wantedExchanges.has(name)) deletions.push({ action: 'delete', kind: 'exchange', name });
  }

  return {
    vhost: layout.vhost,
    changes: [...userDeletions, ...changes, ...deletions],
    conflicts,
    unchanged,
    draining: links.draining,
  };
}

/**
 * The link part of the plan: `first` (shovels to denylisted peers), `changes`
 * (shovels to create or replace, after the queues) and `deletions` (a drained
 * link's shovel, then its queue).
 */
function planLinks(
  layout: BrokerLayout,
  actual: ActualState,
  wantedQueues: ReadonlySet<string>,
  options: PlanOptions,
): { first: Change[]; changes: Change[]; deletions: Change[]; draining: Plan['draining']; unchanged: number } {
  const drains = options.drains ?? new DrainTracker();
  const now = options.now ?? Date.now();
  const managed = layout.shovels !== undefined;
  const denied = new Set(layout.deniedPeers);
  const result = { first: [] as Change[], changes: [] as Change[], deletions: [] as Change[], unchanged: 0 };
  const draining: Plan['draining'] = [];
  const wantedShovels = new Set<string>();
  for (const shovel of layout.shovels ?? []) {
    wantedShovels.add(shovel.name);
    const have = actual.shovels.get(shovel.name);
    if (have === undefined) result.changes.push({ action: 'create', kind: 'shovel', name: shovel.name, shovel });
    else if (!sameShovel(shovel.spec, have)) {
      result.changes.push({ action: 'update', kind: 'shovel', name: shovel.name, shovel });
    } else result.unchanged += 1;
  }
  for (const name of wantedQueues) {
    const peer = name.startsWith(OUTBOUND_QUEUE_PREFIX) ? linkPeerOf(name) : undefined;
    if (peer !== undefined) drains.forget(peer);
  }

  // Peers that have a shovel or an outbound queue here but no link in the layout.
  const gone = new Set<string>();
  if (managed) {
    for (const name of actual.shovels.keys()) if (!wantedShovels.has(name)) gone.add(linkPeerOf(name) ?? '');
  }
  for (const name of actual.queues.keys()) {
    if (name.startsWith(OUTBOUND_QUEUE_PREFIX) && !wantedQueues.has(name)) gone.add(linkPeerOf(name) ?? '');
  }
  gone.delete('');
  for (const peer of [...gone].sort()) {
    const shovel = `${LINK_SHOVEL_PREFIX}${peer}`;
    const queue = `${OUTBOUND_QUEUE_PREFIX}${peer}`;
    let hasShovel = managed && actual.shovels.has(shovel) && !wantedShovels.has(shovel);
    if (hasShovel && denied.has(peer)) {
      // Nothing more goes to a denylisted node, not even what waits for it.
      result.first.push({ action: 'delete', kind: 'shovel', name: shovel });
      hasShovel = false;
    }
    const depth = actual.queues.get(queue);
    if (depth === undefined || wantedQueues.has(queue)) {
      // Nothing to drain (the queue is gone or still wanted by another part of the layout).
      if (hasShovel) result.deletions.push({ action: 'delete', kind: 'shovel', name: shovel });
      drains.forget(peer);
      continue;
    }
    if (drains.drained(peer, depth.messages, now)) {
      if (hasShovel) result.deletions.push({ action: 'delete', kind: 'shovel', name: shovel });
      result.deletions.push({ action: 'delete', kind: 'queue', name: queue });
      drains.forget(peer);
    } else {
      draining.push({ peer, messages: depth.messages, shovel: hasShovel });
    }
  }
  return { ...result, draining };
}

async function deleteIgnoringMissing(management: ManagementClient, path: string): Promise<void> {
  try {
    await management.request('DELETE', path);
  } catch (error) {
    // Idempotent: someone (or an earlier, interrupted apply) removed it already.
    if (!(error instanceof DmrError && error.details.status === 404)) throw error;
  }
}

/**
 * Deleting a user closes its connections already (RABBITMQ-FACTS); this
 * covers one that was opening during the delete. The broker answers 500 when
 * it is asked to close a connection that is closing anyway, so an error only
 * counts if a connection of the user is still listed afterwards.
 */
async function closeRemainingConnections(management: ManagementClient, user: string): Promise<void> {
  try {
    await management.closeUserConnections(user, 'DMR: user removed by the reconciler');
  } catch (error) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const left = (await management.listConnections()).filter((connection) => connection.user === user);
    if (left.length > 0) throw error;
  }
}

async function applyChange(management: ManagementClient, vhost: string, change: Change): Promise<void> {
  const v = enc(vhost);
  if (change.action === 'delete') {
    switch (change.kind) {
      case 'user':
        await management.deleteUser(change.name);
        return closeRemainingConnections(management, change.name);
      case 'queue':
        return deleteIgnoringMissing(management, `/queues/${v}/${enc(change.name)}`);
      case 'shovel':
        return management.deleteShovel(vhost, change.name);
      case 'exchange':
        return deleteIgnoringMissing(management, `/exchanges/${v}/${enc(change.name)}`);
      case 'binding':
        return deleteIgnoringMissing(
          management,
          `/bindings/${v}/e/${enc(change.source)}/q/${enc(change.destination)}/${enc(change.propertiesKey)}`,
        );
    }
  }
  switch (change.kind) {
    case 'vhost':
      return management.declareVhost(change.name);
    case 'exchange':
      // Through request(): the harness helper knows neither plugin exchange types nor arguments.
      await management.request('PUT', `/exchanges/${v}/${enc(change.exchange.name)}`, {
        type: change.exchange.type,
        durable: true,
        auto_delete: false,
        arguments: { ...change.exchange.arguments },
      });
      return;
    case 'queue':
      return management.declareQueue(vhost, change.queue.name, { arguments: { ...change.queue.arguments } });
    case 'binding':
      return management.bindQueue(vhost, change.binding.source, change.binding.destination, change.binding.routingKey);
    case 'user':
      return management.createCertificateUser(change.name, [change.tag]);
    case 'permissions':
      return management.setPermissions(vhost, change.name, change.permissions);
    case 'user-limit':
      return management.setUserLimit(change.name, change.limit, change.value);
    case 'shovel':
      return management.declareShovel(vhost, change.name, change.shovel.spec);
  }
}

export interface ApplyResult extends Plan {
  /** False when only planned (dryRun). */
  applied: boolean;
}

/**
 * Reads the broker, plans and (unless dryRun) applies. Idempotent: applying
 * the same layout again plans nothing. Changes are applied one by one in plan
 * order; on a failure the error carries the plan and the failed change, and
 * the next apply picks up from what the broker then has.
 */
export async function reconcile(
  management: ManagementClient,
  layout: BrokerLayout,
  options: { dryRun?: boolean; drains?: DrainTracker } = {},
): Promise<ApplyResult> {
  const plan = planChanges(layout, await readActualState(management, layout.vhost), { drains: options.drains });
  if (options.dryRun === true) return { ...plan, applied: false };
  for (const change of plan.changes) {
    try {
      await applyChange(management, layout.vhost, change);
    } catch (error) {
      throw new DmrError('BROKER_COMMAND_FAILED', `reconciler: ${change.action} ${change.kind} ${change.name} failed`, {
        details: { vhost: layout.vhost, change: { action: change.action, kind: change.kind, name: change.name } },
        cause: error,
      });
    }
  }
  return { ...plan, applied: true };
}
