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
  const fast = fastEvaluator(policy as unknown, id);
  const evaluateSet = fast ?? ((input: unknown): unknown => policy.evaluate(input, id) as unknown);
  return {
    evaluate(input: unknown): PolicyResult {
      const resultSet = evaluateSet(input);
      const first = Array.isArray(resultSet) ? (resultSet[0] as { result?: unknown } | undefined) : undefined;
      return toPolicyResult(first?.result, where);
    },
  };
}

/** What fastEvaluator reads of opa-wasm's LoadedPolicy (1.10: public fields, set once by setData). */
interface LoadedPolicyFields {
  minorVersion: number;
  /** A WebAssembly.Memory (its type is not in this package's lib). */
  mem: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  dataAddr: number;
  dataHeapPtr: number;
  wasmInstance: { exports: { opa_eval: (...args: number[]) => number } };
}

function isLoadedPolicyFields(value: unknown): value is LoadedPolicyFields {
  if (typeof value !== 'object' || value === null) return false;
  const policy = value as Record<string, unknown>;
  const instance = policy.wasmInstance as { exports?: Record<string, unknown> } | undefined;
  return (
    typeof policy.minorVersion === 'number' &&
    policy.minorVersion >= 2 &&
    typeof (policy.mem as { grow?: unknown } | undefined)?.grow === 'function' &&
    (policy.mem as { buffer?: unknown }).buffer instanceof ArrayBuffer &&
    typeof policy.dataAddr === 'number' &&
    typeof policy.dataHeapPtr === 'number' &&
    typeof instance?.exports?.opa_eval === 'function'
  );
}

const WASM_PAGE_BYTES = 64 * 1024;

/**
 * The same call as opa-wasm's `evaluate` on its ABI 1.2 fast path
 * (`opa_eval`: input JSON in, result set JSON out, one call), without its
 * per-call garbage: it allocates a TextEncoder, a TextDecoder and two
 * memory views per decision and scans for the result's end byte by byte in
 * JS. Here the input is written straight into the module's memory through
 * one Buffer kept over it (renewed when the memory grows) and the result is
 * found with indexOf. Undefined (use opa-wasm's own path) for a module or
 * library version that does not offer it. The Rego and its data are the
 * same, so the decisions are too: `engine.integration.test.ts` and the
 * agreement test decide through this path.
 */
function fastEvaluator(policy: unknown, entrypoint: number): ((input: unknown) => unknown) | undefined {
  if (!isLoadedPolicyFields(policy)) return undefined;
  const { mem, dataAddr, dataHeapPtr } = policy;
  const opaEval = policy.wasmInstance.exports.opa_eval;
  let view = Buffer.from(mem.buffer);
  const current = (): Buffer => {
    if (view.buffer !== mem.buffer) view = Buffer.from(mem.buffer);
    return view;
  };
  return (input: unknown): unknown => {
    let inputLength = 0;
    // As opa-wasm: a falsy input is no input at all.
    if (input) {
      const text = JSON.stringify(input);
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      const room = dataHeapPtr + text.length * 3 - mem.buffer.byteLength;
      if (room > 0) mem.grow(Math.ceil(room / WASM_PAGE_BYTES));
      inputLength = current().write(text, dataHeapPtr, 'utf8');
    }
    const result = opaEval(
      0,
      entrypoint,
      dataAddr,
      inputLength === 0 ? 0 : dataHeapPtr,
      inputLength,
      dataHeapPtr + inputLength,
      0,
    );
    // The evaluation may have grown the memory (a new buffer).
    const memory = current();
    const end = memory.indexOf(0, result);
    return JSON.parse(memory.toString('utf8', result, end)) as unknown;
  };
}
