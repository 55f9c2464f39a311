/**
 * The run-config file of `dmr node run --config FILE` (docs/node-run.md):
 * where CentOps and the broker are, where the node keeps its state, how many
 * router processes to run. YAML or JSON, checked against a TypeBox schema;
 * every problem is listed at once (NODE_CONFIG_INVALID), because an operator
 * fixing one field per restart is slow. Relative paths are resolved against
 * the file's directory, so a config is valid wherever the node is started.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse } from 'yaml';
import { ManagementClient } from '@dmr/broker';
import { DmrError, ID_PATTERN_SOURCE } from '@dmr/core';
import { KEY_ALGORITHMS, type KeyAlgorithm } from '@dmr/pki';

const Path = Type.String({ minLength: 1 });
const HttpsUrl = Type.String({ pattern: '^https://[^\\s/]+(/.*)?$' });
const HttpUrl = Type.String({ pattern: '^https?://[^\\s/]+(/.*)?$' });
const Listen = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' });

export const RUN_CONFIG_SCHEMA = Type.Object(
  {
    node: Type.String({ pattern: ID_PATTERN_SOURCE }),
    dataDir: Path,
    centops: Type.Object(
      {
        url: HttpsUrl,
        enrolUrl: HttpsUrl,
        caFile: Path,
        tokenFile: Type.Optional(Path),
        /** The node's key type; must be its certificate profile's (default ecdsa-p256). */
        keyAlgorithm: Type.Optional(Type.Union(KEY_ALGORITHMS.map((name) => Type.Literal(name)))),
        trustDomain: Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' }),
      },
      { additionalProperties: false },
    ),
    broker: Type.Object(
      {
        amqpsUrl: Type.String({ pattern: '^amqps://[^\\s/]+(/.*)?$' }),
        serverName: Type.Optional(Type.String({ minLength: 1 })),
        management: Type.Object(
          { url: HttpUrl, username: Type.String({ minLength: 1 }), passwordFile: Path },
          { additionalProperties: false },
        ),
        tls: Type.Optional(
          Type.Object(
            {
              certFile: Path,
              keyFile: Path,
              caFile: Path,
              crlDir: Type.Optional(Path),
              reloadCommand: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
    routers: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 })),
    policy: Type.Optional(
      Type.Union([
        Type.Object({ mode: Type.Literal('wasm') }, { additionalProperties: false }),
        Type.Object({ mode: Type.Literal('rest'), url: HttpUrl }, { additionalProperties: false }),
      ]),
    ),
    metrics: Type.Optional(Type.Object({ listen: Listen }, { additionalProperties: false })),
    /** OTLP/HTTP collector for traces (e.g. Jaeger's :4318); absent: OTEL_EXPORTER_OTLP_ENDPOINT, else off. */
    tracing: Type.Optional(Type.Object({ endpoint: HttpUrl }, { additionalProperties: false })),
    feed: Type.Optional(
      Type.Object(
        {
          /** Prefer the SSE stream (default) or only long-poll. */
          stream: Type.Optional(Type.Boolean()),
          /** Long-poll wait in seconds (CentOps caps it at 60). */
          waitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 })),
          backoffInitialMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 600_000 })),
          backoffMaxMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 3_600_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    logLevel: Type.Optional(
      Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level))),
    ),
  },
  { additionalProperties: false },
);

export type RawRunConfig = Static<typeof RUN_CONFIG_SCHEMA>;

/** The run-config with defaults filled in and every path absolute. */
export interface RunConfig {
  file: string;
  node: string;
  dataDir: string;
  centops: {
    url: string;
    enrolUrl: string;
    caFile: string;
    tokenFile?: string;
    keyAlgorithm: KeyAlgorithm;
    trustDomain: string;
  };
  broker: {
    amqpsUrl: string;
    serverName?: string;
    management: { url: string; username: string; passwordFile: string };
    tls?: {
      certFile: string;
      keyFile: string;
      caFile: string;
      crlDir?: string;
      reloadCommand?: string[];
    };
  };
  routers: number;
  policy: { mode: 'wasm' } | { mode: 'rest'; url: string };
  metrics?: { listen: string };
  tracing?: { endpoint: string };
  feed: { stream: boolean; waitSeconds: number; backoffInitialMs: number; backoffMaxMs: number };
  logLevel: string;
}

const checker = TypeCompiler.Compile(RUN_CONFIG_SCHEMA);

/** Every problem of `value` as `path: message` (empty = valid), with the unknown field named. */
export function runConfigProblems(value: unknown): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const error of checker.Errors(value)) {
    const line = `${error.path || '/'}: ${error.message}`;
    // A union reports one error per branch; one line per path and message is enough.
    if (seen.has(line)) continue;
    seen.add(line);
    problems.push(line);
  }
  if (problems.length === 0 && typeof value === 'object' && value !== null) {
    const raw = value as RawRunConfig;
    const feed = raw.feed;
    if (feed?.backoffInitialMs !== undefined && feed.backoffMaxMs !== undefined) {
      if (feed.backoffInitialMs > feed.backoffMaxMs) problems.push('/feed/backoffMaxMs: must be ≥ backoffInitialMs');
    }
  }
  return problems;
}

/** Validates and normalises an already-parsed document; `file` anchors relative paths. */
export function parseRunConfig(value: unknown, file: string): RunConfig {
  const problems = runConfigProblems(value);
  if (problems.length > 0) {
    throw new DmrError('NODE_CONFIG_INVALID', `${file}: ${problems.length} problem(s): ${problems.join('; ')}`, {
      details: { file, problems },
      hint: 'see docs/node-run.md for every field',
    });
  }
  const raw = value as RawRunConfig;
  const base = dirname(resolve(file));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const tls = raw.broker.tls;
  return {
    file: resolve(file),
    node: raw.node,
    dataDir: path(raw.dataDir),
    centops: {
      url: raw.centops.url.replace(/\/+$/, ''),
      enrolUrl: raw.centops.enrolUrl.replace(/\/+$/, ''),
      caFile: path(raw.centops.caFile),
      ...(raw.centops.tokenFile === undefined ? {} : { tokenFile: path(raw.centops.tokenFile) }),
      keyAlgorithm: raw.centops.keyAlgorithm ?? 'ecdsa-p256',
      trustDomain: raw.centops.trustDomain,
    },
    broker: {
      amqpsUrl: raw.broker.amqpsUrl,
      ...(raw.broker.serverName === undefined ? {} : { serverName: raw.broker.serverName }),
      management: {
        url: raw.broker.management.url.replace(/\/+$/, ''),
        username: raw.broker.management.username,
        passwordFile: path(raw.broker.management.passwordFile),
      },
      ...(tls === undefined
        ? {}
        : {
            tls: {
              certFile: path(tls.certFile),
              keyFile: path(tls.keyFile),
              caFile: path(tls.caFile),
              ...(tls.crlDir === undefined ? {} : { crlDir: path(tls.crlDir) }),
              ...(tls.reloadCommand === undefined ? {} : { reloadCommand: tls.reloadCommand }),
            },
          }),
    },
    routers: raw.routers ?? 1,
    policy: raw.policy ?? { mode: 'wasm' },
    ...(raw.metrics === undefined ? {} : { metrics: raw.metrics }),
    ...(raw.tracing === undefined ? {} : { tracing: raw.tracing }),
    feed: {
      stream: raw.feed?.stream ?? true,
      waitSeconds: raw.feed?.waitSeconds ?? 30,
      backoffInitialMs: raw.feed?.backoffInitialMs ?? 500,
      backoffMaxMs: raw.feed?.backoffMaxMs ?? 30_000,
    },
    logLevel: raw.logLevel ?? 'info',
  };
}

/** Reads FILE (YAML; JSON is YAML too) and validates it. */
export async function loadRunConfig(file: string): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new DmrError('NODE_CONFIG_INVALID', `cannot read the run-config ${file}`, {
      details: { file },
      hint: 'pass --config FILE (see docs/node-run.md)',
      cause: error,
    });
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    throw new DmrError('NODE_CONFIG_INVALID', `${file} is not valid YAML or JSON: ${(error as Error).message}`, {
      details: { file },
      cause: error,
    });
  }
  return parseRunConfig(value, file);
}

/** The broker's management API with the run-config's admin credentials (the password is read from its file now). */
export async function openManagement(config: Pick<RunConfig, 'broker'>): Promise<ManagementClient> {
  const { url, username, passwordFile } = config.broker.management;
  let password: string;
  try {
    password = (await readFile(passwordFile, 'utf8')).trim();
  } catch (error) {
    throw new DmrError('NOT_FOUND', `cannot read the broker admin password file ${passwordFile}`, {
      hint: 'broker.management.passwordFile in the run-config must name a readable file',
      cause: error,
    });
  }
  return new ManagementClient({ baseUrl: url, username, password });
}
