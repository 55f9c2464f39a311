/**
 * Audit records of routing decisions (DESIGN.md "Audit"): one JSON record per
 * decision, no payload, in a hash chain per writer (one writer = one router
 * instance): each record's `prev` is the SHA-256 of the previous record's
 * bytes, which are its canonical JSON (sorted keys, no whitespace), exactly
 * as stored. A verifier recomputes the hashes from the stored bytes alone.
 *
 * StreamAuditSink appends to the `dmr.audit` stream in small batches with
 * publisher confirms; the router acknowledges an ingress message only after
 * its record is confirmed, so nothing acknowledged lacks its audit record.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { canonicalJson } from '@dmr/policy';
import type { ConfirmChannel } from 'amqplib';
import { AUDIT_STREAM } from '../reconciler/layout.js';

/** What the router records about one decision. */
export interface AuditEvent {
  kind: 'route' | 'dead-letter';
  node: string;
  messageId: string | null;
  sender: string | null;
  recipient: string | null;
  result: 'routed' | 'rejected' | 'reported';
  reason: string | null;
  policyRevision: string | null;
  policyReasons: string[];
  configRevision: number;
  /** ISO 8601 time of the decision. */
  at: string;
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
    if (record.writer !== writer || canonicalJson(record) !== Buffer.from(bytes).toString('utf8')) return index;
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

export class StreamAuditSink implements AuditSink {
  readonly writer: string;
  readonly #maxBatch: number;
  readonly #flushMs: number;
  readonly #stream: string;
  #channel: ConfirmChannel | undefined;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Flushes run one at a time: each chains onto the head the previous one confirmed. */
  #flushing: Promise<void> = Promise.resolve();
  /** The last record known stored: a failed batch restarts the chain from here. */
  #head: ChainHead = GENESIS;

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

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flush();
    await this.#flushing;
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
    // A throw inside #write must settle its batch and must not stall every later flush.
    this.#flushing = this.#flushing
      .then(() => this.#write(batch))
      .catch((error: unknown) => {
        for (const item of batch) item.reject(asError(error));
      });
  }

  async #write(batch: Pending[]): Promise<void> {
    const channel = this.#channel;
    if (channel === undefined) {
      const error = new DmrError('BROKER_NOT_RUNNING', 'the audit stream is not connected');
      for (const item of batch) item.reject(error);
      return;
    }
    let head = this.#head;
    const confirms = batch.map((item) => {
      const sealed = sealRecord(this.writer, head, item.event);
      head = sealed.head;
      return new Promise<ChainHead>((resolve, reject) => {
        try {
          channel.sendToQueue(
            this.#stream,
            sealed.bytes,
            { persistent: true, contentType: 'application/json', type: 'dmr.AuditRecord' },
            (error: unknown) => (error ? reject(asError(error)) : resolve(sealed.head)),
          );
        } catch (error) {
          reject(asError(error));
        }
      });
    });
    const outcomes = await Promise.allSettled(confirms);
    // Only the confirmed prefix counts: after a gap the chain goes on from the last record before it.
    let broken = false;
    for (const [index, outcome] of outcomes.entries()) {
      const item = batch[index] as Pending;
      if (!broken && outcome.status === 'fulfilled') {
        this.#head = outcome.value;
        item.resolve();
      } else {
        broken = true;
        item.reject(outcome.status === 'rejected' ? asError(outcome.reason) : new Error('an earlier record failed'));
      }
    }
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
