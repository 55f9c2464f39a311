/**
 * The sidecar mode: an OPA server beside the node (pulling the same signed
 * bundle from CentOps) queried over loopback REST. Same contract as the
 * in-process engine; each decision's revision comes from OPA's provenance.
 */
import { DmrError } from '@dmr/core';
import { DECISION_ENTRYPOINT, inputInvalidDecision, toPolicyResult, type PolicyDecision } from './decision.js';
import type { PolicyDecider } from './engine.js';
import { isPolicyInput } from './input.js';

export interface RestPolicyEngineOptions {
  /** The OPA server, e.g. http://127.0.0.1:8181 (loopback: the sidecar has no TLS of its own). */
  url: string;
  entrypoint?: string;
  /** Abort a decision after this long (default 1000 ms): a hung sidecar must not hold messages forever. */
  timeoutMs?: number;
}

interface OpaResponse {
  result?: unknown;
  provenance?: { bundles?: Record<string, { revision?: unknown }> };
}

export class RestPolicyEngine implements PolicyDecider {
  readonly mode = 'rest' as const;
  readonly #endpoint: string;
  readonly #timeoutMs: number;
  #lastRevision: string | undefined;

  constructor(options: RestPolicyEngineOptions) {
    const base = options.url.replace(/\/+$/, '');
    this.#endpoint = `${base}/v1/data/${options.entrypoint ?? DECISION_ENTRYPOINT}?provenance=true`;
    this.#timeoutMs = options.timeoutMs ?? 1000;
  }

  /** The revision the sidecar reported with its last decision. */
  get activeRevision(): string | undefined {
    return this.#lastRevision;
  }

  async decide(input: unknown): Promise<PolicyDecision> {
    if (!isPolicyInput(input)) return inputInvalidDecision(this.#lastRevision);
    return this.decideRaw(input);
  }

  /** The sidecar's own answer with no TS validation in front (agreement test, tooling). */
  async decideRaw(input: unknown): Promise<PolicyDecision> {
    let response: Response;
    try {
      response = await fetch(this.#endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(input === undefined ? {} : { input }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      throw new DmrError(
        'POLICY_UNAVAILABLE',
        `the OPA sidecar at ${this.#endpoint} cannot be reached: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const text = await response.text();
    if (!response.ok) {
      throw new DmrError('POLICY_UNAVAILABLE', `the OPA sidecar answered ${response.status}: ${text.slice(0, 500)}`);
    }
    const body = JSON.parse(text) as OpaResponse;
    const revisions = Object.values(body.provenance?.bundles ?? {})
      .map((bundle) => bundle.revision)
      .filter((revision): revision is string => typeof revision === 'string');
    const revision = revisions.length === 1 ? revisions[0] : undefined;
    this.#lastRevision = revision;
    const result = toPolicyResult(body.result, 'the OPA sidecar');
    return { allow: result.allow, reasons: result.reasons, revision };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
