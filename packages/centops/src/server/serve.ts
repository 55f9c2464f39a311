/** `dmr centops serve`: run until SIGINT/SIGTERM, then drain and close. */
import { CONFIG_FILE, loadConfig, parseListen } from './config.js';
import { startServer, type CentOpsServer } from './app.js';
import { join } from 'node:path';
import { startTracing } from '@dmr/core';

export interface ServeOptions {
  dir?: string;
  config?: string;
  /** HOST:PORT for GET /metrics and /healthz (plain HTTP), over the file's `metricsListen`. */
  metricsListen?: string;
  /** Called once both listeners are up. */
  onListening?: (server: CentOpsServer) => void;
}

export async function serve(options: ServeOptions): Promise<void> {
  const file = options.config ?? join(options.dir ?? '.', CONFIG_FILE);
  const loaded = await loadConfig(file);
  const config =
    options.metricsListen === undefined
      ? loaded
      : { ...loaded, metricsListen: parseListen(options.metricsListen, '--metrics-listen') };
  // pino's JSON lines; request bodies (tokens, CSRs) are never logged, only method, URL and principal.
  // A span per request over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; off (the SDK not even loaded) otherwise.
  const tracing = await startTracing({
    serviceName: 'dmr-centops',
    attributes: { 'dmr.trust_domain': config.trustDomain },
  });
  const server = await startServer(config, { logger: { level: config.logLevel }, tracer: tracing.tracer });
  options.onListening?.(server);
  server.api.log.info(
    { api: server.apiUrl, enrol: server.enrolUrl, metrics: server.metricsUrl, trustDomain: config.trustDomain },
    'CentOps listening',
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      server.api.log.info({ signal }, 'shutting down');
      void server
        .close()
        .finally(() => tracing.shutdown())
        .then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
