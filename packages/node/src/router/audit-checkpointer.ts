/**
 * A router writer's checkpoints (docs/audit.md). The writer's records are
 * the leaves of an RFC 6962 Merkle log; at least every second, or every 256
 * records, this signs a C2SP checkpoint of the stored records with the
 * node's key, sends it to CentOps with a consistency proof from the last
 * checkpoint CentOps witnessed, and publishes the countersigned checkpoint to
 * `dmr.audit` beside the records, with the signers' certificate chains.
 *
 * Off the per-message path: the sink only hands over each stored record's
 * leaf hash (one hash amortised to extend the log edge); signing, proofs and
 * the HTTPS call run on a timer. It keeps the leaf hashes since the last
 * witnessed checkpoint (32 bytes a record) to prove consistency, so while
 * CentOps is unreachable they accumulate; the next witnessed checkpoint
 * frees them.
 */
import type { Logger } from 'pino';
import {
  LogEdge,
  NoteSigner,
  consistencyProof,
  edgeAndLeavesHasher,
  formatCheckpoint,
  nodeKeyName,
  parseCheckpoint,
  parseNote,
  witnessKeyName,
  writerOrigin,
  type CheckpointSubmissionBody,
  type WitnessedCheckpointBody,
  type WriterCheckpointBody,
} from '@dmr/contract';
import { DmrError } from '@dmr/core';
import { loadSigningIdentity } from '@dmr/pki';

/** What CentOps does for a writer (a CentOpsClient in production). */
export interface CheckpointWitness {
  submitAuditCheckpoint(body: CheckpointSubmissionBody): Promise<WitnessedCheckpointBody>;
  auditWriterCheckpoint(writer: string): Promise<WriterCheckpointBody | undefined>;
}

/** The countersigned checkpoint as published in `dmr.audit` (AMQP type dmr.AuditCheckpoint). */
export interface PublishedCheckpoint {
  v: 1;
  writer: string;
  /** The signed note: the node's signature and CentOps' countersignature. */
  checkpoint: string;
  /** Each signer's certificate chain (x5c: base64 DER, leaf first) by signed-note key name. */
  signers: Record<string, string[]>;
  at: string;
}

export interface AuditCheckpointerOptions {
  writer: string;
  nodeId: string;
  trustDomain: string;
  /** The node's current certificate chain and key (read again after a renewal). */
  identity: () => { certificateChainPem: string; privateKeyPem: string };
  witness: CheckpointWitness;
  /** Publishes a countersigned checkpoint to the audit stream. */
  publish: (body: Buffer) => Promise<void>;
  everyMs?: number;
  everyRecords?: number;
  logger?: Logger;
  now?: () => Date;
}

export class AuditCheckpointer {
  readonly writer: string;
  readonly origin: string;
  readonly #options: AuditCheckpointerOptions;
  readonly #everyRecords: number;
  readonly #everyMs: number;
  #edge = new LogEdge();
  /** The log edge at the last checkpoint CentOps witnessed, and the leaves stored since. */
  #base = new LogEdge();
  #since: Buffer[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #signer: { pem: string; signer: NoteSigner; x5c: string[] } | undefined;
  #failures = 0;
  /** Witnessed checkpoints (for tests and metrics). */
  witnessed = 0;

  constructor(options: AuditCheckpointerOptions) {
    this.writer = options.writer;
    this.origin = writerOrigin(options.trustDomain, options.writer);
    this.#options = options;
    this.#everyRecords = options.everyRecords ?? 256;
    this.#everyMs = options.everyMs ?? 1000;
  }

  get size(): number {
    return this.#edge.size;
  }

  /** The size CentOps last witnessed. */
  get witnessedSize(): number {
    return this.#base.size;
  }

  /**
   * Where the writer's log continues: the last checkpoint CentOps holds
   * (0 for a new writer), whose edge must give its root. The answer comes
   * over CentOps' pinned TLS; its signatures were checked when it was
   * witnessed (the node's key may have been renewed since).
   */
  async resume(): Promise<{ size: number; at?: Date }> {
    const held = await this.#options.witness.auditWriterCheckpoint(this.writer);
    if (held === undefined) return { size: 0 };
    const checkpoint = parseCheckpoint(parseNote(held.checkpoint).text);
    const edge = new LogEdge(
      held.size,
      held.edge.map((hash) => Buffer.from(hash, 'base64')),
    );
    if (checkpoint.origin !== this.origin || checkpoint.size !== held.size || !edge.root().equals(checkpoint.root)) {
      throw new DmrError(
        'AUDIT_CHECKPOINT_INVALID',
        `CentOps' last checkpoint of ${this.writer} does not fit its edge`,
        {
          hint: 'the writer starts a log under a new name instead',
        },
      );
    }
    this.#edge = edge;
    this.#base = edge.clone();
    this.#since = [];
    const at = held.at === undefined ? undefined : new Date(held.at);
    return { size: held.size, ...(at === undefined || Number.isNaN(at.getTime()) ? {} : { at }) };
  }

  /**
   * The records a previous run stored after the witnessed checkpoint (read
   * back from the stream at restart, audit/tail.ts) join the log before
   * anything new: the next checkpoint covers them.
   */
  adopt(leaves: readonly Buffer[]): void {
    for (const leaf of leaves) this.stored(leaf);
  }

  /** A record is stored: its leaf joins the log. Hot path: one hash amortised. */
  stored(leaf: Buffer): void {
    this.#edge.append(leaf);
    this.#since.push(leaf);
    if (this.#edge.size - this.#base.size >= this.#everyRecords && this.#running === undefined) {
      setImmediate(() => void this.checkpoint());
    }
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.checkpoint(), this.#everyMs);
    this.#timer.unref();
  }

  /** Stops the timer and makes one last checkpoint of what is stored. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
    await this.checkpoint();
  }

  /** Signs, gets witnessed and publishes a checkpoint of the records stored so far (one at a time). */
  checkpoint(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    if (this.#edge.size === this.#base.size) return Promise.resolve();
    this.#running = this.#checkpoint()
      .then(() => {
        this.#failures = 0;
      })
      .catch((error: unknown) => {
        this.#failures += 1;
        // Once, then every 60th failure: CentOps may be down for a while; the records are stored meanwhile.
        if (this.#failures === 1 || this.#failures % 60 === 0) {
          this.#options.logger?.warn(
            {
              err: error,
              writer: this.writer,
              size: this.#edge.size,
              witnessed: this.#base.size,
              failures: this.#failures,
            },
            'audit checkpoint not witnessed; retrying',
          );
        }
      })
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  #currentSigner(): { signer: NoteSigner; x5c: string[] } {
    const identity = this.#options.identity();
    if (this.#signer?.pem !== identity.privateKeyPem) {
      const loaded = loadSigningIdentity(identity.certificateChainPem, identity.privateKeyPem, 'the node');
      const signer = new NoteSigner(nodeKeyName(this.#options.trustDomain, this.#options.nodeId), loaded.key);
      this.#signer = { pem: identity.privateKeyPem, signer, x5c: loaded.x5c };
    }
    return this.#signer;
  }

  async #checkpoint(): Promise<void> {
    const edge = this.#edge.clone();
    const base = this.#base;
    const { signer, x5c } = this.#currentSigner();
    const note = signer.sign(formatCheckpoint({ origin: this.origin, size: edge.size, root: edge.root() }));
    const proof = consistencyProof(
      base.size,
      edge.size,
      edgeAndLeavesHasher(base, this.#since.slice(0, edge.size - base.size)),
    );
    const answer = await this.#options.witness.submitAuditCheckpoint({
      checkpoint: note,
      proof: proof.map((hash) => hash.toString('base64')),
      edge: edge.nodes.map((hash) => hash.toString('base64')),
    });
    this.#since = this.#since.slice(edge.size - base.size);
    this.#base = edge;
    this.witnessed += 1;
    const published: PublishedCheckpoint = {
      v: 1,
      writer: this.writer,
      checkpoint: answer.checkpoint,
      signers: {
        [signer.name]: x5c,
        [witnessKeyName(this.#options.trustDomain)]: answer.witness,
      },
      at: (this.#options.now ?? (() => new Date()))().toISOString(),
    };
    await this.#options.publish(Buffer.from(JSON.stringify(published), 'utf8'));
  }
}
