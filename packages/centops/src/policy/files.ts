/**
 * A policy set's content: files by relative path. `.rego` files are modules
 * (`*_test.rego` are Rego tests, run by `opa test` and left out of the
 * bundle); `data.json` files are data, placed at their directory's path as
 * OPA does (`dmr/data.json` → `data.dmr`). Nothing else is accepted, so
 * what CentOps checks is exactly what `opa` sees.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { DmrError, canonicalDigest } from '@dmr/core';
import type { PolicyFiles } from '@dmr/contract';

export type { PolicyFiles } from '@dmr/contract';

export const MAX_POLICY_FILES = 200;
export const MAX_POLICY_BYTES = 4 * 1024 * 1024;
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;

export interface FileProblem {
  path: string;
  message: string;
}

function problemsOf(files: unknown): FileProblem[] {
  if (typeof files !== 'object' || files === null || Array.isArray(files)) {
    return [{ path: 'files', message: 'must be an object of relative path → file content' }];
  }
  const entries = Object.entries(files as Record<string, unknown>);
  const problems: FileProblem[] = [];
  if (entries.length === 0) problems.push({ path: 'files', message: 'a policy set needs at least one Rego module' });
  if (entries.length > MAX_POLICY_FILES) {
    problems.push({ path: 'files', message: `at most ${MAX_POLICY_FILES} files` });
  }
  let bytes = 0;
  for (const [path, content] of entries) {
    const at = `files[${JSON.stringify(path)}]`;
    const segments = path.split('/');
    if (!segments.every((segment) => SEGMENT.test(segment) && segment !== '.' && segment !== '..')) {
      problems.push({ path: at, message: 'must be a relative path of a-z, A-Z, 0-9, "_", "-", "." segments' });
      continue;
    }
    const name = segments.at(-1) ?? '';
    if (!name.endsWith('.rego') && name !== 'data.json') {
      problems.push({ path: at, message: 'only .rego modules and data.json files belong in a policy set' });
    }
    if (typeof content !== 'string') {
      problems.push({ path: at, message: 'the content must be a string' });
      continue;
    }
    bytes += Buffer.byteLength(content, 'utf8');
    if (name === 'data.json') {
      try {
        const value: unknown = JSON.parse(content);
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          problems.push({ path: at, message: 'data.json must hold a JSON object' });
        }
      } catch (error) {
        problems.push({ path: at, message: `not JSON: ${error instanceof Error ? error.message : String(error)}` });
      }
    }
  }
  if (bytes > MAX_POLICY_BYTES) problems.push({ path: 'files', message: `at most ${MAX_POLICY_BYTES} bytes in all` });
  if (problems.length === 0 && !entries.some(([path]) => path.endsWith('.rego') && !path.endsWith('_test.rego'))) {
    problems.push({ path: 'files', message: 'a policy set needs at least one Rego module that is not a test' });
  }
  return problems;
}

/** The files, checked for shape (not for Rego: that is opa's job); VALIDATION_FAILED lists every problem. */
export function checkPolicyFiles(files: unknown): PolicyFiles {
  const problems = problemsOf(files);
  if (problems.length > 0) {
    throw new DmrError('VALIDATION_FAILED', `the policy set is malformed (${problems.length} problem(s))`, {
      details: { problems },
    });
  }
  // Sorted, so equal sets compare and digest equal.
  return Object.fromEntries(Object.entries(files as PolicyFiles).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** sha256 (hex) of the canonical JSON of the files: the policy set's content digest. */
export function policyDigest(files: PolicyFiles): string {
  return canonicalDigest(files);
}

/** Writes the files under `dir` (which must exist and be empty). */
export async function writePolicyFiles(dir: string, files: PolicyFiles): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(dir, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content, 'utf8');
  }
}

/** Reads a policy directory as a policy set: every .rego and data.json below it. */
export async function readPolicyDir(dir: string): Promise<PolicyFiles> {
  const files: PolicyFiles = {};
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch (error) {
    throw new DmrError('NOT_FOUND', `cannot read the policy directory ${dir}`, { cause: error });
  }
  for (const entry of entries) {
    if (!entry.isFile() || !(entry.name.endsWith('.rego') || entry.name === 'data.json')) continue;
    const full = join(entry.parentPath, entry.name);
    const path = relative(dir, full).split(sep).join('/');
    if (path.split('/').some((segment) => segment.startsWith('.'))) continue; // .git and the like
    files[path] = await readFile(full, 'utf8');
  }
  return checkPolicyFiles(files);
}
