/**
 * `dmr audit export`: an export file (export-file.ts) from a node's
 * `dmr.audit` stream or from CentOps.
 *
 * From the stream: read from its first offset with the node's own
 * certificate (the router user may read the stream it writes), every record
 * and every countersigned checkpoint, in stream order. A stream has no "end"
 * a consumer is told about, so the read stops at the entry that was last
 * when it began (stream-end.ts), or once nothing new arrived for `idleMs`
 * (default 2 s) on a quiet stream.
 *
 * From CentOps: CentOps' own audit log (its entries' canonical JSON, in seq
 * order) with its checkpoints, and every checkpoint CentOps witnessed for
 * the router writers (the latter to set beside a node's export: a fork shows
 * as two checkpoints that disagree).
 */
import type { ChannelModel } from 'amqplib';
import { connectWithCertificate } from '@dmr/broker';
import { brokerServerCheck } from '@dmr/pki';
import { DmrError } from '@dmr/core';
import { vhostName } from '@dmr/contract';
import { loadIdentity } from '../agent/identity.js';
import { brokerAddress } from '../agent/router-process.js';
import type { RunConfig } from '../agent/run-config.js';
import { canonicalJson } from '@dmr/core';
import { AUDIT_STREAM, centOpsOrigin, witnessKeyName, writerOrigin } from '@dmr/contract';
import type { CentOpsClient } from '@dmr/centops-client';
import { AUDIT_CHECKPOINT_TYPE, auditRecordsIn } from '../router/audit.js';
import type { PublishedCheckpoint } from '../router/audit-checkpointer.js';
import { StreamEnd, streamOffset } from './stream-end.js';
import { EXPORT_FORMAT, formatExport, type CheckpointEntry, type RecordEntry } from './export-file.js';

type Line = Omit<RecordEntry, 'line'> | Omit<CheckpointEntry, 'line'>;

export interface StreamExportOptions {
  trustDomain: string;
  idleMs?: number;
  onProgress?: (read: number) => void;
}

export async function exportFromStream(connection: ChannelModel, options: StreamExportOptions): Promise<string> {
  const channel = await connection.createChannel();
  const lines: Line[] = [];
  let read = 0;
  let last = Date.now();
  let lastOffset: number | undefined;
  let failure: Error | undefined;
  // Before subscribing: the stream's end as of now (stream-end.ts), so steady traffic does not keep the read open.
  const end = await StreamEnd.watch(connection, AUDIT_STREAM);
  try {
    await channel.prefetch(1000);
    await channel.consume(
      AUDIT_STREAM,
      (message) => {
        if (message === null) return;
        read += 1;
        last = Date.now();
        lastOffset = streamOffset(message) ?? lastOffset;
        channel.ack(message);
        try {
          const text = message.content.toString('utf8');
          if (message.properties.type === AUDIT_CHECKPOINT_TYPE) {
            const published = JSON.parse(text) as PublishedCheckpoint;
            lines.push({
              origin: writerOrigin(options.trustDomain, published.writer),
              checkpoint: published.checkpoint,
              signers: published.signers,
              at: published.at,
            });
          } else {
            // A batch is several records, one per line; an older router's message is one; a marker none.
            for (const bytes of auditRecordsIn(message.properties.type, message.content)) {
              const record = bytes.toString('utf8');
              const writer = (JSON.parse(record) as { writer?: unknown }).writer;
              // Kept as stored; a record that does not parse is kept under its own line for verify to name.
              lines.push({ origin: writerOrigin(options.trustDomain, String(writer)), record });
            }
          }
        } catch (error) {
          failure ??= error instanceof Error ? error : new Error(String(error));
        }
        if (read % 10_000 === 0) options.onProgress?.(read);
      },
      { arguments: { 'x-stream-offset': 'first' } },
    );
    const idleMs = options.idleMs ?? 2000;
    while (Date.now() - last < idleMs && !end.reached(lastOffset)) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await end.close();
    await channel.close().catch(() => undefined);
  }
  if (failure !== undefined) throw failure;
  options.onProgress?.(read);
  return formatExport(header('stream', options.trustDomain), lines);
}

/** A connection to the broker of the node `config` runs, with the node's certificate like its routers. */
export async function connectNodeBroker(config: RunConfig): Promise<ChannelModel> {
  const identity = await loadIdentity(config.dataDir);
  if (identity === undefined) {
    throw new DmrError('NOT_FOUND', `node ${config.node} has no certificate in ${config.dataDir}`, {
      hint: 'run this where the node runs (`dmr node run` enrols and writes the identity)',
    });
  }
  const { host, port } = brokerAddress(config.broker.amqpsUrl);
  const connection = await connectWithCertificate({
    host,
    port,
    servername: config.broker.serverName ?? host,
    caPem: identity.trustBundlePem,
    certificatePem: identity.chainPem,
    privateKeyPem: identity.privateKeyPem,
    vhost: vhostName(config.node),
    tls: { checkServerIdentity: brokerServerCheck(config.centops.trustDomain, config.node) },
  });
  connection.on('error', () => undefined);
  return connection;
}

/** Exports the stream of the node `config` runs, connecting with the node's certificate like its routers. */
export async function exportFromNode(
  config: RunConfig,
  options: Omit<StreamExportOptions, 'trustDomain'> = {},
): Promise<string> {
  const connection = await connectNodeBroker(config);
  try {
    return await exportFromStream(connection, { ...options, trustDomain: config.centops.trustDomain });
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function header(source: 'stream' | 'centops', trustDomain: string) {
  return { format: EXPORT_FORMAT, version: 1 as const, source, trustDomain, exportedAt: new Date().toISOString() };
}

export async function exportFromCentOps(
  client: CentOpsClient,
  trustDomain: string,
  onProgress?: (read: number) => void,
): Promise<string> {
  const lines: Line[] = [];
  const checkpointsOf = async (origin: string): Promise<void> => {
    for (let after = -1; ;) {
      const page = await client.auditCheckpoints(origin, after);
      for (const item of page.items) {
        lines.push({
          origin,
          checkpoint: item.checkpoint,
          signers: { [witnessKeyName(trustDomain)]: page.witness },
          at: item.at,
        });
      }
      const last = page.items.at(-1);
      if (last === undefined) return;
      after = last.size;
    }
  };
  const own = centOpsOrigin(trustDomain);
  let cursor: string | undefined;
  let read = 0;
  do {
    const page = (await client.json('GET', '/v1/audit', { query: { limit: 1000, cursor } })) as {
      items: unknown[];
      next: string | null;
    };
    for (const entry of page.items) lines.push({ origin: own, record: canonicalJson(entry) });
    read += page.items.length;
    onProgress?.(read);
    cursor = page.next ?? undefined;
  } while (cursor !== undefined);
  await checkpointsOf(own);
  const writers = await client.auditWriters();
  for (const writer of writers.items) await checkpointsOf(writer.origin);
  return formatExport(header('centops', trustDomain), lines);
}
