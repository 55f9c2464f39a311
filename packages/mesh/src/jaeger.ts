/**
 * `dmr up --observability`: a Jaeger all-in-one (v2 `jaeger`, pinned
 * v1.75.0, decision 0032) beside the mesh, when it is installed. Jaeger is
 * never built here: `npm run setup:jaeger` builds it once with Go (108 min
 * under load here, ≈ 10 min on a quiet 2-core machine) and links it as
 * node_modules/.bin/jaeger; without it the mesh starts without traces and
 * says how to get them.
 *
 * Jaeger runs from a config of our own (`<mesh>/jaeger/jaeger.yaml`) so that
 * every port is a free loopback port, not Jaeger's fixed 4317/4318/16686
 * that a second mesh (or anything else) may hold: OTLP/HTTP in, the query
 * API and UI out, memory storage, its own metrics off.
 */
import { accessSync, constants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFilesAtomic } from '@dmr/pki';

export const JAEGER_VERSION = 'v1.75.0';

export const JAEGER_INSTALL_HINT =
  'install it with `npm run setup:jaeger` (builds the pinned Jaeger with Go once, cached in ~/.cache/dmr; several minutes on 2 cores), then run dmr up --observability again';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The `jaeger` binary: the repository's link (scripts/install-jaeger.sh), the cache, or the PATH; undefined when none. */
export function locateJaeger(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const repoLink = fileURLToPath(new URL('../../../node_modules/.bin/jaeger', import.meta.url));
  const cache = join(env.DMR_CACHE_DIR ?? join(env.HOME ?? '', '.cache', 'dmr'), `jaeger-${JAEGER_VERSION}`, 'jaeger');
  const onPath = (env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'jaeger'));
  return [env.DMR_JAEGER, repoLink, cache, ...onPath].find(
    (file): file is string => file !== undefined && file !== '' && executable(file),
  );
}

export interface JaegerPorts {
  /** OTLP/HTTP receiver (what every process exports to). */
  otlp: number;
  /** Query API and UI. */
  ui: number;
  /** Query gRPC (unused, but Jaeger opens it: given a free port too). */
  queryGrpc: number;
}

/** The all-in-one configuration with every listener on a chosen loopback port. */
export function jaegerConfig(ports: JaegerPorts): string {
  return `# Written by dmr up --observability (packages/mesh/src/jaeger.ts); rewritten on every start.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    grpc:
      endpoint: 127.0.0.1:${ports.queryGrpc}
    http:
      endpoint: 127.0.0.1:${ports.ui}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${ports.otlp}
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
}

export async function writeJaegerConfig(dir: string, ports: JaegerPorts): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'jaeger.yaml');
  await writeFilesAtomic([{ path: file, data: jaegerConfig(ports), mode: 0o644, overwrite: true }]);
  return file;
}

/** The environment of every process the mesh starts once Jaeger runs: the standard OTel variables. */
export function tracingEnv(otlpUrl: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl, OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' };
}
