/**
 * The OpenTelemetry SDK side of tracing.ts, imported only when tracing is
 * on: a tracer provider whose spans go to an OTLP/HTTP collector (JSON, as
 * `@opentelemetry/exporter-trace-otlp-http` sends it) through a batch
 * processor, and the process-wide W3C propagator and AsyncLocalStorage
 * context manager the instrumented code reads the active span through.
 */
import { context, propagation, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { Tracing, TracingOptions } from './tracing-types.js';

let registered = false;

/**
 * The process-wide propagator (W3C trace context) and context manager
 * (AsyncLocalStorage): what `trace.getActiveSpan()` and
 * `propagation.inject/extract` use. Idempotent.
 */
export function registerTraceContext(): void {
  if (registered) return;
  registered = true;
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

export interface ProviderOptions {
  serviceName: string;
  attributes?: Attributes;
  /** Where spans go; default the OTLP/HTTP exporter to `url`. */
  exporter?: SpanExporter;
  url?: string;
  /** Export each span as it ends instead of in batches (tests that wait for one span). */
  immediate?: boolean;
}

/** A tracer provider of its own (not the global one): a process can run several (tests run three nodes in one). */
export function tracerProvider(options: ProviderOptions): {
  tracer: Tracer;
  /** Exports every ended span now. */
  flush: () => Promise<void>;
  shutdown: () => Promise<void>;
} {
  registerTraceContext();
  const exporter = options.exporter ?? new OTLPTraceExporter(options.url === undefined ? {} : { url: options.url });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': options.serviceName, ...options.attributes }),
    spanProcessors: [options.immediate === true ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
  });
  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer('dmr'),
    flush: () => provider.forceFlush(),
    shutdown: () => (stopped ??= provider.shutdown()),
  };
}

/** startTracing's SDK half: one provider, also made the global one (for code that asks the API for a tracer). */
export function startExporting(options: TracingOptions & { url: string }): Tracing {
  const { tracer, shutdown } = tracerProvider({
    serviceName: options.serviceName,
    url: options.url,
    ...(options.attributes === undefined ? {} : { attributes: options.attributes }),
  });
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  return { tracer, endpoint: options.url, shutdown };
}
