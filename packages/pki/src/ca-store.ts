/**
 * The CA directory on disk: file names, the JSON state file and the lock that
 * serialises changes to it. Certificates and keys are plain PEM files so
 * OpenSSL, RabbitMQ and operators can read them directly; everything DMR
 * needs to remember (issued serials, revocations, the CRL counter) is in
 * `ca.json`, replaced atomically on every change.
 */
import { open, readFile, realpath, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DmrError, isValidTrustDomain } from '@dmr/core';
import { writeFileAtomic } from './atomic-file.js';
import { isRevocationReason, type RevocationReason } from './crl.js';
import { isCertificateKind, isOperatorRole, type CertificateKind, type OperatorRole } from './profiles.js';

export const CA_FILES = {
  rootCertificate: 'root.crt',
  rootKey: 'root.key',
  intermediateCertificate: 'intermediate.crt',
  intermediateKey: 'intermediate.key',
  state: 'ca.json',
  /** Optional: several roots during a rollover. Without it the trust bundle is root.crt. */
  trustBundle: 'trust-bundle.pem',
  lock: 'ca.lock',
} as const;

/** The files `init` creates; a directory holding any of them already holds (part of) a CA. */
export const CA_REQUIRED_FILES = [
  CA_FILES.rootCertificate,
  CA_FILES.rootKey,
  CA_FILES.intermediateCertificate,
  CA_FILES.intermediateKey,
  CA_FILES.state,
] as const;

export interface Revocation {
  at: Date;
  reason: RevocationReason;
}

export interface IssuedRecord {
  serial: string;
  kind: CertificateKind;
  id: string;
  /** Operators only. */
  role?: OperatorRole;
  notBefore: Date;
  notAfter: Date;
  fingerprintSha256: string;
  dns: string[];
  ips: string[];
  issuedAt: Date;
  revoked?: Revocation;
}

export interface CaState {
  trustDomain: string;
  createdAt: Date;
  /** The number of the last CRL produced; the next one gets crlNumber + 1. */
  crlNumber: number;
  issued: IssuedRecord[];
}

const STATE_FORMAT = 'dmr-ca/1';

function invalidState(dir: string, problem: string): DmrError {
  return new DmrError('CA_INVALID', `${join(dir, CA_FILES.state)} ${problem}`, {
    details: { dir },
    hint: 'restore ca.json from a backup; without it the CA cannot know what it has issued',
  });
}

function toDate(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function stringList(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined;
}

function parseRecord(raw: unknown): IssuedRecord | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const record = raw as Record<string, unknown>;
  const { serial, kind, id, fingerprintSha256 } = record;
  const notBefore = toDate(record.notBefore);
  const notAfter = toDate(record.notAfter);
  const issuedAt = toDate(record.issuedAt);
  const dns = stringList(record.dns ?? []);
  const ips = stringList(record.ips ?? []);
  if (
    typeof serial !== 'string' ||
    typeof kind !== 'string' ||
    !isCertificateKind(kind) ||
    typeof id !== 'string' ||
    typeof fingerprintSha256 !== 'string' ||
    !notBefore ||
    !notAfter ||
    !issuedAt ||
    !dns ||
    !ips
  ) {
    return undefined;
  }
  const parsed: IssuedRecord = { serial, kind, id, notBefore, notAfter, fingerprintSha256, dns, ips, issuedAt };
  if (typeof record.role === 'string' && isOperatorRole(record.role)) parsed.role = record.role;
  if (record.revoked !== undefined) {
    const revoked = record.revoked as Record<string, unknown>;
    const at = toDate(revoked.at);
    if (!at || typeof revoked.reason !== 'string' || !isRevocationReason(revoked.reason)) return undefined;
    parsed.revoked = { at, reason: revoked.reason };
  }
  return parsed;
}

export async function readState(dir: string): Promise<CaState> {
  let text: string;
  try {
    text = await readFile(join(dir, CA_FILES.state), 'utf8');
  } catch (error) {
    throw invalidState(dir, `cannot be read: ${error instanceof Error ? error.message : String(error)}`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw invalidState(dir, 'is not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || raw.format !== STATE_FORMAT) {
    throw invalidState(dir, `is not a ${STATE_FORMAT} state file`);
  }
  const createdAt = toDate(raw.createdAt);
  if (typeof raw.trustDomain !== 'string' || !isValidTrustDomain(raw.trustDomain)) {
    throw invalidState(dir, 'has no valid trustDomain');
  }
  if (!createdAt) throw invalidState(dir, 'has no valid createdAt');
  if (typeof raw.crlNumber !== 'number' || !Number.isSafeInteger(raw.crlNumber) || raw.crlNumber < 0) {
    throw invalidState(dir, 'has no valid crlNumber');
  }
  if (!Array.isArray(raw.issued)) throw invalidState(dir, 'has no issued list');
  const issued = raw.issued.map((item: unknown, index: number) => {
    const record = parseRecord(item);
    if (!record) throw invalidState(dir, `has a malformed issued record at index ${index}`);
    return record;
  });
  return { trustDomain: raw.trustDomain, createdAt, crlNumber: raw.crlNumber, issued };
}

export function serialiseState(state: CaState): string {
  return `${JSON.stringify({ format: STATE_FORMAT, ...state }, null, 2)}\n`;
}

export async function writeState(dir: string, state: CaState): Promise<void> {
  await writeFileAtomic(join(dir, CA_FILES.state), serialiseState(state), { mode: 0o600, overwrite: true });
}

// Changes within one process queue here, so concurrent issue() calls on the
// same CA (as a test harness makes) never race on ca.json.
const inProcess = new Map<string, Promise<unknown>>();

const LOCK_WAIT_MS = 30_000;
const STALE_UNNAMED_LOCK_MS = 5_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !(error instanceof Error && 'code' in error && error.code === 'ESRCH');
  }
}

/**
 * Holds ca.lock (created exclusively, holding our pid) while `fn` runs, so
 * two `dmr pki` processes cannot both read-modify-write ca.json. A lock left
 * by a process that no longer exists is taken over.
 */
async function withFileLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(dir, CA_FILES.lock);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (error) {
      if (!(error instanceof Error && 'code' in error && error.code === 'EEXIST')) throw error;
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      const known = Number.isInteger(holder) && holder > 0;
      // A lock without a readable pid is one whose writer died between create and write, once it is not brand new.
      const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now());
      if ((known && !processAlive(holder)) || (!known && age > STALE_UNNAMED_LOCK_MS)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new DmrError('CA_INVALID', `the CA in ${dir} is locked by process ${holder || 'unknown'}`, {
          details: { dir, pid: holder },
          hint: `wait for that process to finish; if it is gone, remove ${path}`,
        });
      }
      await sleep(25);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(path).catch(() => undefined);
  }
}

/** Runs `fn` with exclusive access to the CA state in `dir`, within this process and across processes. */
export async function withCaLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const key = await realpath(dir);
  const previous = inProcess.get(key) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(() => withFileLock(key, fn));
  const tail = run.catch(() => undefined);
  inProcess.set(key, tail);
  try {
    return await run;
  } finally {
    if (inProcess.get(key) === tail) inProcess.delete(key);
  }
}
