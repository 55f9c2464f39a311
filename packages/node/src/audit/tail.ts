/**
 * A restarted writer's own tail (docs/audit.md "A writer that crashed"):
 * the records its previous run stored in `dmr.audit` after the last
 * checkpoint CentOps witnessed. They were confirmed, so the messages they
 * speak for were acknowledged; the new run adopts them into its tree and
 * continues after them, so nothing accepted is lost and the log stays one
 * numbering (without this, the new run re-used their seqs and verify saw an
 * honest log as reordered).
 *
 * A stream never says where it ends, so the reader first appends a marker
 * (AMQP type dmr.AuditResume, confirmed) and reads up to it: everything the
 * dead run stored lies before it. It starts at the time CentOps witnessed
 * the checkpoint, less a margin for clock skew (records after a checkpoint
 * were sealed after its snapshot, before CentOps answered), or at the first
 * offset when there is no checkpoint yet.
 */
import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { DmrError } from '@dmr/core';
import { AUDIT_STREAM, leafHash } from '@dmr/contract';
import { AUDIT_RESUME_TYPE, auditRecordsIn, type ReadBackFrom } from '../router/audit.js';

/** How far before the checkpoint's witness time the read starts: clock skew between CentOps and the broker. */
export const TAIL_SKEW_MS = 60_000;

export interface WriterTailOptions {
  writer: string;
  /** The new run's id: names the marker this read stops at. */
  run: string;
  /** The size CentOps witnessed (or the last record known stored): records with a larger seq are the tail. */
  after: number;
  /**
   * Leaf hash (hex) of record `after` when the writer knows it (a running
   * writer reading back after a lost confirm): the first adopted record must
   * name it. Absent at a restart, where only the checkpoint's edge is known.
   */
  afterHash?: string | null;
  /** When CentOps witnessed that checkpoint (or the first unconfirmed record was published); absent: read from the first offset. */
  witnessedAt?: Date;
  stream?: string;
}

export interface WriterTail {
  /** The adopted records' leaf hashes, in log order (seq after+1, after+2, …). */
  leaves: Buffer[];
  /** Leaf hash (hex) of the last adopted record, null when none. */
  head: string | null;
  /** Messages read from the stream to find them (any writer). */
  read: number;
  /** Records of this writer after `after` that do not continue the chain (not adopted). */
  skipped: number;
}

interface TailRecord {
  writer?: unknown;
  seq?: unknown;
  prev?: unknown;
}

/**
 * Reads the writer's records after `after` up to a fresh marker. A record
 * joins the tail when it is the next seq and names the previous adopted
 * record's leaf hash (the first one: any prev, it follows the checkpoint).
 */
export async function readWriterTail(connection: ChannelModel, options: WriterTailOptions): Promise<WriterTail> {
  const stream = options.stream ?? AUDIT_STREAM;
  // One run may read back more than once (at start, and after each lost confirm): the nonce tells this read's
  // marker from an earlier one of the same run, which may lie in the window read.
  const nonce = randomUUID();
  const marker = await connection.createConfirmChannel();
  try {
    await new Promise<void>((resolve, reject) => {
      marker.sendToQueue(
        stream,
        Buffer.from(
          JSON.stringify({ v: 1, writer: options.writer, run: options.run, from: options.after, nonce }),
          'utf8',
        ),
        { persistent: true, contentType: 'application/json', type: AUDIT_RESUME_TYPE },
        (error: unknown) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve()),
      );
    });
  } finally {
    await marker.close().catch(() => undefined);
  }
  const offset =
    options.witnessedAt === undefined
      ? 'first'
      : { '!': 'timestamp', value: Math.max(0, Math.floor((options.witnessedAt.getTime() - TAIL_SKEW_MS) / 1000)) };
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const tail: WriterTail = { leaves: [], head: null, read: 0, skipped: 0 };
  try {
    await channel.prefetch(1000);
    await new Promise<void>((resolve, reject) => {
      channel.on('close', () => reject(new DmrError('BROKER_NOT_RUNNING', 'the audit stream closed while reading')));
      const onMessage = (message: ConsumeMessage | null): void => {
        if (message === null) {
          reject(new DmrError('BROKER_NOT_RUNNING', 'the broker cancelled the audit stream read'));
          return;
        }
        tail.read += 1;
        channel.ack(message);
        const type = message.properties.type as string | undefined;
        if (type === AUDIT_RESUME_TYPE) {
          if (isOurMarker(message.content, nonce)) resolve();
          return;
        }
        // A batch carries several records, in log order (audit.ts AUDIT_RECORDS_TYPE).
        for (const bytes of auditRecordsIn(type, message.content)) adopt(tail, bytes, options);
      };
      channel
        .consume(stream, onMessage, { arguments: { 'x-stream-offset': offset } })
        .then(undefined, (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))));
    });
  } finally {
    channel.removeAllListeners('close');
    await channel.close().catch(() => undefined);
  }
  return tail;
}

/**
 * A running writer's read-back after a lost confirm (StreamAuditSink's
 * readBack): its records after the last one confirmed, from a little before
 * the first unconfirmed one was published.
 */
export function readBackAfterLostConfirm(connection: ChannelModel, from: ReadBackFrom): Promise<WriterTail> {
  return readWriterTail(connection, {
    writer: from.writer,
    run: from.run,
    after: from.after.seq,
    afterHash: from.after.hash,
    witnessedAt: from.publishedAt,
  });
}

function isOurMarker(content: Buffer, nonce: string): boolean {
  try {
    const body = JSON.parse(content.toString('utf8')) as { nonce?: unknown };
    return body.nonce === nonce;
  } catch {
    return false;
  }
}

/** Pure: one stored message of the stream, in order; joins the tail when it continues it. */
export function adopt(
  tail: WriterTail,
  bytes: Buffer,
  options: Pick<WriterTailOptions, 'writer' | 'after' | 'afterHash'>,
): void {
  let record: TailRecord;
  try {
    record = JSON.parse(bytes.toString('utf8')) as TailRecord;
  } catch {
    return;
  }
  if (record.writer !== options.writer || typeof record.seq !== 'number' || record.seq <= options.after) return;
  const next = options.after + tail.leaves.length + 1;
  const links =
    tail.head === null
      ? options.afterHash === undefined || options.afterHash === null || record.prev === options.afterHash
      : record.prev === tail.head;
  if (record.seq !== next || !links) {
    tail.skipped += 1;
    return;
  }
  const leaf = leafHash(bytes);
  tail.leaves.push(leaf);
  tail.head = leaf.toString('hex');
}
