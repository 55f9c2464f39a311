/**
 * The server's own configuration file (`centops.yaml`, written by
 * `dmr centops init`) and the operator CLI's config file (`admin.yaml`,
 * kubeconfig-like). Relative paths in either are relative to the file, so a
 * CentOps directory can be moved as a whole.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { DmrError, assertValidTrustDomain, parseDuration } from '@dmr/core';

export const CONFIG_FILE = 'centops.yaml';
export const ADMIN_CONFIG_FILE = 'admin.yaml';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface CentOpsConfig {
  /** The directory of centops.yaml (set by loadConfig): CentOps refuses to serve while it holds a key not its own. */
  home?: string;
  trustDomain: string;
  /** The API: mutual TLS only. */
  listen: ListenAddress;
  /** Enrolment and the public PKI documents: server-authenticated TLS, no client certificate (ADR 0004). */
  enrolListen: ListenAddress;
  /**
   * `GET /metrics` and `GET /healthz` in plain HTTP for Prometheus; absent: not served. Counts and
   * latencies only, no ids or secrets; bind it to loopback or a monitoring network (decision 0033).
   */
  metricsListen?: ListenAddress;
  /** Store location: a SQLite path or a postgres:// URL. */
  database: string;
  /** CentOps' issuing CA directory (no root key). */
  caDir: string;
  /** The API server's certificate chain and key. */
  tls: { certificate: string; key: string };
  /** The configuration-signing key and its chain (the feed signs node documents with it). */
  signer: { certificate: string; key: string };
  /** Log level for fastify's pino logger. */
  logLevel: string;
  /** Rate limits; absent fields take the defaults (docs: packages/centops/README.md "Limits"). */
  limits?: CentOpsLimits;
  /**
   * How long a renewed certificate's predecessor stays valid (a duration,
   * default 1h); then it is revoked with reason superseded.
   */
  renewalOverlap?: string;
  /**
   * How long after expiry a client or node may still renew with a proof of
   * its certificate's key (a duration, default 7d).
   */
  renewalGrace?: string;
}

export interface CentOpsLimits {
  /** Requests per source address per minute on the enrolment listener (default 60). */
  enrolRequestsPerMinute?: number;
  /** Certificates per id per hour through renewal (default 10). */
  renewalsPerHour?: number;
}

function positiveInteger(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new DmrError('INVALID_ARGUMENT', `${what} must be a whole number of at least 1`, { details: { value } });
  }
  return value;
}

function limitsOf(raw: unknown, file: string): CentOpsLimits | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new DmrError('INVALID_ARGUMENT', `${file}: "limits" must be a mapping`);
  const record = raw as Record<string, unknown>;
  const unknown = Object.keys(record).filter((key) => key !== 'enrolRequestsPerMinute' && key !== 'renewalsPerHour');
  if (unknown.length > 0) {
    throw new DmrError('INVALID_ARGUMENT', `${file}: limits.${unknown[0] ?? ''} is not a known limit`, {
      hint: 'known: enrolRequestsPerMinute, renewalsPerHour',
    });
  }
  const enrol = positiveInteger(record.enrolRequestsPerMinute, `${file}: limits.enrolRequestsPerMinute`);
  const renewals = positiveInteger(record.renewalsPerHour, `${file}: limits.renewalsPerHour`);
  return {
    ...(enrol === undefined ? {} : { enrolRequestsPerMinute: enrol }),
    ...(renewals === undefined ? {} : { renewalsPerHour: renewals }),
  };
}

export function parseListen(text: string, what = '--listen'): ListenAddress {
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/i.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DmrError('INVALID_ARGUMENT', `${what} "${text}" is not HOST:PORT`, { hint: 'e.g. 127.0.0.1:8443' });
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

export function formatListen(address: ListenAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function field(raw: Record<string, unknown>, key: string, file: string): string {
  const value = raw[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new DmrError('INVALID_ARGUMENT', `${file}: "${key}" is missing or not a string`, {
      hint: 'the file is written by `dmr centops init`; compare it with a fresh one',
    });
  }
  return value;
}

function pathPair(
  raw: Record<string, unknown>,
  key: string,
  file: string,
  base: string,
): { certificate: string; key: string } {
  const value = raw[key];
  if (typeof value !== 'object' || value === null) {
    throw new DmrError('INVALID_ARGUMENT', `${file}: "${key}" must hold certificate and key paths`);
  }
  const pair = value as Record<string, unknown>;
  return { certificate: at(base, field(pair, 'certificate', file)), key: at(base, field(pair, 'key', file)) };
}

function at(base: string, path: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}

/** A database location is a path relative to the file unless it is a URL or `:memory:`. */
function databaseAt(base: string, location: string): string {
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(location) || location === ':memory:') return location;
  if (location.startsWith('sqlite:')) return `sqlite:${at(base, location.slice('sqlite:'.length))}`;
  return at(base, location);
}

export async function loadConfig(file: string): Promise<CentOpsConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new DmrError('NOT_FOUND', `cannot read the CentOps config ${file}`, {
      details: { file },
      hint: 'create a CentOps directory with: dmr centops init --dir DIR --dev',
      cause: error,
    });
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new DmrError('INVALID_ARGUMENT', `${file} is not valid YAML`, { cause: error });
  }
  if (typeof raw !== 'object' || raw === null) throw new DmrError('INVALID_ARGUMENT', `${file} is not a mapping`);
  const record = raw as Record<string, unknown>;
  const base = dirname(resolve(file));
  const trustDomain = field(record, 'trustDomain', file);
  assertValidTrustDomain(trustDomain);
  return {
    home: base,
    trustDomain,
    listen: parseListen(field(record, 'listen', file), `${file}: listen`),
    enrolListen: parseListen(field(record, 'enrolListen', file), `${file}: enrolListen`),
    database: databaseAt(base, field(record, 'database', file)),
    caDir: at(base, field(record, 'caDir', file)),
    tls: pathPair(record, 'tls', file, base),
    signer: pathPair(record, 'signer', file, base),
    logLevel: typeof record.logLevel === 'string' ? record.logLevel : 'info',
    ...(record.metricsListen === undefined
      ? {}
      : { metricsListen: parseListen(field(record, 'metricsListen', file), `${file}: metricsListen`) }),
    ...overlapAndLimits(record, file),
  };
}

function overlapAndLimits(
  record: Record<string, unknown>,
  file: string,
): Pick<CentOpsConfig, 'limits' | 'renewalOverlap' | 'renewalGrace'> {
  const limits = limitsOf(record.limits, file);
  const overlap = record.renewalOverlap;
  if (overlap !== undefined) {
    if (typeof overlap !== 'string')
      throw new DmrError('INVALID_ARGUMENT', `${file}: renewalOverlap must be a duration such as 1h`);
    parseDuration(overlap);
  }
  const grace = record.renewalGrace;
  if (grace !== undefined) {
    if (typeof grace !== 'string')
      throw new DmrError('INVALID_ARGUMENT', `${file}: renewalGrace must be a duration such as 7d`);
    parseDuration(grace);
  }
  return {
    ...(limits === undefined ? {} : { limits }),
    ...(typeof overlap === 'string' ? { renewalOverlap: overlap } : {}),
    ...(typeof grace === 'string' ? { renewalGrace: grace } : {}),
  };
}

/** The YAML `init` writes; paths stay as given (relative ones relative to the file). */
export function renderConfig(config: CentOpsConfig): string {
  return stringify({
    trustDomain: config.trustDomain,
    listen: formatListen(config.listen),
    enrolListen: formatListen(config.enrolListen),
    ...(config.metricsListen === undefined ? {} : { metricsListen: formatListen(config.metricsListen) }),
    database: config.database,
    caDir: config.caDir,
    tls: config.tls,
    signer: config.signer,
    logLevel: config.logLevel,
    ...(config.limits === undefined ? {} : { limits: config.limits }),
    ...(config.renewalOverlap === undefined ? {} : { renewalOverlap: config.renewalOverlap }),
    ...(config.renewalGrace === undefined ? {} : { renewalGrace: config.renewalGrace }),
  });
}

/** The operator CLI's config: where CentOps is and which certificate to present. */
export interface ClientConfig {
  endpoint: string;
  enrolEndpoint: string;
  /** Roots to verify CentOps' server certificate with. */
  caBundle: string;
  clientCertificate: string;
  clientKey: string;
}

export function renderClientConfig(config: ClientConfig): string {
  return stringify({ apiVersion: 'dmr/v1', kind: 'CentOpsClientConfig', ...config });
}

export async function loadClientConfig(file: string): Promise<ClientConfig> {
  const raw = parse(await readFile(file, 'utf8')) as Record<string, unknown> | null;
  if (typeof raw !== 'object' || raw === null) throw new DmrError('INVALID_ARGUMENT', `${file} is not a mapping`);
  const base = dirname(resolve(file));
  return {
    endpoint: field(raw, 'endpoint', file),
    enrolEndpoint: field(raw, 'enrolEndpoint', file),
    caBundle: at(base, field(raw, 'caBundle', file)),
    clientCertificate: at(base, field(raw, 'clientCertificate', file)),
    clientKey: at(base, field(raw, 'clientKey', file)),
  };
}
