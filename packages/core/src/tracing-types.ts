/**
 * The shapes tracing.ts hands out and tracing-sdk.ts (loaded only when
 * tracing is on) builds: apart, so that the SDK side needs nothing from the
 * module that imports it.
 */
import type { Attributes, Tracer } from '@opentelemetry/api';

export interface TracingOptions {
  /** `service.name` of the process: `dmr-router`, `dmr-agent`, `dmr-centops`, `dmr-bridge`. */
  serviceName: string;
  /** OTLP/HTTP endpoint (a base URL like `http://127.0.0.1:4318`, or the full `/v1/traces` URL); overrides the environment. */
  endpoint?: string | undefined;
  /** Resource attributes beside `service.name` (e.g. `dmr.node`); ids only. */
  attributes?: Attributes;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  /** Undefined when tracing is off: instrumented code then skips its spans entirely. */
  readonly tracer: Tracer | undefined;
  /** The OTLP/HTTP traces URL spans go to, when on. */
  readonly endpoint: string | undefined;
  /** Exports what is still batched, then stops. Idempotent. */
  shutdown(): Promise<void>;
}
