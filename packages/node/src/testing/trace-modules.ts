/**
 * `node --import <this file>`: records every module URL the process
 * resolves, one per line, in the file named by DMR_TRACE_MODULES_FILE. The
 * router-modules test runs a real router process under it to prove which
 * packages a router loads. One file serves both sides: on the main thread it
 * registers itself as the resolve hook; on the hooks thread it is that hook.
 */
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

interface ResolveResult {
  url: string;
}
type NextResolve = (specifier: string, context: unknown) => Promise<ResolveResult>;

let traceFile: string | undefined;

export function initialize(data: { file: string }): void {
  traceFile = data.file;
}

export async function resolve(specifier: string, context: unknown, nextResolve: NextResolve): Promise<ResolveResult> {
  const resolved = await nextResolve(specifier, context);
  if (traceFile !== undefined) appendFileSync(traceFile, `${resolved.url}\n`);
  return resolved;
}

const file = process.env.DMR_TRACE_MODULES_FILE;
if (isMainThread && file !== undefined) register(import.meta.url, { data: { file } });
