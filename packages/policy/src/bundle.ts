/**
 * A policy bundle in OPA's format, as DMR builds and consumes it:
 *
 *   /.manifest          {revision, roots, rego_version, metadata.dmr}
 *   /data.json          the data document (grants, limits)
 *   /<pkg>/*.rego       the Rego, unmodified, for a stock OPA sidecar
 *   /policy.wasm        the Wasm build of the decision entrypoint, for nodes
 *   /.signatures.json   OPA's JWT over every other file's digest
 *
 * The manifest deliberately has no `wasm` resolvers: `opa build -t wasm`
 * strips the entrypoint from the Rego and OPA builds without a Wasm runtime
 * (the static binary) then cannot serve the bundle. Nodes read policy.wasm
 * by name (metadata.dmr.wasm) instead.
 */
import { DmrError } from '@dmr/core';
import { DECISION_ENTRYPOINT } from './decision.js';
import { readTarGz, writeTarGz, type TarFile } from './tar.js';

export const MANIFEST_FILE = '/.manifest';
export const SIGNATURES_FILE = '/.signatures.json';
export const WASM_FILE = '/policy.wasm';

export interface BundleManifest {
  revision: string;
  roots: string[];
  rego_version?: number;
  metadata?: { dmr?: { entrypoint: string; wasm: string } };
}

/** A parsed bundle: not yet trusted. */
export interface PolicyBundle {
  /** Every file by its path ("/data.json"), in archive order. */
  files: ReadonlyMap<string, Buffer>;
  manifest: BundleManifest;
  revision: string;
}

export type BundleCheck = 'format' | 'signature' | 'chain' | 'signer' | 'revoked' | 'digest' | 'revision';

export function bundleInvalid(check: BundleCheck, message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('POLICY_BUNDLE_INVALID', `policy bundle refused (${check}): ${message}`, {
    details: { check, ...details },
  });
}

/**
 * Revisions are decimal integers (CentOps counts them up), compared as
 * numbers so that "10" is newer than "9"; anything else could not be ordered
 * and a node must be able to refuse an older bundle.
 */
export function compareRevisions(a: string, b: string): number {
  const left = BigInt(a);
  const right = BigInt(b);
  return left < right ? -1 : left > right ? 1 : 0;
}

export function isRevision(value: unknown): value is string {
  return typeof value === 'string' && /^(0|[1-9][0-9]{0,30})$/.test(value);
}

function parseManifest(data: Buffer | undefined): BundleManifest {
  if (data === undefined) throw bundleInvalid('format', 'no .manifest');
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    throw bundleInvalid('format', '.manifest is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bundleInvalid('format', '.manifest is not an object');
  }
  const manifest = value as Record<string, unknown>;
  if (!isRevision(manifest.revision)) {
    throw bundleInvalid('revision', `the revision ${JSON.stringify(manifest.revision)} is not a decimal integer`);
  }
  const roots = manifest.roots ?? [''];
  if (!Array.isArray(roots) || !roots.every((root) => typeof root === 'string')) {
    throw bundleInvalid('format', '.manifest roots must be strings');
  }
  return value as BundleManifest;
}

/** Parses a bundle archive; checks its shape only, not its signature (see verifyBundle). */
export function parseBundle(archive: Buffer): PolicyBundle {
  const files = new Map(readTarGz(archive).map((file) => [file.name, file.data] as const));
  const manifest = parseManifest(files.get(MANIFEST_FILE));
  return { files, manifest, revision: manifest.revision };
}

export function writeBundle(files: ReadonlyMap<string, Buffer>): Buffer {
  const entries: TarFile[] = [...files].map(([name, data]) => ({ name, data }));
  return writeTarGz(entries);
}

/** The Wasm module a node evaluates, and which entrypoint in it. */
export function wasmOf(bundle: PolicyBundle): { module: Buffer; entrypoint: string } {
  const meta = bundle.manifest.metadata?.dmr;
  const path = meta?.wasm ?? WASM_FILE;
  const module = bundle.files.get(path.startsWith('/') ? path : `/${path}`);
  if (module === undefined) throw bundleInvalid('format', `no ${path}: the bundle was not built for nodes`);
  return { module, entrypoint: meta?.entrypoint ?? DECISION_ENTRYPOINT };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isRecord(existing) && isRecord(value)) mergeInto(existing, value, `${path}/${key}`);
    else if (existing !== undefined) throw bundleInvalid('format', `data at ${path}/${key} is defined twice`);
    else target[key] = value;
  }
}

/** The data document: every data.json placed at its directory's path, as OPA does. */
export function dataOf(bundle: PolicyBundle): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [name, content] of bundle.files) {
    if (name !== '/data.json' && !name.endsWith('/data.json')) continue;
    let value: unknown;
    try {
      value = JSON.parse(content.toString('utf8'));
    } catch {
      throw bundleInvalid('format', `${name} is not JSON`);
    }
    if (!isRecord(value)) throw bundleInvalid('format', `${name} is not a JSON object`);
    const dirs = name.split('/').slice(1, -1);
    const wrapped = dirs.reduceRight<Record<string, unknown>>((inner, dir) => ({ [dir]: inner }), value);
    mergeInto(data, wrapped, '');
  }
  return data;
}
