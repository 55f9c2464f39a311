/**
 * CentOps as the witness of the mesh's audit logs (docs/audit.md).
 *
 * A router writer sends its signed checkpoint with a consistency proof from
 * the last checkpoint CentOps holds for its log, and its log edge. CentOps
 * checks that the caller's node certificate signed it, that the log is one
 * of the caller's writers, that the edge gives the root, and that the new
 * tree extends the one it holds (RFC 6962 §2.1.2): a writer that rewrote
 * its history cannot get a second countersignature, which is how a fork is
 * caught. Then it countersigns with its config signer's key (note type 0x02,
 * key name `<td>/centops/witness`) and stores the result.
 *
 * CentOps' own audit table is a log of the same kind: every entry's
 * canonical JSON is a leaf, in seq order, and CentOps signs a checkpoint of
 * it at most every second when it grew. At start it replays the table and
 * compares the root at the size of the last checkpoint it stored: an edited
 * or deleted row is reported (and no further checkpoint signed) instead of
 * being papered over by a new one.
 */
import type { X509Certificate } from 'node:crypto';
import { createPrivateKey } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { DmrError, canonicalJson } from '@dmr/core';
import {
  HASH_SIZE,
  LogEdge,
  MAX_PROOF_HASHES,
  NoteSigner,
  centOpsOrigin,
  formatCheckpoint,
  leafHash,
  nodeKeyName,
  nodeOfWriter,
  noteVerifier,
  openNote,
  parseCheckpoint,
  verifyConsistency,
  witnessKeyName,
} from '@dmr/contract';
import { loadSigningIdentity } from '@dmr/pki';
import type { Store, StoredCheckpoint } from '../store/index.js';

export interface CheckpointSubmission {
  /** The signed note. */
  checkpoint: string;
  /** base64 hashes: consistency proof from the size CentOps holds (see GET …/checkpoint). */
  proof: string[];
  /** base64 hashes: the writer's log edge at this checkpoint's size. */
  edge: string[];
}

export interface WitnessedCheckpoint {
  /** The note with CentOps' signature added. */
  checkpoint: string;
  size: number;
  /** CentOps' witness certificate chain (x5c: base64 DER, leaf first). */
  witness: string[];
}

function refused(message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('AUDIT_CHECKPOINT_INVALID', message, {
    details,
    hint: 'the writer must extend the log CentOps holds (GET /v1/audit/writers/<node>/<writer>/checkpoint); a refused proof means its history changed',
  });
}

function hashes(values: readonly string[], what: string): Buffer[] {
  // The route schema caps these too; the witness does not rely on its caller having one.
  if (values.length > MAX_PROOF_HASHES) {
    throw refused(`${what} holds ${values.length} hashes; a log below 2^53 records needs at most ${MAX_PROOF_HASHES}`);
  }
  return values.map((value, i) => {
    const hash = Buffer.from(value, 'base64');
    if (hash.length !== HASH_SIZE || hash.toString('base64') !== value) {
      throw refused(`${what}[${i}] is not a base64 SHA-256 hash`);
    }
    return hash;
  });
}

export interface AuditWitnessOptions {
  store: Store;
  trustDomain: string;
  signerChainPem: string;
  signerKeyPem: string;
  logger?: FastifyBaseLogger;
}

export class AuditWitness {
  readonly witnessChain: string[];
  readonly #store: Store;
  readonly #trustDomain: string;
  readonly #signer: NoteSigner | undefined;
  readonly #logger: FastifyBaseLogger | undefined;
  readonly #ownOrigin: string;
  /** CentOps' own log: its edge and the last entry seq folded in. */
  #own = new LogEdge();
  #ownSeq = 0;
  #ownBroken: string | undefined;
  #ownChecked = false;
  #timer: NodeJS.Timeout | undefined;
  #signing: Promise<void> = Promise.resolve();

  constructor(options: AuditWitnessOptions) {
    const identity = loadSigningIdentity(options.signerChainPem, options.signerKeyPem, 'the witness');
    this.witnessChain = identity.x5c;
    this.#store = options.store;
    this.#trustDomain = options.trustDomain;
    this.#logger = options.logger;
    this.#ownOrigin = centOpsOrigin(options.trustDomain);
    const key = createPrivateKey(options.signerKeyPem);
    // Signed notes of type 0x02 are ECDSA; an RSA config signer cannot witness (docs/audit.md).
    this.#signer =
      key.asymmetricKeyType === 'ec' ? new NoteSigner(witnessKeyName(options.trustDomain), key) : undefined;
  }

  /** True once CentOps' own audit table no longer matches its signed checkpoint (an edited or deleted entry). */
  get ownLogBroken(): boolean {
    return this.#ownBroken !== undefined;
  }

  #witnessSigner(): NoteSigner {
    if (this.#signer === undefined) {
      throw new DmrError(
        'KEY_INVALID',
        "CentOps' config signer key is not ECDSA, so it cannot countersign checkpoints",
        {
          hint: 'rotate the config signer to an ECDSA P-256 key (`dmr centops rotate-signer --signer config`)',
        },
      );
    }
    return this.#signer;
  }

  /** Judges and countersigns a writer's checkpoint sent by node `nodeId` over TLS with `caller`. */
  async witness(
    nodeId: string,
    caller: X509Certificate,
    submission: CheckpointSubmission,
  ): Promise<WitnessedCheckpoint> {
    const signer = this.#witnessSigner();
    const { text } = openNote(submission.checkpoint, [
      noteVerifier(nodeKeyName(this.#trustDomain, nodeId), caller.publicKey),
    ]);
    const checkpoint = parseCheckpoint(text);
    const prefix = `${this.#trustDomain}/audit/`;
    const writer = checkpoint.origin.startsWith(prefix) ? checkpoint.origin.slice(prefix.length) : '';
    if (nodeOfWriter(writer) !== nodeId) {
      throw new DmrError('FORBIDDEN', `node ${nodeId} may not checkpoint the log ${checkpoint.origin}`, {
        hint: `a node checkpoints only its own writers' logs: ${prefix}${nodeId}/<writer>`,
      });
    }
    let edge: LogEdge;
    try {
      edge = new LogEdge(checkpoint.size, hashes(submission.edge, 'edge'));
    } catch (error) {
      if (error instanceof DmrError) throw error;
      throw refused(`the edge does not fit a log of ${checkpoint.size} records`);
    }
    if (!edge.root().equals(checkpoint.root)) throw refused('the edge does not give the checkpoint root');
    const proof = hashes(submission.proof, 'proof');
    const root = checkpoint.root.toString('base64');
    const stored = await this.#store.witnessAuditCheckpoint(
      { origin: checkpoint.origin, writer: { writer, nodeId }, size: checkpoint.size, root, edge: submission.edge },
      (latest) => {
        if (latest === undefined) return signer.cosign(submission.checkpoint);
        const details = { origin: checkpoint.origin, held: latest.size, sent: checkpoint.size };
        if (checkpoint.size < latest.size) {
          throw refused(
            `CentOps holds ${checkpoint.origin} at ${latest.size} records, later than ${checkpoint.size}`,
            details,
          );
        }
        const held = Buffer.from(latest.root, 'base64');
        if (checkpoint.size === latest.size) {
          if (held.equals(checkpoint.root)) return latest.note;
          throw refused(
            `fork: ${checkpoint.origin} at ${latest.size} records has another root than CentOps holds`,
            details,
          );
        }
        if (!verifyConsistency(latest.size, checkpoint.size, held, checkpoint.root, proof)) {
          throw refused(
            `fork: ${checkpoint.origin} at ${checkpoint.size} does not extend the log CentOps holds at ${latest.size}`,
            details,
          );
        }
        return signer.cosign(submission.checkpoint);
      },
    );
    return { checkpoint: stored.note, size: stored.size, witness: this.witnessChain };
  }

  /** Signs CentOps' own log every `intervalMs` while it grows. */
  start(intervalMs = 1000): void {
    if (this.#signer === undefined) {
      this.#logger?.warn("CentOps' config signer key is not ECDSA: its audit log is not checkpointed");
      return;
    }
    this.#timer = setInterval(() => void this.checkpointOwnLog(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#signing;
  }

  /** Folds new entries of CentOps' audit table into its log and signs a checkpoint if it grew. */
  checkpointOwnLog(): Promise<void> {
    this.#signing = this.#signing.then(() =>
      this.#checkpointOwnLog().catch((error: unknown) => {
        this.#logger?.error({ err: error }, "signing CentOps' audit log checkpoint failed");
      }),
    );
    return this.#signing;
  }

  async #checkpointOwnLog(): Promise<void> {
    if (this.#ownBroken !== undefined) return;
    const signer = this.#witnessSigner();
    const latest = this.#ownChecked ? undefined : await this.#store.latestAuditCheckpoint(this.#ownOrigin);
    const before = this.#own.size;
    for (;;) {
      const entries = await this.#store.auditEntriesAfter(this.#ownSeq, 1000);
      for (const entry of entries) {
        this.#own.append(leafHash(Buffer.from(canonicalJson(entry), 'utf8')));
        this.#ownSeq = entry.seq;
        if (latest !== undefined && this.#own.size === latest.size) this.#compare(latest);
        if (this.#ownBroken !== undefined) return;
      }
      if (entries.length < 1000) break;
    }
    if (latest !== undefined && this.#own.size < latest.size) {
      this.#broken(`CentOps' audit table holds ${this.#own.size} entries, fewer than its checkpoint of ${latest.size}`);
      return;
    }
    this.#ownChecked = true;
    if (this.#own.size === before && before > 0) return;
    if (this.#own.size === 0 || (latest !== undefined && latest.size === this.#own.size)) return;
    const text = formatCheckpoint({ origin: this.#ownOrigin, size: this.#own.size, root: this.#own.root() });
    const root = this.#own.root().toString('base64');
    await this.#store.witnessAuditCheckpoint(
      { origin: this.#ownOrigin, size: this.#own.size, root, edge: null },
      (held: StoredCheckpoint | undefined) => {
        if (held !== undefined && held.size > this.#own.size) {
          throw refused(`another CentOps signed ${this.#ownOrigin} at ${held.size} already`);
        }
        if (held !== undefined && held.size === this.#own.size) return held.note;
        return signer.sign(text);
      },
    );
  }

  #compare(latest: StoredCheckpoint): void {
    if (this.#own.root().toString('base64') !== latest.root) {
      this.#broken(`CentOps' audit table at ${latest.size} entries does not match its signed checkpoint`);
    }
  }

  #broken(message: string): void {
    this.#ownBroken = message;
    this.#logger?.error(
      { origin: this.#ownOrigin },
      `${message}: an entry was edited or deleted; no further checkpoint is signed`,
    );
  }
}
