/**
 * A typed wrapper around @open-policy-agent/opa-wasm, whose declarations are
 * `any` where it matters: the rest of the package sees only Buffer in,
 * PolicyResult out.
 */
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { toPolicyResult, type PolicyResult } from './decision.js';
import { bundleInvalid } from './bundle.js';

export interface CompiledPolicy {
  /** Synchronous: the evaluation runs in this thread's Wasm instance, no I/O. */
  evaluate(input: unknown): PolicyResult;
}

/** Instantiates the module and loads its data; resolves only when it can evaluate. */
export async function compilePolicy(
  module: Buffer,
  entrypoint: string,
  data: Record<string, unknown>,
): Promise<CompiledPolicy> {
  let policy: Awaited<ReturnType<typeof loadPolicy>>;
  try {
    policy = await loadPolicy(module);
  } catch (error) {
    throw bundleInvalid('format', `policy.wasm cannot be instantiated: ${(error as Error).message}`);
  }
  const entrypoints = policy.entrypoints as unknown;
  const id =
    typeof entrypoints === 'object' && entrypoints !== null
      ? (entrypoints as Record<string, unknown>)[entrypoint]
      : undefined;
  if (typeof id !== 'number') throw bundleInvalid('format', `policy.wasm has no entrypoint ${entrypoint}`);
  policy.setData(data);
  const where = `policy.wasm ${entrypoint}`;
  return {
    evaluate(input: unknown): PolicyResult {
      const resultSet = policy.evaluate(input, id) as unknown;
      const first = Array.isArray(resultSet) ? (resultSet[0] as { result?: unknown } | undefined) : undefined;
      return toPolicyResult(first?.result, where);
    },
  };
}
