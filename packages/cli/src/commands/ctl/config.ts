/**
 * The operator CLI's config file, like a kubeconfig: where CentOps is and
 * which certificate to present. `dmr centops init` writes one (admin.yaml):
 *
 *   apiVersion: dmr/v1
 *   kind: CentOpsClientConfig
 *   endpoint: https://127.0.0.1:8443        # the mTLS API
 *   enrolEndpoint: https://127.0.0.1:8444   # enrolment (server-auth TLS only)
 *   caBundle: ca/root.crt                   # roots to verify CentOps with
 *   clientCertificate: admin/admin.crt      # operator certificate (chain)
 *   clientKey: admin/admin.key
 *   trustDomain: dmr.example.ee             # optional; else read from the certificate
 *
 * Relative paths are relative to the config file, so a CentOps directory
 * can move. Found by `--config FILE`, then `DMR_CONFIG`, then
 * `~/.dmr/config.yaml`. Validated here, field by field, because a typo in a
 * path otherwise surfaces as a TLS error far from its cause.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { DmrError, isValidTrustDomain } from '@dmr/core';

export interface CtlConfig {
  /** The file it was read from (absolute), for messages. */
  file: string;
  endpoint: string;
  enrolEndpoint?: string;
  caBundle: string;
  clientCertificate?: string;
  clientKey?: string;
  trustDomain?: string;
}

const FIELDS = [
  'apiVersion',
  'kind',
  'endpoint',
  'enrolEndpoint',
  'caBundle',
  'clientCertificate',
  'clientKey',
  'trustDomain',
] as const;
type Field = (typeof FIELDS)[number];

export const DEFAULT_CONFIG_PATH = join('~', '.dmr', 'config.yaml');

/** `--config`, then DMR_CONFIG, then ~/.dmr/config.yaml; also says which of them chose it, for the hint. */
export function configLocation(option: string | undefined): { path: string; source: string } {
  if (option !== undefined && option !== '') return { path: resolve(option), source: '--config' };
  const env = process.env.DMR_CONFIG;
  if (env !== undefined && env !== '') return { path: resolve(env), source: 'DMR_CONFIG' };
  return { path: join(homedir(), '.dmr', 'config.yaml'), source: 'the default location' };
}

function invalid(file: string, field: string, message: string): DmrError {
  return new DmrError('CLI_CONFIG_INVALID', `${file}: ${field} ${message}`, {
    details: { file, field },
    hint: 'fix the field, or use the admin.yaml written by `dmr centops init` (--config FILE or DMR_CONFIG)',
  });
}

function httpsUrl(file: string, raw: Record<string, unknown>, field: Field): string | undefined {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(file, field, 'must be a string such as https://centops.example:8443');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(file, field, `"${value}" is not a URL (e.g. https://centops.example:8443)`);
  }
  // Mutual TLS is the only way in; an http:// endpoint would be a misconfiguration, never a fallback.
  if (url.protocol !== 'https:') throw invalid(file, field, `must be an https:// URL, not ${url.protocol}//`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw invalid(file, field, 'must be scheme, host and port only (the CLI adds /v1/…)');
  }
  return url.origin;
}

function path(file: string, raw: Record<string, unknown>, field: Field): string | undefined {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw invalid(file, field, 'must be a file path');
  return resolve(dirname(file), value.startsWith('~/') ? join(homedir(), value.slice(2)) : value);
}

/** Validates a parsed config document; exported for unit tests. */
export function parseCtlConfig(file: string, document: unknown): CtlConfig {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new DmrError('CLI_CONFIG_INVALID', `${file} is not a YAML mapping of config fields`, {
      details: { file },
      hint: `expected fields: ${FIELDS.join(', ')}`,
    });
  }
  const raw = document as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      throw invalid(file, key, `is not a known field (known: ${FIELDS.join(', ')})`);
    }
  }
  if (raw.apiVersion !== undefined && raw.apiVersion !== 'dmr/v1') {
    throw invalid(file, 'apiVersion', `must be dmr/v1, not ${JSON.stringify(raw.apiVersion)}`);
  }
  if (raw.kind !== undefined && raw.kind !== 'CentOpsClientConfig') {
    throw invalid(file, 'kind', `must be CentOpsClientConfig, not ${JSON.stringify(raw.kind)}`);
  }
  const endpoint = httpsUrl(file, raw, 'endpoint');
  if (endpoint === undefined) throw invalid(file, 'endpoint', 'is required (the CentOps API, https://host:port)');
  const caBundle = path(file, raw, 'caBundle');
  if (caBundle === undefined) throw invalid(file, 'caBundle', 'is required (the roots that CentOps chains to)');
  const clientCertificate = path(file, raw, 'clientCertificate');
  const clientKey = path(file, raw, 'clientKey');
  // Half a credential is always a mistake; say which half is missing.
  if (clientCertificate !== undefined && clientKey === undefined) {
    throw invalid(file, 'clientKey', 'is required when clientCertificate is given');
  }
  if (clientKey !== undefined && clientCertificate === undefined) {
    throw invalid(file, 'clientCertificate', 'is required when clientKey is given');
  }
  const trustDomain = raw.trustDomain;
  if (trustDomain !== undefined && (typeof trustDomain !== 'string' || !isValidTrustDomain(trustDomain))) {
    throw invalid(file, 'trustDomain', `${JSON.stringify(trustDomain)} is not a trust domain (e.g. dmr.example.ee)`);
  }
  return {
    file,
    endpoint,
    enrolEndpoint: httpsUrl(file, raw, 'enrolEndpoint'),
    caBundle,
    clientCertificate,
    clientKey,
    trustDomain,
  };
}

export async function loadCtlConfig(option: string | undefined): Promise<CtlConfig> {
  const { path: file, source } = configLocation(option);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const missing = error instanceof Error && 'code' in error && error.code === 'ENOENT';
    throw new DmrError(
      'CLI_CONFIG_INVALID',
      `cannot read the CLI config ${file} (from ${source})${missing ? ': no such file' : ''}`,
      {
        details: { file, source },
        cause: error,
        hint: `pass --config FILE or set DMR_CONFIG, or copy the admin.yaml of \`dmr centops init\` to ${DEFAULT_CONFIG_PATH}`,
      },
    );
  }
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    throw new DmrError('CLI_CONFIG_INVALID', `${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`, {
      details: { file },
      cause: error,
    });
  }
  return parseCtlConfig(file, document);
}

/** Reads a file the config names, blaming the field when it is missing. */
export async function readConfigFile(
  config: CtlConfig,
  field: 'caBundle' | 'clientCertificate' | 'clientKey',
): Promise<string> {
  const file = config[field];
  if (file === undefined) {
    throw invalid(config.file, field, 'is required for this command (the operator certificate and key)');
  }
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new DmrError('CLI_CONFIG_INVALID', `${config.file}: ${field} ${file} cannot be read`, {
      details: { file: config.file, field, path: file },
      cause: error,
      hint: 'relative paths are relative to the config file',
    });
  }
}
