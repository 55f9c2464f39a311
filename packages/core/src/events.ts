/**
 * The one catalogue of DMR events (issue 15 item 4, docs/events.md,
 * docs/decisions/0035-events.md): the things an operator must be able to
 * see happened — configuration published, applied or refused; a certificate
 * issued, renewed, revoked, installed or expiring; a policy or denylist
 * change; a failed delivery. Each is one structured log line, one increment
 * of `dmr_events_total{kind,reason}` and one audit record, all made by
 * `EventRecorder`, so the three cannot drift apart.
 *
 * Mirrors the error catalogue: one entry per kind with its level, where it
 * comes from, a summary and its fields. Fields are ids, numbers, codes and
 * times only — never free text, payload or secrets — and every event is
 * checked against its entry before it is logged, counted or audited, so an
 * event reported by a node (CentOps' POST /v1/nodes/:id/events) is checked
 * by the same rules as one made in process.
 */
import { DmrError, isErrorCode, type ErrorCode } from './errors.js';
import { isValidId } from './ids.js';

type FieldType = 'id' | 'revision' | 'count' | 'code' | 'serial' | 'time' | 'uuid' | 'digest';
interface PlainField {
  readonly type: FieldType;
  readonly optional?: true;
}
interface EnumField {
  readonly type: 'enum';
  readonly values: readonly string[];
  readonly optional?: true;
}
type FieldSpec = PlainField | EnumField;

/** Where an event happens, which decides where its audit record goes (docs/events.md). */
export type EventOrigin = 'centops' | 'node' | 'router' | 'bridge';

interface EventSpec {
  readonly level: 'info' | 'warn' | 'error';
  readonly origin: EventOrigin;
  readonly summary: string;
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** The one field whose (bounded) value is the counter's `reason` label; `none` without one. */
  readonly label?: string;
}

const PRINCIPAL = { type: 'enum', values: ['client', 'node', 'operator', 'centops'] } as const;
/**
 * RFC 5280 CRL reasons by name: the certificate.revoked event's `reason` and the CA's revocation input
 * (@dmr/pki re-exports it), one list so an event can name every reason the CA accepts.
 */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'caCompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'privilegeWithdrawn',
] as const;

export const EVENT_CATALOGUE = {
  'config.published': {
    level: 'info',
    origin: 'centops',
    summary:
      'CentOps published a new configuration revision to the nodes (a registry change, a revocation, a denylist or policy change); once per revision.',
    fields: { revision: { type: 'revision' } },
  },
  'config.applied': {
    level: 'info',
    origin: 'node',
    summary: 'A node verified, reconciled and now runs a configuration revision (its agent reports it to CentOps).',
    fields: { node: { type: 'id' }, revision: { type: 'revision' } },
  },
  'config.refused': {
    level: 'warn',
    origin: 'node',
    summary:
      'A node refused a configuration revision and keeps running its last good one; `code` is the catalogue code of why.',
    fields: { node: { type: 'id' }, revision: { type: 'revision' }, code: { type: 'code' } },
    label: 'code',
  },
  'certificate.issued': {
    level: 'info',
    origin: 'centops',
    summary: 'The CA issued a certificate on enrolment or to an operator (`via`).',
    fields: {
      principal: PRINCIPAL,
      id: { type: 'id' },
      serial: { type: 'serial' },
      notAfter: { type: 'time' },
      via: { type: 'enum', values: ['enrol', 'operator'] },
    },
    label: 'via',
  },
  'certificate.renewed': {
    level: 'info',
    origin: 'centops',
    summary: 'The CA renewed a certificate for its holder (proof of the current key, or of an expired one in grace).',
    fields: { principal: PRINCIPAL, id: { type: 'id' }, serial: { type: 'serial' }, notAfter: { type: 'time' } },
    label: 'principal',
  },
  'certificate.revoked': {
    level: 'warn',
    origin: 'centops',
    summary: 'A certificate was revoked (by serial, with its identity, or superseded by a renewal after the overlap).',
    fields: {
      principal: PRINCIPAL,
      id: { type: 'id' },
      serial: { type: 'serial' },
      reason: { type: 'enum', values: REVOCATION_REASONS },
    },
    label: 'reason',
  },
  'certificate.installed': {
    level: 'info',
    origin: 'node',
    summary: "A node renewed its own certificate and installed it (its broker's TLS files, its links).",
    fields: { node: { type: 'id' }, serial: { type: 'serial' }, notAfter: { type: 'time' } },
  },
  'certificate.expiring': {
    level: 'warn',
    origin: 'node',
    summary:
      "A node's certificate crossed an expiry threshold (7d, then 1d) without being renewed; once per certificate and threshold.",
    fields: {
      node: { type: 'id' },
      serial: { type: 'serial' },
      notAfter: { type: 'time' },
      threshold: { type: 'enum', values: ['7d', '1d'] },
    },
    label: 'threshold',
  },
  'policy.changed': {
    level: 'info',
    origin: 'centops',
    summary: 'A new policy version (Rego, tests and data) passed opa check and opa test and became active.',
    fields: { version: { type: 'count' }, digest: { type: 'digest' }, revision: { type: 'revision' } },
  },
  'denylist.changed': {
    level: 'warn',
    origin: 'centops',
    summary: 'A client or node was put on or taken off the denylist (`op`).',
    fields: {
      op: { type: 'enum', values: ['add', 'remove'] },
      principal: { type: 'enum', values: ['client', 'node'] },
      id: { type: 'id' },
      revision: { type: 'revision' },
    },
    label: 'op',
  },
  'delivery.failed': {
    level: 'warn',
    origin: 'router',
    summary:
      "A message was not delivered: refused by a router (`reason`: the rejection code), or given up on by a client's delivery (bridge endpoint, delivery limit). Its audit record is the router's.",
    fields: {
      messageId: { type: 'uuid', optional: true },
      reason: { type: 'code' },
      sender: { type: 'id', optional: true },
      recipient: { type: 'id', optional: true },
    },
    label: 'reason',
  },
} as const satisfies Record<string, EventSpec>;

export type EventKind = keyof typeof EVENT_CATALOGUE;
export const EVENT_KINDS = Object.keys(EVENT_CATALOGUE) as EventKind[];

type Spec<K extends EventKind> = (typeof EVENT_CATALOGUE)[K]['fields'];
type ValueOf<F> = F extends { type: 'enum'; values: readonly (infer V)[] }
  ? V
  : F extends { type: 'revision' | 'count' }
    ? number
    : F extends { type: 'code' }
      ? ErrorCode
      : string;
type RequiredKeys<S> = { [P in keyof S]: S[P] extends { optional: true } ? never : P }[keyof S];
type OptionalKeys<S> = Exclude<keyof S, RequiredKeys<S>>;

/** The fields of one kind of event, typed from its catalogue entry. */
export type EventFields<K extends EventKind> = { [P in RequiredKeys<Spec<K>>]: ValueOf<Spec<K>[P]> } & {
  [P in OptionalKeys<Spec<K>>]?: ValueOf<Spec<K>[P]>;
};

export interface DmrEvent<K extends EventKind = EventKind> {
  kind: K;
  /** ISO 8601, when it happened (the emitter's clock). */
  at: string;
  fields: EventFields<K>;
}

/** The counter's name, help and labels: each process's metrics class declares it with these (core has no metrics library). */
export const EVENTS_COUNTER = {
  name: 'dmr_events_total',
  help: 'Events (docs/events.md), by kind and reason: the rejection or refusal code, the threshold, the denylist op, the issuing path; `none` for kinds without one',
  labelNames: ['kind', 'reason'] as const,
};

export function isEventKind(value: unknown): value is EventKind {
  return typeof value === 'string' && Object.hasOwn(EVENT_CATALOGUE, value);
}

const FIELD_CHECKS: Record<FieldType, (value: unknown) => boolean> = {
  id: (value) => typeof value === 'string' && isValidId(value),
  revision: (value) => Number.isSafeInteger(value) && (value as number) >= 0,
  count: (value) => Number.isSafeInteger(value) && (value as number) >= 0,
  code: (value) => typeof value === 'string' && isErrorCode(value),
  serial: (value) => typeof value === 'string' && /^[0-9a-f]{1,64}$/.test(value),
  // Date.parse alone accepts far too much; a fixed ISO shape keeps times comparable and free of text.
  time: (value) =>
    typeof value === 'string' &&
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/.test(value) &&
    !Number.isNaN(Date.parse(value)),
  uuid: (value) =>
    typeof value === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value),
  digest: (value) => typeof value === 'string' && /^(sha256:)?[0-9a-f]{64}$/.test(value),
};

function specOf(kind: EventKind): EventSpec {
  return EVENT_CATALOGUE[kind];
}

/** Every problem with `fields` as an event of `kind`; empty when it is one. Unknown fields are problems. */
export function eventProblems(kind: EventKind, fields: unknown): string[] {
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) return ['fields must be an object'];
  const spec = specOf(kind).fields;
  const problems: string[] = [];
  const record = fields as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (!Object.hasOwn(spec, name)) problems.push(`${kind}: unknown field "${name}"`);
  }
  for (const [name, field] of Object.entries(spec)) {
    const value = record[name];
    if (value === undefined) {
      if (field.optional !== true) problems.push(`${kind}: field "${name}" is required`);
      continue;
    }
    const ok = field.type === 'enum' ? field.values.includes(value as string) : FIELD_CHECKS[field.type](value);
    if (!ok) problems.push(`${kind}: field "${name}" is not a valid ${field.type}`);
  }
  return problems;
}

/** Checks an event from outside (a node's report): a known kind, a time, fields that fit the catalogue. */
export function parseEvent(value: unknown): DmrEvent {
  const problems: string[] = [];
  const record = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  if (!isEventKind(record.kind)) problems.push(`kind must be one of ${EVENT_KINDS.join(', ')}`);
  else problems.push(...eventProblems(record.kind, record.fields));
  if (!FIELD_CHECKS.time(record.at)) problems.push('at must be an ISO 8601 UTC time');
  for (const key of Object.keys(record)) if (!['kind', 'at', 'fields'].includes(key)) problems.push(`unknown "${key}"`);
  if (problems.length > 0) {
    throw new DmrError('INVALID_ARGUMENT', `not a DMR event: ${problems.join('; ')}`, { details: { problems } });
  }
  return record as unknown as DmrEvent;
}

/** The counter's `reason` label of an event: a value of a bounded field, never free text. */
export function eventReason(event: DmrEvent): string {
  const label = specOf(event.kind).label;
  if (label === undefined) return 'none';
  const value = (event.fields as Record<string, unknown>)[label];
  return typeof value === 'string' ? value : 'none';
}

/** pino's shape: a merge object and a message. */
export interface EventLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** prom-client's Counter<'kind' | 'reason'> fits. */
export interface EventCounter {
  inc(labels: { kind: string; reason: string }): void;
}

/** Appends the event's audit record; resolves once it is stored (or, for a node, queued for CentOps). */
export type EventAudit = (event: DmrEvent) => Promise<void>;

export interface EventRecorderOptions {
  logger: EventLogger;
  counter: EventCounter;
  /** Where this process's own audit records go; without it only `recorded` may be used. */
  audit?: EventAudit;
  now?: () => Date;
}

/**
 * The one helper every process emits events through. `emit` appends the
 * audit record, then logs and counts; `recorded` is for an event whose audit
 * record was already written together with the change itself (CentOps'
 * store writes it in the change's transaction; a router's decision record is
 * the audit record of a failed delivery), so the record exists exactly once.
 */
export class EventRecorder {
  readonly #options: EventRecorderOptions;

  constructor(options: EventRecorderOptions) {
    this.#options = options;
  }

  /**
   * Validates, appends the audit record, then logs and counts. A failed
   * append throws and neither logs nor counts. `context` and `message` as
   * for `recorded` (the log line only; the audit record holds the fields).
   */
  async emit<K extends EventKind>(
    kind: K,
    fields: EventFields<K>,
    context?: Record<string, unknown>,
    message?: string,
  ): Promise<DmrEvent<K>> {
    return this.append(this.#event(kind, fields), context, message);
  }

  /** `emit` for an event made elsewhere, keeping its time: a node's report to CentOps (checked by parseEvent). */
  async append<K extends EventKind>(
    event: DmrEvent<K>,
    context?: Record<string, unknown>,
    message?: string,
  ): Promise<DmrEvent<K>> {
    const audit = this.#options.audit;
    if (audit === undefined) throw new Error(`EventRecorder.append(${event.kind}) without an audit sink`);
    this.#check(event.kind, event.fields);
    await audit(event);
    this.#announce(event, context, message);
    return event;
  }

  /**
   * Validates, logs and counts an event whose audit record was written with
   * the change (see the class). `context` adds fields to the log line only
   * (a router's hops and timing): ids and numbers, never payload. `message`
   * replaces the line's message (the kind) where a line already had a name
   * readers rely on: a router's refusal stays its one `route` line.
   */
  recorded<K extends EventKind>(
    kind: K,
    fields: EventFields<K>,
    context?: Record<string, unknown>,
    message?: string,
  ): DmrEvent<K> {
    const event = this.#event(kind, fields);
    this.#announce(event, context, message);
    return event;
  }

  #event<K extends EventKind>(kind: K, fields: EventFields<K>): DmrEvent<K> {
    this.#check(kind, fields);
    return { kind, at: (this.#options.now?.() ?? new Date()).toISOString(), fields };
  }

  #check(kind: EventKind, fields: unknown): void {
    const problems = eventProblems(kind, fields);
    // A bad event is a bug in the emitter, not something a caller could fix: fail loudly in tests.
    if (problems.length > 0) throw new DmrError('INVALID_ARGUMENT', problems.join('; '), { details: { problems } });
  }

  #announce(event: DmrEvent, context?: Record<string, unknown>, message: string = event.kind): void {
    const spec = specOf(event.kind);
    this.#options.logger[spec.level]({ ...context, event: event.kind, ...event.fields }, message);
    this.#options.counter.inc({ kind: event.kind, reason: eventReason(event) });
  }
}

/** The catalogue as a table for docs/events.md (the metrics doc generator renders it). */
export function eventCatalogueRows(): {
  kind: EventKind;
  level: string;
  origin: EventOrigin;
  fields: string;
  label: string;
  summary: string;
}[] {
  return EVENT_KINDS.map((kind) => {
    const spec = specOf(kind);
    const fields = Object.entries(spec.fields)
      .map(
        ([name, field]) =>
          `${name}${field.optional === true ? '?' : ''}: ${field.type === 'enum' ? field.values.join('\\|') : field.type}`,
      )
      .join(', ');
    return { kind, level: spec.level, origin: spec.origin, fields, label: spec.label ?? '—', summary: spec.summary };
  });
}
