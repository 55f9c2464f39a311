/**
 * `dmr trace <message-id>`: the path one message took, from the audit
 * records alone (no Jaeger needed): every node that decided about it, in
 * hop order, with the time of each decision, its result and reasons, and
 * the W3C trace id the records name (decision 0032), for a Jaeger link.
 *
 * Where the records come from:
 * - a node's `dmr.audit` stream (scanStream / scanNode, with the node's own
 *   certificate like `dmr audit export`); the read is bounded by a record
 *   limit and, optionally, a time window (the stream is entered at a
 *   timestamp offset, so older records are not even sent), and stops at the
 *   entry that was last when it began (stream-end.ts; steady traffic used to
 *   keep it open), or once nothing new arrived for `idleMs` on a quiet stream;
 * - export files (`dmr audit export`): recordsOfExport.
 * Only records naming the message are kept, so memory is bounded by the
 * path, not by the stream.
 *
 * Order: a hop's position is the length of the hop chain the record names
 * (`hops`, the nodes before this one; none at the origin), then its time:
 * the clocks of different nodes need not agree, the hop chain does.
 * Dead-letter records (a report made later about the message) come after
 * the routing records, by time. Records are untrusted input (an export file
 * may come from anywhere): each is validated before it is used; one that
 * is not a routing record of this shape is skipped and counted.
 */
import type { ChannelModel } from 'amqplib';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DmrError } from '@dmr/core';
import { AUDIT_STREAM, UUID_PATTERN } from '@dmr/contract';
import type { RunConfig } from '../agent/run-config.js';
import { auditRecordsIn } from '../router/audit.js';
import { isRecordEntry, type AuditExport } from './export-file.js';
import { connectNodeBroker } from './export.js';
import { StreamEnd, streamOffset } from './stream-end.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);
const Short = Type.String({ maxLength: 512 });

/** The fields of an audit record (router/audit.ts AuditRecord) a trace shows; other fields are ignored. */
const TracedRecord = Type.Object({
  kind: Type.Union([Type.Literal('route'), Type.Literal('dead-letter')]),
  node: Type.String({ minLength: 1, maxLength: 63 }),
  writer: Type.String({ minLength: 1, maxLength: 255 }),
  seq: Type.Integer({ minimum: 1 }),
  messageId: Nullable(Short),
  sender: Nullable(Short),
  recipient: Nullable(Short),
  result: Type.Union([
    Type.Literal('routed'),
    Type.Literal('forwarded'),
    Type.Literal('duplicate'),
    Type.Literal('rejected'),
    Type.Literal('reported'),
  ]),
  reason: Nullable(Short),
  nextHop: Type.Optional(Short),
  hops: Type.Optional(Type.Array(Short, { maxItems: 64 })),
  policyRevision: Nullable(Short),
  policyReasons: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 }),
  configRevision: Type.Integer({ minimum: 0 }),
  at: Type.String({ minLength: 1, maxLength: 64 }),
  traceId: Type.Optional(Type.String({ pattern: '^[0-9a-f]{32}$' })),
});
type TracedRecordValue = Static<typeof TracedRecord>;
const checkRecord = TypeCompiler.Compile(TracedRecord);

/** One decision about the message: one audit record. */
export interface TraceStep {
  /** 0 at the origin node, 1 at the first relay, … (the hop chain's length on arrival); null for a dead-letter report. */
  hop: number | null;
  node: string;
  writer: string;
  seq: number;
  kind: 'route' | 'dead-letter';
  result: TracedRecordValue['result'];
  reason: string | null;
  nextHop: string | null;
  /** The hop chain on arrival (origin first); empty at the origin. */
  hops: string[];
  sender: string | null;
  recipient: string | null;
  policyRevision: string | null;
  policyReasons: string[];
  configRevision: number;
  /** The decision's time (ISO 8601, the deciding node's clock). */
  at: string;
  /** Milliseconds after the first step's time (clocks of different nodes may differ). */
  afterMs: number;
  traceId: string | null;
}

export interface MessageTrace {
  messageId: string;
  /** The trace ids the records name (one, normally; more if a hop started a new trace). */
  traceIds: string[];
  /** The nodes in path order, each once. */
  nodes: string[];
  steps: TraceStep[];
  /** The last routing decision: routed, rejected, forwarded (still on its way or lost on a link), … */
  outcome: TraceStep['result'];
  /** From the first step's time to the last one's. */
  elapsedMs: number;
  /** A Jaeger UI link per trace id, when a Jaeger URL was given. */
  jaeger: string[];
  /** What was read, per source. */
  sources: ScanSummary[];
}

export interface ScanSummary {
  /** A node id or a file name. */
  source: string;
  /** Audit entries looked at. */
  read: number;
  /** Records naming the message. */
  matched: number;
  /** Records naming the message that are not valid routing records (skipped). */
  invalid: number;
  /** True when the read stopped at the record limit: older or newer records were not looked at. */
  truncated: boolean;
}

export interface ScanResult {
  summary: ScanSummary;
  /** The matching records' stored text. */
  records: string[];
}

/** A message id as records carry it: a UUID, lowercase. */
export function traceMessageId(raw: string): string {
  const id = raw.trim().toLowerCase();
  if (!UUID_PATTERN.test(id)) {
    throw new DmrError('MESSAGE_ID_INVALID', `message id ${JSON.stringify(raw)} is not a UUID`, {
      hint: 'give the message_id the sender used (a UUID), e.g. from a delivery report or a log line',
    });
  }
  return id;
}

/** Cheap test before parsing: a record names the id as a JSON string value. */
function mentions(text: string, messageId: string): boolean {
  return text.includes(`"${messageId}"`);
}

/** The records of an export file that name `messageId`. */
export function scanExport(file: AuditExport, messageId: string, source: string, limit: number): ScanResult {
  const records: string[] = [];
  let read = 0;
  for (const entry of file.entries) {
    if (read >= limit)
      return { summary: { source, read, matched: records.length, invalid: 0, truncated: true }, records };
    read += 1;
    if (isRecordEntry(entry) && mentions(entry.record, messageId)) records.push(entry.record);
  }
  return { summary: { source, read, matched: records.length, invalid: 0, truncated: false }, records };
}

export interface StreamScanOptions {
  messageId: string;
  /** Stop after this many stream entries (records and checkpoints). */
  limit: number;
  /** Enter the stream at this time (a timestamp offset: RabbitMQ starts at the chunk holding it); default the first record. */
  since?: Date;
  /** On a quiet stream, stop once nothing new arrived for this long (stream-end.ts says why). Default 1000 ms. */
  idleMs?: number;
  /** Called every `progressEvery` entries read. */
  onProgress?: (read: number) => void;
  progressEvery?: number;
  source: string;
}

/**
 * Reads a `dmr.audit` stream from the start (or `since`) and keeps the
 * records naming the message. Resolves at the limit, at the stream's end
 * as of the start, or once idle.
 */
export async function scanStream(connection: ChannelModel, options: StreamScanOptions): Promise<ScanResult> {
  const channel = await connection.createChannel();
  const records: string[] = [];
  const every = options.progressEvery ?? 10_000;
  let read = 0;
  let truncated = false;
  let last = Date.now();
  let lastOffset: number | undefined;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  // Before subscribing: the stream's end as of now (stream-end.ts), so steady traffic does not keep the read open.
  const end = await StreamEnd.watch(connection, AUDIT_STREAM);
  try {
    await channel.prefetch(1000);
    const offset =
      options.since === undefined ? 'first' : { '!': 'timestamp', value: Math.floor(options.since.getTime() / 1000) };
    await channel.consume(
      AUDIT_STREAM,
      (message) => {
        if (message === null) return stop();
        if (truncated) return;
        read += 1;
        last = Date.now();
        lastOffset = streamOffset(message) ?? lastOffset;
        channel.ack(message);
        const type = message.properties.type as unknown;
        // A batch carries several records (audit.ts AUDIT_RECORDS_TYPE); checkpoints and markers none.
        for (const bytes of auditRecordsIn(type, message.content)) {
          const text = bytes.toString('utf8');
          if (mentions(text, options.messageId)) records.push(text);
        }
        if (read % every === 0) options.onProgress?.(read);
        if (read >= options.limit) {
          truncated = true;
          stop();
        }
      },
      { arguments: { 'x-stream-offset': offset } },
    );
    const idleMs = options.idleMs ?? 1000;
    for (;;) {
      const quiet = Date.now() - last;
      if (truncated || quiet >= idleMs || end.reached(lastOffset)) break;
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, Math.min(100, idleMs - quiet)))]);
    }
  } finally {
    await end.close();
    await channel.close().catch(() => undefined);
  }
  return {
    summary: { source: options.source, read, matched: records.length, invalid: 0, truncated },
    records,
  };
}

/** scanStream on the broker of the node `config` runs, with the node's certificate (as `dmr audit export`). */
export async function scanNode(config: RunConfig, options: Omit<StreamScanOptions, 'source'>): Promise<ScanResult> {
  const connection = await connectNodeBroker(config);
  try {
    return await scanStream(connection, { ...options, source: config.node });
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** The Jaeger UI page of a trace. */
export function jaegerTraceUrl(base: string, traceId: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new DmrError('INVALID_ARGUMENT', `the Jaeger URL ${JSON.stringify(base)} is not a URL`, {
      hint: 'give the Jaeger UI as http(s)://host:port, e.g. http://127.0.0.1:16686',
    });
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') {
    throw new DmrError('INVALID_ARGUMENT', `the Jaeger URL must be http(s) without credentials`, {
      hint: 'give the Jaeger UI as http(s)://host:port, e.g. http://127.0.0.1:16686',
    });
  }
  return `${url.href.replace(/\/+$/, '')}/trace/${traceId}`;
}

export interface TraceOptions {
  /** The Jaeger UI base URL: each trace id gets a link. */
  jaeger?: string | undefined;
}

/**
 * The message's path from the records the scans found. Throws
 * MESSAGE_NOT_FOUND when no valid record names it.
 */
export function traceMessage(
  messageId: string,
  scans: readonly ScanResult[],
  options: TraceOptions = {},
): MessageTrace {
  const seen = new Set<string>();
  const parsed: TracedRecordValue[] = [];
  const sources = scans.map((scan) => ({ ...scan.summary }));
  for (const [index, scan] of scans.entries()) {
    const summary = sources[index] as ScanSummary;
    for (const text of scan.records) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        summary.invalid += 1;
        continue;
      }
      if (!checkRecord.Check(value) || Number.isNaN(Date.parse(value.at))) {
        summary.invalid += 1;
        continue;
      }
      if (value.messageId !== messageId) continue;
      // The same record read twice (a node's stream and an export of it): once.
      const key = `${value.writer}\u0000${value.seq}\u0000${value.at}`;
      if (seen.has(key)) continue;
      seen.add(key);
      parsed.push(value);
    }
  }
  if (parsed.length === 0) {
    const read = sources.reduce((sum, source) => sum + source.read, 0);
    const truncated = sources.filter((source) => source.truncated).map((source) => source.source);
    throw new DmrError('MESSAGE_NOT_FOUND', `no audit record names message ${messageId} (${read} entries read)`, {
      details: { messageId, sources },
      hint:
        truncated.length > 0
          ? `the read stopped at the record limit on ${truncated.join(', ')}: raise --limit or narrow --since`
          : 'check the message id, and read every node the message may have passed (all of mesh.json, or one --from export per node)',
    });
  }
  const position = (record: TracedRecordValue): number =>
    record.kind === 'route' ? (record.hops?.length ?? 0) : Number.MAX_SAFE_INTEGER;
  parsed.sort((a, b) => position(a) - position(b) || Date.parse(a.at) - Date.parse(b.at) || a.seq - b.seq);
  const start = Math.min(...parsed.map((record) => Date.parse(record.at)));
  const end = Math.max(...parsed.map((record) => Date.parse(record.at)));
  const steps: TraceStep[] = parsed.map((record) => ({
    hop: record.kind === 'route' ? (record.hops?.length ?? 0) : null,
    node: record.node,
    writer: record.writer,
    seq: record.seq,
    kind: record.kind,
    result: record.result,
    reason: record.reason,
    nextHop: record.nextHop ?? null,
    hops: record.hops ?? [],
    sender: record.sender,
    recipient: record.recipient,
    policyRevision: record.policyRevision,
    policyReasons: record.policyReasons,
    configRevision: record.configRevision,
    at: record.at,
    afterMs: Date.parse(record.at) - start,
    traceId: record.traceId ?? null,
  }));
  const traceIds = [...new Set(steps.flatMap((step) => (step.traceId === null ? [] : [step.traceId])))];
  const routing = steps.filter((step) => step.kind === 'route');
  return {
    messageId,
    traceIds,
    nodes: [...new Set(steps.map((step) => step.node))],
    steps,
    outcome: (routing.at(-1) ?? (steps.at(-1) as TraceStep)).result,
    elapsedMs: end - start,
    jaeger: options.jaeger === undefined ? [] : traceIds.map((id) => jaegerTraceUrl(options.jaeger as string, id)),
    sources,
  };
}
