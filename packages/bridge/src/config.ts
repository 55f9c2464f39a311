/**
 * The bridge's configuration (docs/bridge.md "Configuration"): a YAML or JSON
 * file, then `DMR_BRIDGE_*` environment variables on top (a container sets
 * one secret path or URL without rewriting the file). Every problem is listed
 * at once (BRIDGE_CONFIG_INVALID) and the TLS files are checked for
 * readability here, so a bad configuration fails at start, not at the first
 * message.
 *
 * Bearer tokens are secrets: `auth.tokensFile` names a file of them and
 * `DMR_BRIDGE_AUTH_TOKENS` may carry them, but neither the configuration
 * document nor BridgeConfig ever holds a token in the clear (see auth.ts).
 * A listener that is not on loopback without any authentication is refused
 * here (authProblems), and again by Bridge.start.
 */
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse } from 'yaml';
import { DmrError, ID_PATTERN_SOURCE } from '@dmr/core';
import { BearerTokens, isLoopbackHost, parseTokenFile, parseTokenList } from './auth.js';
import { displayUrl } from './delivery.js';
import type { ReportsTarget } from './reports.js';

/** The environment variable that may carry bearer tokens (comma-separated); never part of the document. */
export const TOKENS_VARIABLE = 'DMR_BRIDGE_AUTH_TOKENS';

const Path = Type.String({ minLength: 1 });
const Listen = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' });
const Ms = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });
const closed = { additionalProperties: false } as const;

export const BRIDGE_CONFIG_SCHEMA = Type.Object(
  {
    id: Type.String({ pattern: ID_PATTERN_SOURCE }),
    node: Type.String({ pattern: ID_PATTERN_SOURCE }),
    listen: Type.Optional(Listen),
    /** HTTPS for the bridge's own listener; with clientCaFile, callers must present a certificate (mutual TLS). */
    server: Type.Optional(
      Type.Object(
        { tls: Type.Object({ certFile: Path, keyFile: Path, clientCaFile: Type.Optional(Path) }, closed) },
        closed,
      ),
    ),
    /** Bearer tokens for POST /v1/messages and GET /metrics: a file of them (DMR_BRIDGE_AUTH_TOKENS adds more). */
    auth: Type.Optional(Type.Object({ tokensFile: Type.Optional(Path) }, closed)),
    broker: Type.Object(
      {
        url: Type.String({ pattern: '^amqps://[^\\s/]+/?$' }),
        serverName: Type.Optional(Type.String({ minLength: 1 })),
      },
      closed,
    ),
    tls: Type.Object({ certFile: Path, keyFile: Path, caFile: Path }, closed),
    endpoint: Type.Object(
      {
        url: Type.String({ pattern: '^https?://[^\\s/]+(/\\S*)?$' }),
        timeoutMs: Type.Optional(Ms(10, 600_000)),
        /** Extra request headers (e.g. an Authorization the endpoint expects); file only. */
        headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]+$' }), Type.String())),
      },
      closed,
    ),
    delivery: Type.Optional(
      Type.Object(
        {
          /** Messages delivered at a time (the consumer's prefetch, and the connections to the endpoint). */
          concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          initialDelayMs: Type.Optional(Ms(1, 3_600_000)),
          maxDelayMs: Type.Optional(Ms(1, 3_600_000)),
          /** Endpoint statuses that dead-letter at once (retrying cannot help). */
          deadLetterStatuses: Type.Optional(Type.Array(Type.Integer({ minimum: 400, maximum: 499 }))),
        },
        closed,
      ),
    ),
    send: Type.Optional(
      Type.Object(
        {
          /** Longest wait for the broker's confirm before answering 503. */
          confirmTimeoutMs: Type.Optional(Ms(10, 600_000)),
          /** How long a first message to a recipient waits for the node's refusal. */
          verdictWaitMs: Type.Optional(Ms(0, 60_000)),
          /** How long a recipient that was not refused is trusted without waiting again. */
          recipientCacheMs: Type.Optional(Ms(0, 86_400_000)),
          retryAfterSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
          /** POST /v1/messages waiting for the confirm at most; past it the bridge answers 503 + Retry-After. */
          maxInFlight: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
          /** Largest message body (the v1 JSON without recipientId) sent to DMR: the node's limit. */
          maxMessageBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 67_108_864 })),
        },
        closed,
      ),
    ),
    /** Where late delivery reports are POSTed (docs/bridge.md "Delivery reports"); without it they are logged. */
    reports: Type.Optional(
      Type.Object(
        {
          url: Type.String({ pattern: '^https?://[^\\s/]+(/\\S*)?$' }),
          timeoutMs: Type.Optional(Ms(10, 600_000)),
          maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
          initialDelayMs: Type.Optional(Ms(1, 3_600_000)),
          maxDelayMs: Type.Optional(Ms(1, 3_600_000)),
          /** Reports waiting or retrying at once; past it a report is dropped (logged, counted). */
          maxPending: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
          /** Extra request headers (e.g. an Authorization the receiver expects); file only. */
          headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]+$' }), Type.String())),
        },
        closed,
      ),
    ),
    centops: Type.Optional(Type.Object({ url: Type.String({ pattern: '^https://[^\\s/]+/?$' }) }, closed)),
    bodyLimitBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 67_108_864 })),
    logLevel: Type.Optional(
      Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level))),
    ),
  },
  closed,
);

export type RawBridgeConfig = Static<typeof BRIDGE_CONFIG_SCHEMA>;

/** The configuration with defaults filled in and paths absolute. */
export interface BridgeConfig {
  id: string;
  node: string;
  listen: { host: string; port: number };
  /** HTTPS for the listener (absent: plain HTTP); `clientCaFile`: mutual TLS. */
  server: { tls?: { certFile: string; keyFile: string; clientCaFile?: string } };
  /** `tokens`: bearer tokens (digests only; prints as a count); `tokensFile` where some came from. */
  auth: { tokens?: BearerTokens; tokensFile?: string };
  broker: { url: string; serverName?: string };
  tls: { certFile: string; keyFile: string; caFile: string };
  endpoint: { url: string; timeoutMs: number; headers: Record<string, string> };
  delivery: {
    concurrency: number;
    maxAttempts: number;
    initialDelayMs: number;
    maxDelayMs: number;
    deadLetterStatuses: number[];
  };
  send: {
    confirmTimeoutMs: number;
    verdictWaitMs: number;
    recipientCacheMs: number;
    retryAfterSeconds: number;
    maxInFlight: number;
    maxMessageBytes: number;
  };
  reports?: ReportsTarget;
  centops?: { url: string };
  bodyLimitBytes: number;
  logLevel: string;
}

type EnvKind = 'string' | 'integer' | 'list';

/** Environment variable → field. The table in docs/bridge.md is this list. */
export const ENVIRONMENT: ReadonlyArray<{ name: string; path: readonly string[]; kind: EnvKind }> = [
  { name: 'DMR_BRIDGE_ID', path: ['id'], kind: 'string' },
  { name: 'DMR_BRIDGE_NODE', path: ['node'], kind: 'string' },
  { name: 'DMR_BRIDGE_LISTEN', path: ['listen'], kind: 'string' },
  { name: 'DMR_BRIDGE_SERVER_TLS_CERT_FILE', path: ['server', 'tls', 'certFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_SERVER_TLS_KEY_FILE', path: ['server', 'tls', 'keyFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_SERVER_TLS_CLIENT_CA_FILE', path: ['server', 'tls', 'clientCaFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_AUTH_TOKENS_FILE', path: ['auth', 'tokensFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_BROKER_URL', path: ['broker', 'url'], kind: 'string' },
  { name: 'DMR_BRIDGE_BROKER_SERVER_NAME', path: ['broker', 'serverName'], kind: 'string' },
  { name: 'DMR_BRIDGE_TLS_CERT_FILE', path: ['tls', 'certFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_TLS_KEY_FILE', path: ['tls', 'keyFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_TLS_CA_FILE', path: ['tls', 'caFile'], kind: 'string' },
  { name: 'DMR_BRIDGE_ENDPOINT_URL', path: ['endpoint', 'url'], kind: 'string' },
  { name: 'DMR_BRIDGE_ENDPOINT_TIMEOUT_MS', path: ['endpoint', 'timeoutMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_DELIVERY_CONCURRENCY', path: ['delivery', 'concurrency'], kind: 'integer' },
  { name: 'DMR_BRIDGE_DELIVERY_MAX_ATTEMPTS', path: ['delivery', 'maxAttempts'], kind: 'integer' },
  { name: 'DMR_BRIDGE_DELIVERY_INITIAL_DELAY_MS', path: ['delivery', 'initialDelayMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_DELIVERY_MAX_DELAY_MS', path: ['delivery', 'maxDelayMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_DELIVERY_DEAD_LETTER_STATUSES', path: ['delivery', 'deadLetterStatuses'], kind: 'list' },
  { name: 'DMR_BRIDGE_SEND_CONFIRM_TIMEOUT_MS', path: ['send', 'confirmTimeoutMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_SEND_VERDICT_WAIT_MS', path: ['send', 'verdictWaitMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_SEND_RECIPIENT_CACHE_MS', path: ['send', 'recipientCacheMs'], kind: 'integer' },
  { name: 'DMR_BRIDGE_SEND_RETRY_AFTER_SECONDS', path: ['send', 'retryAfterSeconds'], kind: 'integer' },
  { name: 'DMR_BRIDGE_SEND_MAX_IN_FLIGHT', path: ['send', 'maxInFlight'], kind: 'integer' },
  { name: 'DMR_BRIDGE_SEND_MAX_MESSAGE_BYTES', path: ['send', 'maxMessageBytes'], kind: 'integer' },
  { name: 'DMR_BRIDGE_REPORTS_URL', path: ['reports', 'url'], kind: 'string' },
  { name: 'DMR_BRIDGE_REPORTS_MAX_ATTEMPTS', path: ['reports', 'maxAttempts'], kind: 'integer' },
  { name: 'DMR_BRIDGE_CENTOPS_URL', path: ['centops', 'url'], kind: 'string' },
  { name: 'DMR_BRIDGE_BODY_LIMIT_BYTES', path: ['bodyLimitBytes'], kind: 'integer' },
  { name: 'DMR_BRIDGE_LOG_LEVEL', path: ['logLevel'], kind: 'string' },
];

const checker = TypeCompiler.Compile(BRIDGE_CONFIG_SCHEMA);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Sets `path` in `target`, creating plain objects on the way (keys are ours, never untrusted). */
function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!isRecord(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

/**
 * Overlays the environment on a parsed file. A malformed number is kept as
 * the string so the schema names the variable's field; the variable itself is
 * added to the problem by the caller.
 */
export function applyEnvironment(
  base: unknown,
  env: Record<string, string | undefined>,
): { value: unknown; used: Map<string, string> } {
  const value: Record<string, unknown> = isRecord(base) ? structuredClone(base) : {};
  const used = new Map<string, string>();
  for (const variable of ENVIRONMENT) {
    const raw = env[variable.name];
    if (raw === undefined || raw === '') continue;
    used.set(`/${variable.path.join('/')}`, variable.name);
    let parsed: unknown = raw;
    if (variable.kind === 'integer' && /^-?\d+$/.test(raw.trim())) parsed = Number(raw.trim());
    if (variable.kind === 'list') {
      parsed = raw
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '')
        .map((item) => (/^\d+$/.test(item) ? Number(item) : item));
    }
    setPath(value, variable.path, parsed);
  }
  return { value, used };
}

/** Every problem as `path: message` (empty: valid); `used` names the environment variable behind a path. */
export function configProblems(value: unknown, used: Map<string, string> = new Map()): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const error of checker.Errors(value)) {
    const path = error.path === '' ? '/' : error.path;
    const variable =
      [...used].find(([prefix]) => path === prefix || path.startsWith(`${prefix}/`))?.[1] ??
      // A missing field: name the variable that could supply it.
      (error.value === undefined
        ? ENVIRONMENT.find((entry) => `/${entry.path.join('/')}`.startsWith(path))?.name
        : undefined);
    const message =
      error.message === 'Unexpected property'
        ? 'is not a known field'
        : error.value === undefined
          ? 'is required'
          : error.message;
    const line = `${path}${variable === undefined ? '' : ` (${variable})`}: ${message}`;
    if (seen.has(line)) continue;
    seen.add(line);
    problems.push(line);
  }
  if (problems.length === 0 && isRecord(value)) {
    const { delivery, reports } = value as RawBridgeConfig;
    if (delivery?.initialDelayMs !== undefined && delivery.maxDelayMs !== undefined) {
      if (delivery.initialDelayMs > delivery.maxDelayMs)
        problems.push('/delivery/maxDelayMs: must be ≥ initialDelayMs');
    }
    if (reports?.initialDelayMs !== undefined && reports.maxDelayMs !== undefined) {
      if (reports.initialDelayMs > reports.maxDelayMs) problems.push('/reports/maxDelayMs: must be ≥ initialDelayMs');
    }
  }
  return problems;
}

function invalid(source: string, problems: string[]): DmrError {
  return new DmrError('BRIDGE_CONFIG_INVALID', `${source}: ${problems.length} problem(s): ${problems.join('; ')}`, {
    details: { source, problems },
    hint: 'see docs/bridge.md for every field and environment variable',
  });
}

/**
 * What keeps a configuration from listening safely: a listener that is not
 * on loopback needs bearer tokens or mutual TLS (empty: fine).
 */
export function authProblems(config: Pick<BridgeConfig, 'listen' | 'server' | 'auth'>): string[] {
  const tokens = (config.auth.tokens?.count ?? 0) > 0;
  const mutualTls = config.server.tls?.clientCaFile !== undefined;
  if (tokens || mutualTls || isLoopbackHost(config.listen.host)) return [];
  return [
    `/listen: ${config.listen.host} is not a loopback address, and no authentication is configured: ` +
      `set auth.tokensFile or ${TOKENS_VARIABLE} (bearer tokens), or server.tls.clientCaFile (mutual TLS)`,
  ];
}

/**
 * Validates and normalises a document (file plus environment); `file`
 * anchors relative paths. `tokens`: the bearer tokens loaded from
 * auth.tokensFile and the environment (loadBridgeConfig does that).
 */
export function parseBridgeConfig(
  value: unknown,
  options: { file?: string; used?: Map<string, string>; tokens?: BearerTokens } = {},
): BridgeConfig {
  const source = options.file ?? 'environment';
  const problems = configProblems(value, options.used);
  if (problems.length > 0) throw invalid(source, problems);
  const raw = value as RawBridgeConfig;
  const base = options.file === undefined ? process.cwd() : dirname(resolve(options.file));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const listen = raw.listen ?? '127.0.0.1:8480';
  const colon = listen.lastIndexOf(':');
  return {
    id: raw.id,
    node: raw.node,
    listen: { host: listen.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(listen.slice(colon + 1)) },
    server:
      raw.server === undefined
        ? {}
        : {
            tls: {
              certFile: path(raw.server.tls.certFile),
              keyFile: path(raw.server.tls.keyFile),
              ...(raw.server.tls.clientCaFile === undefined ? {} : { clientCaFile: path(raw.server.tls.clientCaFile) }),
            },
          },
    auth: {
      ...(options.tokens === undefined ? {} : { tokens: options.tokens }),
      ...(raw.auth?.tokensFile === undefined ? {} : { tokensFile: path(raw.auth.tokensFile) }),
    },
    broker: {
      url: raw.broker.url.replace(/\/+$/, ''),
      ...(raw.broker.serverName === undefined ? {} : { serverName: raw.broker.serverName }),
    },
    tls: { certFile: path(raw.tls.certFile), keyFile: path(raw.tls.keyFile), caFile: path(raw.tls.caFile) },
    endpoint: {
      url: raw.endpoint.url,
      timeoutMs: raw.endpoint.timeoutMs ?? 10_000,
      headers: { ...raw.endpoint.headers },
    },
    delivery: {
      concurrency: raw.delivery?.concurrency ?? 32,
      maxAttempts: raw.delivery?.maxAttempts ?? 12,
      initialDelayMs: raw.delivery?.initialDelayMs ?? 500,
      maxDelayMs: raw.delivery?.maxDelayMs ?? 30_000,
      deadLetterStatuses: raw.delivery?.deadLetterStatuses ?? [400, 413, 415, 422],
    },
    send: {
      confirmTimeoutMs: raw.send?.confirmTimeoutMs ?? 10_000,
      verdictWaitMs: raw.send?.verdictWaitMs ?? 1_000,
      recipientCacheMs: raw.send?.recipientCacheMs ?? 300_000,
      retryAfterSeconds: raw.send?.retryAfterSeconds ?? 5,
      // ≈ 0.1 s of queueing at the 2,000+ confirms/s one node takes on 2 cores: a burst fits, an overload is refused.
      maxInFlight: raw.send?.maxInFlight ?? 256,
      // The nodes' default limit (CentOps DEFAULT_LIMITS.maxMessageBytes): larger is refused by the node anyway,
      // but after the 202 for a recipient already known; refusing here answers the caller while it can act.
      maxMessageBytes: raw.send?.maxMessageBytes ?? 1_048_576,
    },
    ...(raw.reports === undefined
      ? {}
      : {
          reports: {
            url: raw.reports.url,
            timeoutMs: raw.reports.timeoutMs ?? 5_000,
            maxAttempts: raw.reports.maxAttempts ?? 8,
            initialDelayMs: raw.reports.initialDelayMs ?? 500,
            maxDelayMs: raw.reports.maxDelayMs ?? 30_000,
            maxPending: raw.reports.maxPending ?? 10_000,
            headers: { ...raw.reports.headers },
          },
        }),
    ...(raw.centops === undefined ? {} : { centops: { url: raw.centops.url.replace(/\/+$/, '') } }),
    bodyLimitBytes: raw.bodyLimitBytes ?? 1_048_576,
    logLevel: raw.logLevel ?? 'info',
  };
}

/**
 * Loads the file (optional: the environment alone may configure the bridge),
 * overlays `DMR_BRIDGE_*`, validates, and checks that the TLS files can be read.
 */
export async function loadBridgeConfig(
  file: string | undefined,
  env: Record<string, string | undefined> = process.env,
): Promise<BridgeConfig> {
  let document: unknown = {};
  const source = file ?? 'environment';
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw invalid(file, [`cannot read the file: ${(error as NodeJS.ErrnoException).code ?? String(error)}`]);
    }
    try {
      document = parse(text) as unknown;
    } catch (error) {
      throw invalid(file, [`not YAML or JSON: ${(error as Error).message.split('\n')[0] ?? ''}`]);
    }
    if (document === null || document === undefined) document = {};
  }
  const { value, used } = applyEnvironment(document, env);
  const config = parseBridgeConfig(value, { ...(file === undefined ? {} : { file }), used });
  const problems: string[] = [];
  const files: Array<[string, string | undefined]> = [
    ...Object.entries(config.tls).map(([field, path]): [string, string] => [`/tls/${field}`, path]),
    ...Object.entries(config.server.tls ?? {}).map(([field, path]): [string, string] => [`/server/tls/${field}`, path]),
  ];
  for (const [field, path] of files) {
    try {
      if (path !== undefined) await access(path, constants.R_OK);
    } catch {
      problems.push(`${field}: cannot read ${path}`);
    }
  }
  const tokens = await loadTokens(config.auth.tokensFile, env[TOKENS_VARIABLE], problems);
  if (tokens !== undefined) config.auth.tokens = tokens;
  problems.push(...authProblems(config));
  if (problems.length > 0) throw invalid(source, problems);
  return config;
}

/** The bearer tokens of the tokens file and the environment variable; problems are appended, never quoting a token. */
async function loadTokens(
  tokensFile: string | undefined,
  variable: string | undefined,
  problems: string[],
): Promise<BearerTokens | undefined> {
  const tokens: string[] = [];
  const sources: string[] = [];
  if (tokensFile !== undefined) {
    let text: string | undefined;
    try {
      text = await readFile(tokensFile, 'utf8');
    } catch {
      problems.push(`/auth/tokensFile: cannot read ${tokensFile}`);
    }
    if (text !== undefined) {
      const parsed = parseTokenFile(text, tokensFile);
      problems.push(...parsed.problems.map((problem) => `/auth/tokensFile: ${problem}`));
      if (parsed.tokens.length === 0 && parsed.problems.length === 0) {
        problems.push(`/auth/tokensFile: ${tokensFile} holds no token`);
      }
      tokens.push(...parsed.tokens);
      sources.push(tokensFile);
    }
  }
  if (variable !== undefined && variable.trim() !== '') {
    const parsed = parseTokenList(variable, TOKENS_VARIABLE);
    problems.push(...parsed.problems);
    tokens.push(...parsed.tokens);
    sources.push(TOKENS_VARIABLE);
  }
  return tokens.length === 0 ? undefined : new BearerTokens(tokens, sources);
}

/**
 * The configuration as `dmr bridge check` prints it, in every output format:
 * every URL through displayUrl (userinfo and credential-like query values
 * replaced) and the values of the endpoint's and the reports target's extra
 * headers replaced (those headers exist to carry credentials). Bearer
 * tokens are digests already and print as a count.
 */
export function printableConfig(config: BridgeConfig): BridgeConfig {
  const redacted = (headers: Record<string, string>) =>
    Object.fromEntries(Object.keys(headers).map((name) => [name, '[redacted]']));
  return {
    ...config,
    endpoint: { ...config.endpoint, url: displayUrl(config.endpoint.url), headers: redacted(config.endpoint.headers) },
    ...(config.reports === undefined
      ? {}
      : {
          reports: {
            ...config.reports,
            url: displayUrl(config.reports.url),
            headers: redacted(config.reports.headers),
          },
        }),
    ...(config.centops === undefined ? {} : { centops: { url: displayUrl(config.centops.url) } }),
  };
}
