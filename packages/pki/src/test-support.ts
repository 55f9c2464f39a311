/** Shared by the *.test.ts files of this package: temp dirs, openssl, error assertions. Not exported from index. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDmrError, type ErrorCode } from '@dmr/core';

export async function tempDir(prefix = 'dmr-pki-test-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Asserts that `promise` rejects with a DmrError of `code` (and a message matching `message`, if given). */
export async function rejectsWith(
  promise: Promise<unknown> | (() => Promise<unknown>),
  code: ErrorCode,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isDmrError(error), `expected a DmrError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (message) assert.match(error.message, message);
    return true;
  });
}

export function throwsWith(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isDmrError(error), `expected a DmrError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (message) assert.match(error.message, message);
    return true;
  });
}

export interface OpensslResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function openssl(args: string[], input?: string): OpensslResult {
  const result = spawnSync('openssl', args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * `openssl verify` of the certificate in file `certificate` against the roots in `caFile`, with
 * intermediates from `untrusted`, a CRL (checked for the leaf) and a purpose when given: OpenSSL's own
 * judgement of what DMR issued.
 */
export function opensslVerify(options: {
  caFile: string | undefined;
  certificate: string | undefined;
  untrusted?: string | undefined;
  crl?: string | undefined;
  purpose?: 'sslserver' | 'sslclient';
}): OpensslResult {
  return openssl([
    'verify',
    ...(options.purpose === undefined ? [] : ['-purpose', options.purpose]),
    ...(options.crl === undefined ? [] : ['-crl_check', '-CRLfile', options.crl]),
    '-CAfile',
    options.caFile ?? '',
    ...(options.untrusted === undefined ? [] : ['-untrusted', options.untrusted]),
    options.certificate ?? '',
  ]);
}

/** Writes `files` (name → content) into `dir` and returns their paths, for handing PEM to openssl. */
export async function writeAll(dir: string, files: Record<string, string>): Promise<Record<string, string>> {
  const paths: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    paths[name] = join(dir, name);
    await writeFile(paths[name], content);
  }
  return paths;
}

/** A CSR made by openssl, for shapes DMR's own createCsr refuses to make (weak keys, foreign SANs). */
export function opensslCsr(dir: string, keySpec: string[], subject: string, extensions: string[] = []): string {
  const result = openssl([
    'req',
    '-new',
    '-nodes',
    ...keySpec,
    '-keyout',
    join(dir, `k-${Math.random().toString(16).slice(2)}.key`),
    '-subj',
    subject,
    ...extensions.flatMap((extension) => ['-addext', extension]),
  ]);
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

/** Flips the last byte of the first PEM block: for a CSR that is inside the signature, so the structure still parses. */
export function tamperLastByte(pem: string): string {
  const match = /-----BEGIN ([A-Z ]+)-----([\s\S]+?)-----END \1-----/.exec(pem);
  assert.ok(match?.[1] && match[2]);
  const der = Buffer.from(match[2].replace(/\s+/g, ''), 'base64');
  der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01;
  const body = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${match[1]}-----\n${body.trimEnd()}\n-----END ${match[1]}-----\n`;
}
