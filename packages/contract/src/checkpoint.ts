/**
 * C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint): the body of a
 * signed note naming a log and its state,
 *
 *   <origin>\n
 *   <tree size, decimal>\n
 *   <base64 root hash>\n
 *   [extension lines]\n
 *
 * DMR's origins are `<trust domain>/audit/<writer>` for a router writer
 * (writer = `<node>/router-<shard>`) and `<trust domain>/audit/centops` for
 * CentOps' own log. Signed with signed-note.ts.
 */
import { DmrError } from '@dmr/core';
import { HASH_SIZE } from './merkle.js';

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  extensions?: string[];
}

const ORIGIN = /^[\x21-\x7e]{1,255}$/;
/** A checkpoint body's largest size: origin (255), size, root and a few extension lines. Larger is refused unread. */
export const MAX_CHECKPOINT_BYTES = 2048;

function invalid(message: string): DmrError {
  return new DmrError('AUDIT_CHECKPOINT_INVALID', message, {
    hint: 'a checkpoint is "<origin>\\n<size>\\n<base64 root>\\n" (c2sp.org/tlog-checkpoint)',
  });
}

export function formatCheckpoint(checkpoint: Checkpoint): string {
  if (!ORIGIN.test(checkpoint.origin)) throw invalid(`"${checkpoint.origin}" is not a checkpoint origin`);
  const extensions = (checkpoint.extensions ?? []).map((line) => `${line}\n`).join('');
  return `${checkpoint.origin}\n${checkpoint.size}\n${checkpoint.root.toString('base64')}\n${extensions}`;
}

/** Parses a checkpoint body (a verified note's text). */
export function parseCheckpoint(text: string): Checkpoint {
  if (Buffer.byteLength(text, 'utf8') > MAX_CHECKPOINT_BYTES) {
    throw invalid(`the checkpoint is larger than ${MAX_CHECKPOINT_BYTES} bytes`);
  }
  if (!text.endsWith('\n')) throw invalid('the checkpoint does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw invalid('the checkpoint has fewer than three lines');
  const [origin, size, root, ...extensions] = lines as [string, string, string, ...string[]];
  if (!ORIGIN.test(origin)) throw invalid(`"${origin.slice(0, 80)}" is not a checkpoint origin`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw invalid(`"${size.slice(0, 20)}" is not a tree size`);
  }
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== HASH_SIZE || hash.toString('base64') !== root) {
    throw invalid('the root hash is not 32 bytes of base64');
  }
  if (extensions.some((line) => line.length === 0)) throw invalid('the checkpoint has an empty extension line');
  return { origin, size: Number(size), root: hash, ...(extensions.length > 0 ? { extensions } : {}) };
}

/** The origin of a router writer's log. */
export function writerOrigin(trustDomain: string, writer: string): string {
  return `${trustDomain}/audit/${writer}`;
}

/** The origin of CentOps' own audit log. */
export function centOpsOrigin(trustDomain: string): string {
  return `${trustDomain}/audit/centops`;
}

/** The signed-note key name of a node's checkpoints, and of CentOps' witness signature. */
export function nodeKeyName(trustDomain: string, nodeId: string): string {
  return `${trustDomain}/node/${nodeId}`;
}

export function witnessKeyName(trustDomain: string): string {
  return `${trustDomain}/centops/witness`;
}

/** A router writer id: `<node>/router-<shard>`, stable across restarts so the log continues. */
export function routerWriterId(nodeId: string, shard: number): string {
  return `${nodeId}/router-${shard}`;
}

/** The node a writer id belongs to (the part before the first "/"). */
export function nodeOfWriter(writer: string): string | undefined {
  const match = /^([a-z0-9][a-z0-9-]{0,61}[a-z0-9])\/[a-z0-9][a-z0-9-]{0,62}$/.exec(writer);
  return match?.[1];
}
