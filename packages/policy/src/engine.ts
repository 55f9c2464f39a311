/**
 * The in-process engine: a verified bundle's Wasm, evaluated synchronously in
 * the node. Live reload without pauses: swap() builds and warms the new
 * instance completely, then replaces one reference. Evaluation reads that
 * reference once, so every decision is made by exactly one revision and none
 * waits for or fails because of a swap.
 */
import { createHash } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { compareRevisions, dataOf, parseBundle, wasmOf, bundleInvalid, type PolicyBundle } from './bundle.js';
import { inputInvalidDecision, type PolicyDecision } from './decision.js';
import { isPolicyInput } from './input.js';
import { verifyBundle, type BundleVerification, type VerifiedSigner } from './signing.js';
import { compilePolicy, type CompiledPolicy } from './wasm.js';

/** What both modes offer the router. */
export interface PolicyDecider {
  readonly mode: 'wasm' | 'rest';
  /** Revision of the active bundle, if one is known. */
  readonly activeRevision: string | undefined;
  decide(input: unknown): Promise<PolicyDecision>;
  close(): Promise<void>;
}

export interface PolicyEngineOptions {
  /**
   * How bundles are trusted. `'unverified'` is for local tooling only
   * (`dmr policy eval --bundle` on a bundle you just built): it must be
   * chosen explicitly so that a node cannot end up without verification.
   */
  verification: BundleVerification | 'unverified';
}

export interface SwapResult {
  revision: string;
  previous: string | undefined;
  /** False when the bundle was the active revision already (a re-send). */
  activated: boolean;
  signer?: VerifiedSigner;
}

interface Active {
  revision: string;
  policy: CompiledPolicy;
  /** Identity of the content, to tell a re-send from a conflicting bundle with the same revision. */
  contentKey: string;
}

function contentKey(bundle: PolicyBundle): string {
  const hash = createHash('sha256');
  for (const [name, data] of bundle.files) hash.update(`${name}\0${data.length}\0`).update(data);
  return hash.digest('hex');
}

export class PolicyEngine implements PolicyDecider {
  readonly mode = 'wasm' as const;
  readonly #verification: BundleVerification | 'unverified';
  #active: Active | undefined;
  /** Swaps run one at a time, so the revision check and the activation cannot interleave. */
  #swapping: Promise<unknown> = Promise.resolve();

  constructor(options: PolicyEngineOptions) {
    this.#verification = options.verification;
  }

  /** An engine with `archive` active. */
  static async load(archive: Buffer, options: PolicyEngineOptions): Promise<PolicyEngine> {
    const engine = new PolicyEngine(options);
    await engine.swap(archive);
    return engine;
  }

  get activeRevision(): string | undefined {
    return this.#active?.revision;
  }

  /**
   * Verifies, compiles and activates a bundle. Refuses (POLICY_BUNDLE_INVALID)
   * a tampered or wrongly signed bundle and any revision older than the
   * active one; the active bundle stays in force on every refusal.
   */
  swap(archive: Buffer): Promise<SwapResult> {
    const next = this.#swapping.then(() => this.#swap(archive));
    this.#swapping = next.catch(() => undefined);
    return next;
  }

  async #swap(archive: Buffer): Promise<SwapResult> {
    const bundle = parseBundle(archive);
    const signer = this.#verification === 'unverified' ? undefined : await verifyBundle(bundle, this.#verification);
    const previous = this.#active;
    // Checked before compiling (cheap refusal) and it cannot change meanwhile: swaps are serialised.
    if (previous !== undefined) {
      const order = compareRevisions(bundle.revision, previous.revision);
      if (order < 0) {
        throw bundleInvalid(
          'revision',
          `revision ${bundle.revision} is older than the active revision ${previous.revision}`,
          {
            revision: bundle.revision,
            active: previous.revision,
          },
        );
      }
      if (order === 0) {
        if (contentKey(bundle) !== previous.contentKey) {
          throw bundleInvalid('revision', `revision ${bundle.revision} is active with different content`, {
            revision: bundle.revision,
          });
        }
        return {
          revision: bundle.revision,
          previous: previous.revision,
          activated: false,
          ...(signer ? { signer } : {}),
        };
      }
    }
    const { module, entrypoint } = wasmOf(bundle);
    const policy = await compilePolicy(module, entrypoint, dataOf(bundle));
    // The first evaluation of a fresh instance is slower; pay it here, not on a message.
    policy.evaluate(undefined);
    this.#active = { revision: bundle.revision, policy, contentKey: contentKey(bundle) };
    return { revision: bundle.revision, previous: previous?.revision, activated: true, ...(signer ? { signer } : {}) };
  }

  /** Synchronous decision; invalid input is denied (INPUT_INVALID) without evaluating. */
  evaluate(input: unknown): PolicyDecision {
    const active = this.#requireActive();
    if (!isPolicyInput(input)) return inputInvalidDecision(active.revision);
    return this.evaluateRaw(input);
  }

  /**
   * The policy's own answer with no TS validation in front: what a sidecar or
   * `opa eval` would say. For the agreement test and tooling, not for traffic.
   */
  evaluateRaw(input: unknown): PolicyDecision {
    const active = this.#requireActive();
    const result = active.policy.evaluate(input);
    return { allow: result.allow, reasons: result.reasons, revision: active.revision };
  }

  decide(input: unknown): Promise<PolicyDecision> {
    try {
      return Promise.resolve(this.evaluate(input));
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  close(): Promise<void> {
    this.#active = undefined;
    return Promise.resolve();
  }

  #requireActive(): Active {
    const active = this.#active;
    if (active === undefined) {
      throw new DmrError('POLICY_UNAVAILABLE', 'no policy bundle is active', {
        hint: 'the node denies traffic until it has loaded a verified bundle',
      });
    }
    return active;
  }
}
