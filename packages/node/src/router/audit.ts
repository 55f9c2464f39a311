/**
 * Audit records of routing decisions (docs/contract.md "Audit"): one JSON record per
 * decision, no payload, in a hash chain per writer (one writer = one router
 * instance): each record's `prev` is the SHA-256 of the previous record's
 * bytes, which are its canonical JSON (RFC 8785, @dmr/core), exactly as
 * stored. A verifier recomputes the hashes from the stored bytes alone.
 *
 * StreamAuditSink appends to the `dmr.audit` stream in batches with
 * publisher confirms, one stream message per batch (AUDIT_RECORDS_TYPE: the
 * records' stored bytes, one per line); the router acknowledges an ingress
 * message only after its record is confirmed, so nothing acknowledged lacks
 * its audit record.
 */
import { randomUUID } from 'node:crypto';
import { DmrError, canonicalJson } from '@dmr/core';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { AUDIT_STREAM, leafHash } from '@dmr/contract';

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

/** A stored record: the event plus its place in the writer's log. */
export interface AuditRecord extends AuditEvent {
  v: 2;
  writer: string;
  /** 1-based position in the writer's log: the record is Merkle leaf `seq - 1`. */
  seq: number;
  /**
   * The previous record's RFC 6962 leaf hash (hex); null for the first
   * record of a run. It names an edited record exactly (the next one no
   * longer links); the checkpoints prove the whole log.
   */
  prev: string | null;
  /** The writer process's run (random per start): a restarted writer continues the log under a new run. */
  run: string;
}

/** AMQP `type` of a record and of a countersigned checkpoint in `dmr.audit`. */
export const AUDIT_RECORD_TYPE = 'dmr.AuditRecord';
export const AUDIT_CHECKPOINT_TYPE = 'dmr.AuditCheckpoint';
/**
 * AMQP `type` of a batch of records in `dmr.audit`: their stored bytes in
 * log order, each followed by a newline. Canonical JSON has no whitespace
 * and escapes control characters inside strings, so a newline never occurs
 * inside a record. One stream message per batch instead of one per record:
 * the broker stores, and the router publishes and confirms, one message for
 * up to maxBatch records (docs/decisions/0036-speed-2.md).
 */
export const AUDIT_RECORDS_TYPE = 'dmr.AuditRecords';

const NEWLINE = 0x0a;
const NEWLINE_BYTES = Buffer.from([NEWLINE]);

/**
 * The records a `dmr.audit` message carries, as stored: those of a batch
 * (AUDIT_RECORDS_TYPE) split at the newlines; the body as one record for
 * AUDIT_RECORD_TYPE (written by routers before batches) or no type; none
 * for anything else (a checkpoint, a resume marker).
 */
export function auditRecordsIn(type: unknown, body: Buffer): Buffer[] {
  if (type === AUDIT_RECORD_TYPE || type === undefined) return [body];
  if (type !== AUDIT_RECORDS_TYPE) return [];
  const records: Buffer[] = [];
  let start = 0;
  for (let end = body.indexOf(NEWLINE, start); end !== -1; end = body.indexOf(NEWLINE, start)) {
    records.push(body.subarray(start, end));
    start = end + 1;
  }
  // Bytes after the last newline are no complete record: kept, so a verifier names them rather than missing them.
  if (start < body.length) records.push(body.subarray(start));
  return records;
}

/**
 * AMQP `type` of the marker a restarted writer appends before reading its
 * own tail back (audit/tail.ts): `{"v":1,"writer","run","from"}`. Not a
 * record: export and verify pass over it.
 */
export const AUDIT_RESUME_TYPE = 'dmr.AuditResume';

export interface ChainHead {
  seq: number;
  /** Leaf hash (hex) of the record at `seq`; null before the first record of a run. */
  hash: string | null;
}

export const GENESIS: ChainHead = { seq: 0, hash: null };

/** Pure: the record that follows `head`, its bytes (what is stored), its leaf hash and the new head. */
export function sealRecord(
  writer: string,
  run: string,
  head: ChainHead,
  event: AuditEvent,
): { record: AuditRecord; bytes: Buffer; leaf: Buffer; head: ChainHead } {
  const record: AuditRecord = { ...event, v: 2, writer, seq: head.seq + 1, prev: head.hash, run };
  const bytes = Buffer.from(canonicalJson(record), 'utf8');
  const leaf = leafHash(bytes);
  return { record, bytes, leaf, head: { seq: record.seq, hash: leaf.toString('hex') } };
}

/**
 * Checks one writer's records, in stored order: each parses, is canonical,
 * belongs to the writer, follows its predecessor's seq and names its leaf
 * hash (a new run starts with prev null). Returns the index of the first
 * broken record, or -1. The full check, with checkpoints, is audit/verify.ts.
 */
export function firstBrokenRecord(writer: string, stored: readonly Uint8Array[]): number {
  let head: ChainHead | undefined;
  let run: string | undefined;
  for (const [index, bytes] of stored.entries()) {
    let record: AuditRecord;
    const text = Buffer.from(bytes).toString('utf8');
    try {
      record = JSON.parse(text) as AuditRecord;
    } catch {
      return index;
    }
    if (record.writer !== writer || canonicalJson(record) !== text) return index;
    const newRun = run !== undefined && record.run !== run && record.prev === null;
    const expected = head === undefined ? { seq: record.seq - 1, hash: record.prev } : head;
    if (record.seq !== expected.seq + 1 || (record.prev !== expected.hash && !newRun)) return index;
    head = { seq: record.seq, hash: leafHash(bytes).toString('hex') };
    run = record.run;
  }
  return -1;
}

export interface AuditSink {
  /** Resolves once the record is stored (confirmed); rejects if it may not be. */
  append(event: AuditEvent): Promise<void>;
  /**
   * The router hands over its channel on every (re)connect, and withdraws it
   * on loss; the connection is for reading the stream back after a lost
   * confirm (StreamAuditSinkOptions.readBack).
   */
  attach?(channel: ConfirmChannel, connection?: ChannelModel): void;
  detach?(): void;
  /** Flushes what is pending; no timers remain. */
  close(): Promise<void>;
}

export interface StreamAuditSinkOptions {
  /** Log id; default a random UUID. Routers use `<node>/router-<shard>` so a restart continues the log. */
  writer?: string;
  /** Told each record's leaf hash once it is stored, in log order (the checkpointer). */
  onStored?: (leaf: Buffer) => void;
  /** Flush when this many records wait (default 64). */
  maxBatch?: number;
  /**
   * ...or this long after the first one arrived; 0 (the default): at the end
   * of the event loop turn that appended it, i.e. with every record the
   * router sealed while handling one read from the socket. A batch costs one
   * stream message whatever its size, so there is nothing to wait for.
   */
  flushMs?: number;
  stream?: string;
  /**
   * Reads back the records of this writer stored after `after` (audit/tail.ts
   * readWriterTail, given by the router process: the sink cannot import it
   * without an import circle). Used before the next record after a record
   * whose confirm was lost (the connection dropped between store and
   * confirm): it may be stored, so the log continues after it instead of
   * re-using its seq. Without it, such a record is taken as not stored.
   */
  readBack?: (connection: ChannelModel, from: ReadBackFrom) => Promise<{ leaves: Buffer[]; head: string | null }>;
}

/** Where a read-back starts: the last record known stored, and when the first unconfirmed one was published. */
export interface ReadBackFrom {
  writer: string;
  run: string;
  after: ChainHead;
  publishedAt: Date;
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
  leaf: Buffer;
  outcome: 'waiting' | 'confirmed' | Error;
  publishedAt: number;
}

export class StreamAuditSink implements AuditSink {
  readonly writer: string;
  /** This process's run of the writer's log. */
  readonly run: string = randomUUID();
  #onStored: ((leaf: Buffer) => void) | undefined;
  readonly #maxBatch: number;
  readonly #flushMs: number;
  readonly #stream: string;
  #channel: ConfirmChannel | undefined;
  #connection: ChannelModel | undefined;
  readonly #readBack: StreamAuditSinkOptions['readBack'];
  /** Set when a record's confirm was lost: the time its batch was published. The next flush reads back first. */
  #unsureSince: number | undefined;
  #readingBack: Promise<void> | undefined;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
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
    this.#onStored = options.onStored;
    this.#maxBatch = options.maxBatch ?? 64;
    this.#flushMs = options.flushMs ?? 0;
    this.#stream = options.stream ?? AUDIT_STREAM;
    this.#readBack = options.readBack;
  }

  get head(): ChainHead {
    return this.#head;
  }

  /** Who is told each stored record's leaf hash (the checkpointer, once it knows where the log continues). */
  set onStored(listener: ((leaf: Buffer) => void) | undefined) {
    this.#onStored = listener;
  }

  /**
   * Continues the writer's log after `size` records (its last checkpoint
   * and the tail it adopted); before the first append. `hash`: the leaf hash
   * (hex) of record `size` when known (an adopted tail), so the first record
   * of this run names it; null starts the run with prev null.
   */
  resume(size: number, hash: string | null = null): void {
    if (this.#sealed.seq !== 0 || this.#inFlight.length > 0 || this.#pending.length > 0) {
      throw new DmrError('INTERNAL', `the audit log ${this.writer} cannot resume once it has records`);
    }
    this.#sealed = { seq: size, hash };
    this.#head = this.#sealed;
  }

  /** Publishes a checkpoint message to the stream beside the records; resolves once confirmed. */
  publishCheckpoint(body: Buffer): Promise<void> {
    const channel = this.#channel;
    if (channel === undefined) {
      return Promise.reject(new DmrError('BROKER_NOT_RUNNING', 'the audit stream is not connected'));
    }
    return new Promise<void>((resolve, reject) => {
      try {
        channel.sendToQueue(
          this.#stream,
          body,
          { persistent: true, contentType: 'application/json', type: AUDIT_CHECKPOINT_TYPE },
          (error: unknown) => (error ? reject(asError(error)) : resolve()),
        );
      } catch (error) {
        reject(asError(error));
      }
    });
  }

  /**
   * `connection` is required (undefined only where no read-back is set up): a wrapper that dropped it left a
   * router whose batch lost its confirm in a broker crash unable to read back, so every later record was refused
   * and its shard routed nothing again (faults broker-kill, eighth session).
   */
  attach(channel: ConfirmChannel, connection: ChannelModel | undefined): void {
    if (this.#readBack !== undefined && connection === undefined) {
      // A wiring bug, not a state of the broker: fail where every router start meets it, never at the first crash.
      throw new DmrError(
        'INTERNAL',
        'the audit sink reads back after a lost confirm but was attached without a connection',
      );
    }
    this.#channel = channel;
    this.#connection = connection;
  }

  detach(): void {
    this.#channel = undefined;
    this.#connection = undefined;
  }

  append(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ event, resolve, reject });
      if (this.#pending.length >= this.#maxBatch) this.#flushNow();
      else this.#flushSoon();
    });
  }

  /** Publishes what waits and resolves once every published record is settled. */
  async close(): Promise<void> {
    this.#cancelFlush();
    await this.#readingBack;
    this.#flush();
    await this.#readingBack;
    if (this.#inFlight.length === 0) return;
    await new Promise<void>((resolve) => this.#drained.push(resolve));
  }

  #flushNow(): void {
    this.#cancelFlush();
    this.#flush();
  }

  #flushSoon(): void {
    if (this.#flushMs === 0) {
      this.#immediate ??= setImmediate(() => {
        this.#immediate = undefined;
        this.#flush();
      });
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, this.#flushMs);
  }

  #cancelFlush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
  }

  #flush(): void {
    if (this.#readingBack !== undefined) return; // it flushes what waits when done
    const batch = this.#pending;
    if (batch.length === 0) return;
    const channel = this.#channel;
    if (channel !== undefined && this.#unsureSince !== undefined && this.#readBack !== undefined) {
      this.#readingBack = this.#readBackTail().finally(() => {
        this.#readingBack = undefined;
        this.#flush();
      });
      return;
    }
    this.#pending = [];
    if (channel === undefined) {
      const error = new DmrError('BROKER_NOT_RUNNING', 'the audit stream is not connected');
      for (const item of batch) item.reject(error);
      return;
    }
    const entries: InFlight[] = [];
    const lines: Buffer[] = [];
    const publishedAt = Date.now();
    for (const pending of batch) {
      const sealed = sealRecord(this.writer, this.run, this.#sealed, pending.event);
      this.#sealed = sealed.head;
      entries.push({ pending, head: sealed.head, leaf: sealed.leaf, outcome: 'waiting', publishedAt });
      lines.push(sealed.bytes, NEWLINE_BYTES);
    }
    this.#inFlight.push(...entries);
    // One message, one confirm: every record of the batch is stored, or none is.
    const settle = (outcome: 'confirmed' | Error): void => {
      for (const entry of entries) entry.outcome = outcome;
      this.#settle();
    };
    try {
      channel.sendToQueue(
        this.#stream,
        Buffer.concat(lines),
        { persistent: true, contentType: 'application/x-ndjson', type: AUDIT_RECORDS_TYPE },
        (error: unknown) => settle(error ? asError(error) : 'confirmed'),
      );
    } catch (error) {
      settle(asError(error));
    }
  }

  /** Settles the confirmed prefix in chain order; a failed record takes every record chained after it down too. */
  #settle(): void {
    while (this.#inFlight.length > 0) {
      const first = this.#inFlight[0] as InFlight;
      if (first.outcome === 'waiting') break;
      this.#inFlight.shift();
      if (first.outcome === 'confirmed') {
        this.#head = first.head;
        this.#onStored?.(first.leaf);
        first.pending.resolve();
        continue;
      }
      // Not known to be stored: the records sealed after it may point at a missing record. Their messages go
      // back to the broker and are audited again. A lost confirm does not mean a lost record (the broker may
      // have stored it just before the connection dropped): the next flush reads the stream back first and
      // continues after whatever of it was stored.
      this.#unsureSince ??= first.publishedAt;
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

  /**
   * After a lost confirm, before the next record: adopts this writer's
   * records the broker stored after the last confirmed one (told to the
   * checkpointer like confirmed ones) and continues after them. A failed
   * read rejects what waits (the router holds those messages and retries)
   * and is tried again at the next flush.
   */
  async #readBackTail(): Promise<void> {
    const connection = this.#connection;
    const readBack = this.#readBack;
    const since = this.#unsureSince;
    try {
      if (connection === undefined || readBack === undefined || since === undefined) {
        throw new DmrError('BROKER_NOT_RUNNING', 'the audit stream is not connected');
      }
      const from = { writer: this.writer, run: this.run, after: this.#head, publishedAt: new Date(since) };
      const tail = await readBack(connection, from);
      let head = this.#head;
      for (const leaf of tail.leaves) {
        head = { seq: head.seq + 1, hash: leaf.toString('hex') };
        this.#head = head;
        this.#onStored?.(leaf);
      }
      this.#sealed = this.#head;
      this.#unsureSince = undefined;
    } catch (error) {
      const batch = this.#pending;
      this.#pending = [];
      for (const item of batch) item.reject(asError(error));
    }
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
