/**
 * `dmr ctl`'s view of the one CentOps client (@dmr/centops-client): mutual
 * TLS with the operator's certificate from the config file; the server is verified
 * against the config's CA bundle only (never the system roots: CentOps is
 * a private PKI), and pinned to CentOps' SPIFFE id
 * `spiffe://<td>/centops/api`: a node certificate of the same CA posing as
 * CentOps gets neither the operator's requests nor a bootstrap token
 * (SERVER_IDENTITY_MISMATCH). The trust domain is the config's
 * `trustDomain`, else the operator certificate's, else the one the CA
 * bundle's root names. API errors come back as the DmrError the server threw
 * (same code, message, details, hint), so `dmr ctl` reports them exactly
 * like local errors; network failures become CENTOPS_UNREACHABLE with a
 * hint that names the endpoint and the config file.
 */
import { CentOpsClient as SharedCentOpsClient, type CentOpsAnswer, type HttpMethod } from '@dmr/centops-client';
import { DmrError, isDmrError, isErrorCode } from '@dmr/core';
import { isServerIdentityMismatch, trustDomainFromCertificate, trustDomainFromTrustBundle } from '@dmr/pki';
import { readConfigFile, type CtlConfig } from './config.js';

export interface ApiResponse<T> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  text: string;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  /** A version (sent as the ETag `"N"`) or a raw If-Match value. */
  ifMatch?: number | string;
  /** Hand back the body as bytes (a Buffer), e.g. the policy bundle. */
  binary?: boolean;
}

export interface ClientOptions {
  baseUrl: string;
  ca: string;
  /** The mesh's trust domain: the server must present `spiffe://<trustDomain>/centops/api`. */
  trustDomain: string;
  cert?: string;
  key?: string;
  /** Named in error hints. */
  configFile?: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * The shared client's failure with what to check: its CENTOPS_UNREACHABLE
 * carries the socket's error as its cause, whose code (TLS and socket error
 * codes of Node) says which hint fits.
 */
function networkError(thrown: unknown, url: string, configFile: string | undefined): DmrError {
  const error = (
    isDmrError(thrown) && thrown.code === 'CENTOPS_UNREACHABLE' && thrown.cause instanceof Error ? thrown.cause : thrown
  ) as Error & { code?: string };
  if (isServerIdentityMismatch(error)) {
    // Not an outage: something else of the mesh answered. Say so, with the config that sent us there.
    const where = configFile === undefined ? '' : ` (${configFile})`;
    return new DmrError(error.code, error.message, {
      details: { ...error.details, url },
      hint: [error.hint, `check endpoint, enrolEndpoint and trustDomain${where}`].filter(Boolean).join('; '),
      cause: error,
    });
  }
  const code = error.code ?? '';
  const where = configFile === undefined ? '' : ` (endpoint in ${configFile})`;
  let hint: string;
  if (code === 'ECONNREFUSED') hint = `is \`dmr centops serve\` running and listening at ${new URL(url).host}${where}?`;
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    hint = `the host name does not resolve; check the endpoint${where}`;
  else if (code === 'ETIMEDOUT' || code === 'ECONNABORTED')
    hint = `no answer in time; check the endpoint${where} and firewalls`;
  else if (/CERT|SELF_SIGNED|VERIFY|ERR_TLS_CERT_ALTNAME/.test(code)) {
    hint = `CentOps' server certificate does not verify against caBundle${where}; is it this CentOps' CA?`;
  } else if (code === 'ECONNRESET' || code === 'EPIPE' || /SSL|TLS|alert/i.test(`${code} ${error.message}`)) {
    hint =
      'the TLS handshake was refused: is the client certificate issued by this CentOps, unexpired and not revoked?';
  } else hint = `check the endpoint${where}`;
  return new DmrError('CENTOPS_UNREACHABLE', `cannot reach CentOps at ${new URL(url).origin}: ${error.message}`, {
    details: { url, code: code === '' ? null : code },
    hint,
    cause: error,
  });
}

/**
 * The trust domain CentOps is pinned to: the config's `trustDomain`, else the
 * one in the client certificate, else the one the CA bundle's root names.
 */
export function ctlTrustDomain(config: CtlConfig, caPem: string, certificatePem?: string): string {
  const found =
    config.trustDomain ??
    (certificatePem === undefined ? undefined : trustDomainFromCertificate(certificatePem)) ??
    trustDomainFromTrustBundle(caPem);
  if (found === undefined) {
    throw new DmrError('CLI_CONFIG_INVALID', `${config.file}: the trust domain of CentOps cannot be told`, {
      details: { file: config.file, field: 'trustDomain' },
      hint: 'add trustDomain: <the mesh trust domain, e.g. dmr.example.ee> to the CLI config',
    });
  }
  return found;
}

/** The server's `{error:{code,message,details,hint?}}` as a DmrError with the same code. */
function apiError(status: number, json: unknown, text: string, method: string, path: string): DmrError {
  const error = (
    json as { error?: { code?: unknown; message?: unknown; details?: unknown; hint?: unknown } } | undefined
  )?.error;
  if (error !== undefined && typeof error.code === 'string' && isErrorCode(error.code)) {
    const details =
      typeof error.details === 'object' && error.details !== null ? (error.details as Record<string, unknown>) : {};
    let hint = typeof error.hint === 'string' ? error.hint : undefined;
    if (hint === undefined && error.code === 'FORBIDDEN') {
      hint = 'the certificate in the CLI config lacks the role for this (viewer reads; operator and admin write)';
    }
    if (hint === undefined && error.code === 'PRECONDITION_FAILED') {
      hint = 'someone changed it since you read it: get it again and retry with the new version';
    }
    return new DmrError(error.code, typeof error.message === 'string' ? error.message : `HTTP ${status}`, {
      details: { ...details, status },
      hint,
    });
  }
  return new DmrError('INTERNAL', `${method} ${path} answered HTTP ${status}: ${text.slice(0, 200)}`, {
    details: { status },
  });
}

export class CentOpsClient {
  readonly baseUrl: string;
  readonly #options: ClientOptions;
  readonly #client: SharedCentOpsClient;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#options = options;
    this.#client = new SharedCentOpsClient({
      apiUrl: this.baseUrl,
      caPem: options.ca,
      trustDomain: options.trustDomain,
      ...(options.cert === undefined || options.key === undefined
        ? {}
        : { identity: { certPem: options.cert, keyPem: options.key } }),
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
  }

  /** The mTLS API client of a config; the operator certificate is required. */
  static async forApi(config: CtlConfig, credentials?: { cert: string; key: string }): Promise<CentOpsClient> {
    const ca = await readConfigFile(config, 'caBundle');
    const cert = credentials?.cert ?? (await readConfigFile(config, 'clientCertificate'));
    const key = credentials?.key ?? (await readConfigFile(config, 'clientKey'));
    const trustDomain = ctlTrustDomain(config, ca, cert);
    return new CentOpsClient({ baseUrl: config.endpoint, ca, cert, key, trustDomain, configFile: config.file });
  }

  /** The enrolment listener: server-auth TLS, no client certificate (the caller has none yet). */
  static async forEnrolment(config: CtlConfig, enrolEndpoint?: string): Promise<CentOpsClient> {
    const baseUrl = enrolEndpoint ?? config.enrolEndpoint;
    if (baseUrl === undefined) {
      throw new DmrError('CLI_CONFIG_INVALID', `${config.file}: enrolEndpoint is required for enrolment`, {
        details: { file: config.file, field: 'enrolEndpoint' },
        hint: 'add enrolEndpoint: https://host:port (the API port + 1 by default) or pass --enrol-endpoint',
      });
    }
    const ca = await readConfigFile(config, 'caBundle');
    return new CentOpsClient({ baseUrl, ca, trustDomain: ctlTrustDomain(config, ca), configFile: config.file });
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (options.ifMatch !== undefined) {
      headers['if-match'] = typeof options.ifMatch === 'number' ? `"${options.ifMatch}"` : options.ifMatch;
    }
    const url = `${this.baseUrl}${path}`;
    let answer: CentOpsAnswer;
    try {
      answer = await this.#client.request(method as HttpMethod, path, {
        headers,
        ...(options.query === undefined ? {} : { query: options.query }),
        ...(options.body === undefined ? {} : { body: options.body }),
      });
    } catch (error) {
      throw networkError(error, url, this.#options.configFile);
    }
    const text = answer.body.toString('utf8');
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    const { status } = answer;
    if (status >= 400) throw apiError(status, json, text, method, path);
    if (options.binary === true) return { status, headers: answer.headers, body: answer.body as T, text: '' };
    // PEM endpoints answer text; JSON ones an object. The caller's T says which it expects.
    return { status, headers: answer.headers, body: (json ?? text) as T, text };
  }

  async get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return (await this.request<T>('GET', path, { query })).body;
  }

  async post<T>(path: string, body: unknown, query?: RequestOptions['query']): Promise<T> {
    return (await this.request<T>('POST', path, { body, query })).body;
  }
}
