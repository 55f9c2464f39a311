/**
 * Validation of registry changes, as pure functions: the shape of every spec
 * and the references across the whole registry that would result. Every
 * problem is reported (path + message), not just the first, so an operator
 * fixes a batch in one round trip.
 *
 * Specs arrive as untyped JSON (REST API, CLI files), so the checks take
 * `unknown` and trust nothing the TypeScript types claim.
 */
import { isIP } from 'node:net';
import { DmrError, explainInvalidId, isDmrError, parseDuration } from '@dmr/core';
import { KEY_ALGORITHMS } from '@dmr/pki';
import {
  CLIENT_STATUSES,
  DEFAULT_CLIENT_CERTIFICATE_PROFILE,
  RESOURCE_KINDS,
  linkId,
  type CertificateProfile,
  type Client,
  type DmrNode,
  type Link,
  type Organisation,
  type ResourceKind,
  type ResourceSpecs,
} from '../model.js';

export interface Problem {
  /** Where: `spec.homeNode`, `changes[2].spec.cost`, `Client/police-bot.organisation`. */
  path: string;
  message: string;
}

export const LIFETIME_MIN_MS = 3_600_000; // 1h: shorter would renew faster than nodes pick up config
export const LIFETIME_MAX_MS = 90 * 86_400_000; // 90d: short-lived certificates are the revocation backstop
export const MAX_LABELS = 64;
export const MAX_ROLES = 64;
const LABEL_KEY = /^[a-z0-9](?:[a-z0-9._/-]{0,61}[a-z0-9])?$/;
const LABEL_VALUE_MAX = 256;
const ROLE = /^[a-z0-9](?:[a-z0-9._:-]{0,61}[a-z0-9])?$/;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const NAME_MAX = 200;

type Check = (value: unknown, path: string, out: Problem[]) => void;

export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base === '' ? key : `${base}.${key}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** Checks an object against a table of field checks: every field required, no unknown fields (typos). */
function checkObject(value: unknown, fields: Record<string, Check>, path: string, out: Problem[]): boolean {
  if (!isRecord(value)) {
    out.push({ path: path === '' ? '(root)' : path, message: `must be an object, not ${describe(value)}` });
    return false;
  }
  for (const [key, check] of Object.entries(fields)) {
    if (value[key] === undefined) out.push({ path: joinPath(path, key), message: 'is required' });
    else check(value[key], joinPath(path, key), out);
  }
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(fields, key)) out.push({ path: joinPath(path, key), message: 'is not a known field' });
  }
  return true;
}

function checkString(value: unknown, path: string, out: Problem[]): value is string {
  if (typeof value === 'string') return true;
  out.push({ path, message: `must be a string, not ${describe(value)}` });
  return false;
}

const checkId: Check = (value, path, out) => {
  if (!checkString(value, path, out)) return;
  const problem = explainInvalidId(value);
  if (problem !== undefined) out.push({ path, message: `id "${value}" ${problem}` });
};

const checkName: Check = (value, path, out) => {
  if (!checkString(value, path, out)) return;
  if (value.trim() === '') out.push({ path, message: 'must not be empty' });
  else if (value.length > NAME_MAX) out.push({ path, message: `must be at most ${NAME_MAX} characters` });
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  else if (/[\u0000-\u001f\u007f]/.test(value)) out.push({ path, message: 'must not contain control characters' });
};

const checkLabels: Check = (value, path, out) => {
  if (!isRecord(value)) {
    out.push({ path, message: `must be an object of string values, not ${describe(value)}` });
    return;
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_LABELS) out.push({ path, message: `must have at most ${MAX_LABELS} labels` });
  for (const [key, label] of entries) {
    const at = joinPath(path, key);
    if (!LABEL_KEY.test(key)) {
      out.push({
        path: at,
        message: 'label key must be 1–63 of a-z, 0-9, ".", "_", "/", "-", starting and ending with a letter or digit',
      });
    }
    if (checkString(label, at, out) && label.length > LABEL_VALUE_MAX) {
      out.push({ path: at, message: `label value must be at most ${LABEL_VALUE_MAX} characters` });
    }
  }
};

function checkStringArray(value: unknown, path: string, out: Problem[], max: number): value is string[] {
  if (!Array.isArray(value)) {
    out.push({ path, message: `must be an array of strings, not ${describe(value)}` });
    return false;
  }
  if (value.length > max) out.push({ path, message: `must have at most ${max} entries` });
  const seen = new Set<string>();
  let ok = true;
  value.forEach((item: unknown, index) => {
    if (!checkString(item, joinPath(path, index), out)) ok = false;
    else if (seen.has(item)) out.push({ path: joinPath(path, index), message: `"${item}" is listed twice` });
    else seen.add(item);
  });
  return ok;
}

const checkRoles: Check = (value, path, out) => {
  if (!checkStringArray(value, path, out, MAX_ROLES)) return;
  value.forEach((role, index) => {
    if (!ROLE.test(role)) {
      out.push({
        path: joinPath(path, index),
        message: `role "${role}" must be 1–63 of a-z, 0-9, ".", "_", ":", "-", starting and ending with a letter or digit`,
      });
    }
  });
};

const checkStatus: Check = (value, path, out) => {
  if (checkString(value, path, out) && !(CLIENT_STATUSES as readonly string[]).includes(value)) {
    out.push({ path, message: `must be one of ${CLIENT_STATUSES.join(', ')}` });
  }
};

export function isDnsName(name: string): boolean {
  return name.length <= 253 && name.split('.').every((label) => DNS_LABEL.test(label)) && !/^[0-9.]+$/.test(name);
}

function profileChecks(kind: 'client' | 'node'): Record<keyof CertificateProfile, Check> {
  const sans =
    (what: 'DNS' | 'IP', valid: (value: string) => boolean): Check =>
    (value, path, out) => {
      if (!checkStringArray(value, path, out, 32)) return;
      if (kind === 'client' && value.length > 0) {
        out.push({ path, message: `a client certificate carries no extra ${what} names (its identity is its id)` });
        return;
      }
      value.forEach((name, index) => {
        if (!valid(name)) out.push({ path: joinPath(path, index), message: `"${name}" is not a valid ${what} name` });
      });
    };
  return {
    keyAlgorithm: (value, path, out) => {
      if (checkString(value, path, out) && !(KEY_ALGORITHMS as readonly string[]).includes(value)) {
        out.push({ path, message: `must be one of ${KEY_ALGORITHMS.join(', ')}` });
      }
    },
    lifetime: (value, path, out) => {
      if (!checkString(value, path, out)) return;
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch (error) {
        if (!isDmrError(error)) throw error;
        out.push({ path, message: `"${value}" is not a duration such as 24h or 30d` });
        return;
      }
      if (ms < LIFETIME_MIN_MS || ms > LIFETIME_MAX_MS) out.push({ path, message: 'must be between 1h and 90d' });
    },
    extraDns: sans('DNS', isDnsName),
    extraIps: sans('IP', (ip) => isIP(ip) !== 0),
  };
}

function endpointCheck(protocol: 'amqps:' | 'https:', allowPath: boolean): Check {
  return (value, path, out) => {
    if (!checkString(value, path, out)) return;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      out.push({ path, message: `"${value}" is not a URL (expected ${protocol}//host:port)` });
      return;
    }
    // Plain amqp:// and http:// are refused on purpose: every connection in DMR is TLS.
    if (url.protocol !== protocol) out.push({ path, message: `must be an ${protocol}// URL, not ${url.protocol}//` });
    if (url.hostname === '') out.push({ path, message: 'must name a host' });
    if (url.username !== '' || url.password !== '') out.push({ path, message: 'must not carry credentials' });
    if (url.search !== '' || url.hash !== '') out.push({ path, message: 'must not have a query or fragment' });
    if (!allowPath && url.pathname !== '' && url.pathname !== '/') {
      out.push({ path, message: 'must not have a path (the vhost is set by DMR)' });
    }
  };
}

const ORGANISATION_FIELDS: Record<keyof Organisation, Check> = {
  id: checkId,
  name: checkName,
  labels: checkLabels,
};

const CLIENT_PROFILE = profileChecks('client');
const NODE_PROFILE = profileChecks('node');

const CLIENT_FIELDS: Record<keyof Client, Check> = {
  id: checkId,
  organisation: checkId,
  homeNode: checkId,
  roles: checkRoles,
  labels: checkLabels,
  status: checkStatus,
  certificateProfile: (value, path, out) => void checkObject(value, CLIENT_PROFILE, path, out),
};

const NODE_FIELDS: Record<keyof DmrNode, Check> = {
  id: checkId,
  amqpsEndpoint: endpointCheck('amqps:', false),
  managementEndpoint: endpointCheck('https:', true),
  labels: checkLabels,
  certificateProfile: (value, path, out) => void checkObject(value, NODE_PROFILE, path, out),
};

const LINK_FIELDS: Record<keyof Link, Check> = {
  id: (value, path, out) => void checkString(value, path, out),
  nodes: (value, path, out) => {
    if (!Array.isArray(value) || value.length !== 2) {
      out.push({ path, message: 'must be an array of exactly two node ids' });
      return;
    }
    value.forEach((id: unknown, index) => checkId(id, joinPath(path, index), out));
    if (value[0] === value[1]) out.push({ path, message: 'a link joins two different nodes' });
  },
  cost: (value, path, out) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      out.push({ path, message: 'must be a positive integer' });
    }
  },
};

const SPEC_FIELDS: { [K in ResourceKind]: Record<keyof ResourceSpecs[K], Check> } = {
  Organisation: ORGANISATION_FIELDS,
  Client: CLIENT_FIELDS,
  Node: NODE_FIELDS,
  Link: LINK_FIELDS,
};

export function isResourceKind(value: unknown): value is ResourceKind {
  return typeof value === 'string' && (RESOURCE_KINDS as readonly string[]).includes(value);
}

/** The spec with the fields an operator may leave out filled in: a Client's certificate profile. */
export function specWithDefaults(kind: ResourceKind, spec: unknown): unknown {
  if (kind !== 'Client' || !isRecord(spec) || spec.certificateProfile !== undefined) return spec;
  const { extraDns, extraIps, ...rest } = DEFAULT_CLIENT_CERTIFICATE_PROFILE;
  return { ...spec, certificateProfile: { ...rest, extraDns: [...extraDns], extraIps: [...extraIps] } };
}

/** Problems with one spec on its own (no references checked). Empty means it is a valid `ResourceSpecs[kind]`. */
export function validateSpec(kind: ResourceKind, value: unknown, path = 'spec'): Problem[] {
  const out: Problem[] = [];
  if (!checkObject(value, SPEC_FIELDS[kind], path, out) || !isRecord(value)) return out;
  if (kind === 'Link') {
    const nodes = value.nodes;
    if (Array.isArray(nodes) && typeof nodes[0] === 'string' && typeof nodes[1] === 'string') {
      const expected = linkId(nodes[0], nodes[1]);
      if (typeof value.id === 'string' && value.id !== expected) {
        out.push({
          path: joinPath(path, 'id'),
          message: `must be "${expected}" (the two node ids, sorted, joined by --)`,
        });
      }
    }
  }
  return out;
}

export const CHANGE_OPS = ['create', 'update', 'upsert', 'delete'] as const;
export type ChangeOp = (typeof CHANGE_OPS)[number];

/** A change whose shape has been checked: the spec is a valid spec of its kind. */
export type CheckedChange =
  | {
      op: 'create' | 'update' | 'upsert';
      kind: ResourceKind;
      id: string;
      spec: ResourceSpecs[ResourceKind];
      expectedVersion?: number;
    }
  | { op: 'delete'; kind: ResourceKind; id: string; expectedVersion?: number };

/** Checks one change of a batch; `path` is where it sits in the request (`changes[3]`, or '' for a single change). */
export function validateChange(value: unknown, path: string): { problems: Problem[]; change?: CheckedChange } {
  if (!isRecord(value)) {
    return { problems: [{ path: path || '(root)', message: `must be an object, not ${describe(value)}` }] };
  }
  const problems: Problem[] = [];
  const { op, kind, expectedVersion } = value;
  if (!(CHANGE_OPS as readonly unknown[]).includes(op)) {
    problems.push({ path: joinPath(path, 'op'), message: `must be one of ${CHANGE_OPS.join(', ')}` });
  }
  if (!isResourceKind(kind)) {
    problems.push({ path: joinPath(path, 'kind'), message: `must be one of ${RESOURCE_KINDS.join(', ')}` });
  }
  if (expectedVersion !== undefined && (!Number.isSafeInteger(expectedVersion) || (expectedVersion as number) < 1)) {
    problems.push({ path: joinPath(path, 'expectedVersion'), message: 'must be a positive integer' });
  }
  const allowed = new Set(['op', 'kind', 'expectedVersion', op === 'delete' ? 'id' : 'spec']);
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) {
      const why = op === 'delete' ? 'a delete names only kind and id' : 'the id is spec.id';
      problems.push({ path: joinPath(path, key), message: `is not a known field here (${why})` });
    }
  }
  if (!isResourceKind(kind)) return { problems };
  const version = expectedVersion === undefined ? {} : { expectedVersion: expectedVersion as number };
  if (op === 'delete') {
    const at = joinPath(path, 'id');
    if (value.id === undefined) problems.push({ path: at, message: 'is required' });
    else if (kind === 'Link') checkString(value.id, at, problems);
    else checkId(value.id, at, problems);
    if (problems.length > 0) return { problems };
    return { problems, change: { op, kind, id: value.id as string, ...version } };
  }
  const withDefaults = specWithDefaults(kind, value.spec);
  // Checked even when op is wrong, so one round trip shows every problem.
  problems.push(...validateSpec(kind, withDefaults, joinPath(path, 'spec')));
  if (problems.length > 0) return { problems };
  const spec = withDefaults as ResourceSpecs[ResourceKind];
  return { problems, change: { op: op as 'create' | 'update' | 'upsert', kind, id: spec.id, spec, ...version } };
}

/** Changes that touch the same resource twice: a batch must say what it means once. */
export function findDuplicates(changes: readonly { path: string; kind: ResourceKind; id: string }[]): Problem[] {
  const first = new Map<string, string>();
  const problems: Problem[] = [];
  for (const { path, kind, id } of changes) {
    const key = `${kind}/${id}`;
    const earlier = first.get(key);
    if (earlier === undefined) first.set(key, path);
    else problems.push({ path: path || '(root)', message: `changes ${key} again (already changed by ${earlier})` });
  }
  return problems;
}

/** The registry as plain specs, by kind and id. */
export type RegistryContents = { readonly [K in ResourceKind]: ReadonlyMap<string, ResourceSpecs[K]> };

const PRINCIPAL_KINDS_IN_ORDER = ['Organisation', 'Client', 'Node'] as const;

function withArticle(kind: ResourceKind): string {
  return `${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind}`;
}

function sortedEntries<V>(map: ReadonlyMap<string, V>): [string, V][] {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Problems of the registry as a whole: the shared id namespace and every
 * reference. `deleted` (keys `Kind/id`) names what the change removes, so a
 * dangling reference says that the deletion is the cause.
 */
export function validateRegistry(registry: RegistryContents, deleted: ReadonlySet<string> = new Set()): Problem[] {
  const problems: Problem[] = [];
  const owner = new Map<string, ResourceKind>();
  for (const kind of PRINCIPAL_KINDS_IN_ORDER) {
    for (const id of [...registry[kind].keys()].sort()) {
      const other = owner.get(id);
      if (other === undefined) owner.set(id, kind);
      else {
        problems.push({
          path: `${kind}/${id}.id`,
          message: `"${id}" is already the id of ${other} ${id} (organisations, clients and nodes share one id namespace)`,
        });
      }
    }
  }
  const reference = (path: string, target: 'Organisation' | 'Node', id: string): void => {
    if (registry[target].has(id)) return;
    const actual = owner.get(id);
    let message: string;
    if (deleted.has(`${target}/${id}`)) message = `refers to ${target} "${id}", which this change deletes`;
    else if (actual !== undefined) message = `"${id}" is ${withArticle(actual)}, not ${withArticle(target)}`;
    else message = `refers to ${target} "${id}", which does not exist`;
    problems.push({ path, message });
  };
  for (const [id, client] of sortedEntries(registry.Client)) {
    reference(`Client/${id}.organisation`, 'Organisation', client.organisation);
    reference(`Client/${id}.homeNode`, 'Node', client.homeNode);
  }
  for (const [id, link] of sortedEntries(registry.Link)) {
    link.nodes.forEach((node, index) => reference(`Link/${id}.nodes[${index}]`, 'Node', node));
  }
  return problems;
}

export function validationError(problems: readonly Problem[]): DmrError {
  const shown = problems
    .slice(0, 3)
    .map((problem) => `${problem.path}: ${problem.message}`)
    .join('; ');
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
  return new DmrError(
    'VALIDATION_FAILED',
    `the change is invalid, ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${shown}${more}`,
    {
      details: { problems: problems.map((problem) => ({ ...problem })) },
      hint: 'fix every listed problem and send the change again; nothing was changed',
    },
  );
}
