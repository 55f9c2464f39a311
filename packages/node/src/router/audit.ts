/**
 * Audit records of routing decisions (docs/contract.md "Audit"): one JSON record per
 * decision, no payload, in a hash chain per writer (one writer = one router
 * instance): each record's `prev` is the SHA-256 of the previous record's
 * bytes, which are its canonical JSON (RFC 8785, @dmr/core), exactly as
 * stored. A verifier recomputes the hashes from the stored bytes alone.
 *
 * StreamAuditSink appends to the `dmr.audit` stream in small batches with
 * publisher confirms; the router acknowledges an ingress message only after
 * its record is confirmed, so nothing acknowledged lacks its audit record.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DmrError, canonicalJson } from '@dmr/core';
import type { ConfirmChannel } from 'amqplib';
import { AUDIT_STREAM } from '@dmr/contract';

/** What the router records about one decision. */
export interface AuditEvent {
  kind: 'route' | 'dead-letter';
  node: string;
  messageId: string | null;
  sender: string | null;
  recipient: string | null;
  /**
   * `routed`: delivered to a local recipient's queue; `forwarded`: sent over
   * the link to `nextHop`; `duplicate`: a mesh message this node already
   * handled, dropped; `rejected`; `reported` (a dead letter's report).
   */
  result: 'routed' | 'forwarded' | 'duplicate' | 'rejected' | 'reported';
  reason: string | null;
  /** The node a forwarded message went to. */
  nextHop?: string;
  /** For a mesh message: the nodes of its hop chain on arrival, origin first. */
  hops?: string[];
  policyRevision: string | null;
  policyReasons: string[];
  configRevision: number;
  /** ISO 8601 time of the decision. */
  at: string;
  /** The W3C trace the message belongs to (32 hex digits), when it carries one or this hop traced it: `dmr trace` links to it. */
  traceId?: string;
}

/** A stored record: the event plus its place in the writer's chain. */
export interface AuditRecord extends AuditEvent {
  v: 1;
  writer: string;
  seq: number;
  /** sha256 hex of the previous record's bytes; null for the first record of a chain. */
  prev: string | null;
}

export interface ChainHead {
  seq: number;
  hash: string | null;
}

export const GENESIS: ChainHead = { seq: 0, hash: null };

/** Pure: the record that follows `head`, its bytes (what is stored) and the new head. */
export function sealRecord(
  writer: string,
  head: ChainHead,
  event: AuditEvent,
): { record: AuditRecord; bytes: Buffer; head: ChainHead } {
  const record: AuditRecord = { ...event, v: 1, writer, seq: head.seq + 1, prev: head.hash };
  const bytes = Buffer.from(canonicalJson(record), 'utf8');
  return { record, bytes, head: { seq: record.seq, hash: createHash('sha256').update(bytes).digest('hex') } };
}

/**
 * Whether `text` is the canonical form of `record`. Records written before
 * the audit log moved to RFC 8785 used OPA's form, which differs only in
 * escaping U+2028 and U+2029 inside strings (every key of a record is ASCII,
 * so the key order is the same): such a record is still whole.
 */
function isCanonical(record: AuditRecord, text: string): boolean {
  const canonical = canonicalJson(record);
  if (canonical === text) return true;
  return (
    /[\u2028\u2029]/.test(canonical) && canonical.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029') === text
  );
}

/**
 * Checks one writer's records, in stored order: each parses, belongs to the
 * writer, follows its predecessor's seq and names its hash. Returns the index
 * of the first broken record, or -1 when the chain is whole.
 */
export function firstBrokenRecord(writer: string, stored: readonly Uint8Array[]): number {
  let head: ChainHead | undefined;
  for (const [index, bytes] of stored.entries()) {
    let record: AuditRecord;
    try {
      record = JSON.parse(Buffer.from(bytes).toString('utf8')) as AuditRecord;
    } catch {
      return index;
    }
    if (record.writer !== writer || !isCanonical(record, Buffer.from(bytes).toString('utf8'))) return index;
    const expected = head ?? { seq: record.seq - 1, hash: record.prev };
    if (record.seq !== expected.seq + 1 || record.prev !== expected.hash) return index;
    head = { seq: record.seq, hash: createHash('sha256').update(bytes).digest('hex') };
  }
  return -1;
}

export interface AuditSink {
  /** Resolves once the record is stored (confirmed); rejects if it may not be. */
  append(event: AuditEvent): Promise<void>;
  /** The router hands over its channel on every (re)connect, and withdraws it on loss. */
  attach?(channel: ConfirmChannel): void;
  detach?(): void;
  /** Flushes what is pending; no timers remain. */
  close(): Promise<void>;
}

export interface StreamAuditSinkOptions {
  /** Chain id; default a random UUID (one chain per router instance). */
  writer?: string;
  /** Flush when this many records wait (default 64). */
  maxBatch?: number;
  /** ...or this long after the first one arrived (default 5 ms). */
  flushMs?: number;
  stream?: string;
}

interface Pending {
  event: AuditEvent;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** A published record waiting for its confirm, in publish (= chain) order. */
interface InFlight {
  pending: Pending;
  head: ChainHead;
  outcome: 'waiting' | 'confirmed' | Error;
}

export class StreamAuditSink implements AuditSink {
  readonly writer: string;
  readonly #maxBatch: number;
  readonly #flushMs: number;
  readonly #stream: string;
  #channel: ConfirmChannel | undefined;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  /**
   * Published and not yet settled, oldest first. Batches are pipelined: the
   * next one is published without waiting for the previous one's confirms
   * (waiting capped the stream at maxBatch records per confirm round trip),
   * so records are sealed on the head of the last PUBLISHED record.
   */
  #inFlight: InFlight[] = [];
  /** Head of the last published record: what the next record chains onto. */
  #sealed: ChainHead = GENESIS;
  /** The last record known stored: a failed record restarts the chain from here. */
  #head: ChainHead = GENESIS;
  #drained: Array<() => void> = [];

  constructor(options: StreamAuditSinkOptions = {}) {
    this.writer = options.writer ?? randomUUID();
    this.#maxBatch = options.maxBatch ?? 64;
    this.#flushMs = options.flushMs ?? 5;
    this.#stream = options.stream ?? AUDIT_STREAM;
  }

  get head(): ChainHead {
    return this.#head;
  }

  attach(channel: ConfirmChannel): void {
    this.#channel = channel;
  }

  detach(): void {
    this.#channel = undefined;
  }

  append(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ event, resolve, reject });
      if (this.#pending.length >= this.#maxBatch) this.#flushSoon(0);
      else this.#flushSoon(this.#flushMs);
    });
  }

  /** Publishes what waits and resolves once every published record is settled. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flush();
    if (this.#inFlight.length === 0) return;
    await new Promise<void>((resolve) => this.#drained.push(resolve));
  }

  #flushSoon(delayMs: number): void {
    if (delayMs === 0) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#flush();
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, delayMs);
  }

  #flush(): void {
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    const channel = this.#channel;
    if (channel === undefined) {
      const error = new DmrError('BROKER_NOT_RUNNING', 'the audit stream is not connected');
      for (const item of batch) item.reject(error);
      return;
    }
    for (const pending of batch) {
      const sealed = sealRecord(this.writer, this.#sealed, pending.event);
      this.#sealed = sealed.head;
      const entry: InFlight = { pending, head: sealed.head, outcome: 'waiting' };
      this.#inFlight.push(entry);
      try {
        channel.sendToQueue(
          this.#stream,
          sealed.bytes,
          { persistent: true, contentType: 'application/json', type: 'dmr.AuditRecord' },
          (error: unknown) => {
            entry.outcome = error ? asError(error) : 'confirmed';
            this.#settle();
          },
        );
      } catch (error) {
        entry.outcome = asError(error);
      }
    }
    this.#settle();
  }

  /** Settles the confirmed prefix in chain order; a failed record takes every record chained after it down too. */
  #settle(): void {
    while (this.#inFlight.length > 0) {
      const first = this.#inFlight[0] as InFlight;
      if (first.outcome === 'waiting') break;
      this.#inFlight.shift();
      if (first.outcome === 'confirmed') {
        this.#head = first.head;
        first.pending.resolve();
        continue;
      }
      // Not stored: the records sealed after it point at a missing record. Their messages go back to the
      // broker and are audited again, continuing from the last record known stored.
      first.pending.reject(first.outcome);
      const later = this.#inFlight;
      this.#inFlight = [];
      this.#sealed = this.#head;
      for (const entry of later) entry.pending.reject(new Error('an earlier audit record failed'));
    }
    if (this.#inFlight.length === 0) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
