/**
 * Traces (OpenTelemetry), off unless configured. Every DMR process (CentOps,
 * the agent, each router, the bridge) calls startTracing() once at start:
 * with no endpoint it returns `tracer: undefined` and loads nothing but
 * `@opentelemetry/api`; with one it loads the OpenTelemetry SDK
 * (tracing-sdk.ts, a dynamic import) and exports spans over OTLP/HTTP in
 * batches. Instrumented code takes the tracer as an option and does
 * nothing when it has none, so the per-message path pays nothing when
 * tracing is off (bench/README.md, "Traces").
 *
 * The endpoint: an explicit `endpoint` (a config file's), else the standard
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (a base: `/v1/traces` is appended), unless
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
 *
 * Context travels with a message in the W3C `traceparent`/`tracestate`
 * headers (docs/contract.md): amqpHeaderGetter/Setter adapt an AMQP header
 * table to the API's propagator, parseTraceparent is the one check of a
 * `traceparent` read from the wire, and traceIdOf reads a trace id from one
 * without any SDK (for audit records). Never payloads or secrets in spans.
 */
import { randomFillSync } from 'node:crypto';
import {
  context,
  isSpanContextValid,
  propagation,
  trace,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import { DmrError } from './errors.js';
import type { Tracing, TracingOptions } from './tracing-types.js';

export type { Tracing, TracingOptions } from './tracing-types.js';

export const TRACING_OFF: Tracing = { tracer: undefined, endpoint: undefined, shutdown: () => Promise.resolve() };

/** The OTLP/HTTP traces URL from an explicit endpoint or the standard environment, or undefined (tracing off). */
export function tracesEndpoint(endpoint: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return undefined;
  const explicit = endpoint?.trim();
  const full = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const [raw, source, isBase] =
    explicit !== undefined && explicit !== ''
      ? [explicit, 'the tracing endpoint', !/\/v1\/traces\/?$/.test(explicit)]
      : full !== undefined && full !== ''
        ? [full, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', false]
        : base !== undefined && base !== ''
          ? [base, 'OTEL_EXPORTER_OTLP_ENDPOINT', true]
          : [undefined, '', false];
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DmrError('INVALID_ARGUMENT', `${source} is not a URL: ${JSON.stringify(raw)}`, {
      hint: 'give the OTLP/HTTP endpoint as http(s)://host:port (for Jaeger: port 4318), or unset it to turn traces off',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DmrError('INVALID_ARGUMENT', `${source} must be http or https (OTLP/HTTP), not ${url.protocol}`, {
      hint: 'DMR exports traces over OTLP/HTTP only: give the collector’s HTTP port (for Jaeger: 4318)',
    });
  }
  if (url.username !== '' || url.password !== '') {
    throw new DmrError('INVALID_ARGUMENT', `${source} carries credentials in the URL`, {
      hint: 'pass collector credentials in OTEL_EXPORTER_OTLP_HEADERS, never in the URL (URLs end up in logs)',
    });
  }
  return isBase ? `${url.href.replace(/\/+$/, '')}/v1/traces` : url.href;
}

/**
 * Starts tracing for this process when an endpoint is configured: a global
 * tracer provider with a batching OTLP/HTTP exporter, the W3C trace context
 * propagator and an AsyncLocalStorage context manager. Off: TRACING_OFF,
 * and the SDK is never loaded.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const url = tracesEndpoint(options.endpoint, options.env);
  if (url === undefined) return TRACING_OFF;
  const sdk = await import('./tracing-sdk.js');
  return sdk.startExporting({ ...options, url });
}

/**
 * The headers of an AMQP message as a propagation carrier: own string values
 * only (the table is untrusted), and a `traceparent` only when
 * parseTraceparent accepts it (the propagator's own check takes versions
 * DMR does not).
 */
export const amqpHeaderGetter: TextMapGetter<Record<string, unknown> | undefined> = {
  keys: (carrier) => (carrier === undefined ? [] : Object.keys(carrier)),
  get: (carrier, key) => {
    if (carrier === undefined || !Object.prototype.hasOwnProperty.call(carrier, key)) return undefined;
    const value = carrier[key];
    if (key === 'traceparent') return validTraceparent(value);
    return typeof value === 'string' ? value : undefined;
  },
};

export const amqpHeaderSetter: TextMapSetter<Record<string, unknown>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** A W3C trace context `traceparent` (version 00), its fields as lowercase hex. */
export interface TraceParent {
  version: '00';
  traceId: string;
  spanId: string;
  flags: string;
}

// Version 00 exactly: 2-32-16-2 lowercase hex, nothing after (https://www.w3.org/TR/trace-context/#traceparent-header).
const TRACEPARENT_V00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ALL_ZERO = /^0+$/;

/**
 * The one parser of a `traceparent` read from the wire (router, SDK,
 * bridge): a W3C version 00 value with a trace id and a span id that are
 * not all zeros, or undefined. Anything else (another version, upper case,
 * extra fields, a non-string from an AMQP header table) is not a trace
 * context and is dropped, never forwarded or logged as one.
 */
export function parseTraceparent(value: unknown): TraceParent | undefined {
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  const match = TRACEPARENT_V00.exec(value);
  if (match === null) return undefined;
  const [, traceId, spanId, flags] = match as unknown as [string, string, string, string];
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(spanId)) return undefined;
  return { version: '00', traceId, spanId, flags };
}

/** `value` when it is a valid `traceparent` (parseTraceparent), else undefined. */
export function validTraceparent(value: unknown): string | undefined {
  return parseTraceparent(value) === undefined ? undefined : (value as string);
}

/** The trace id of a W3C `traceparent` value (parseTraceparent), or undefined. */
export function traceIdOf(traceparent: unknown): string | undefined {
  return parseTraceparent(traceparent)?.traceId;
}

/**
 * Runs `work` inside a span named `name` when there is a tracer (the span
 * is active for what `work` awaits, and ends with it; a throw marks it an
 * error by the error's code or class, never its message), else just runs it.
 */
export function inSpan<T>(
  tracer: Tracer | undefined,
  name: string,
  attributes: Attributes,
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (tracer === undefined) return work(undefined);
  return tracer.startActiveSpan(name, { attributes }, (span) =>
    work(span).then(
      (value) => {
        span.end();
        return value;
      },
      (error: unknown) => {
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorName(error) });
        span.end();
        throw error;
      },
    ),
  );
}

function errorName(error: unknown): string {
  if (error instanceof DmrError) return error.code;
  return error instanceof Error ? error.name : 'error';
}

export function formatTraceparent(parent: TraceParent): string {
  return `00-${parent.traceId}-${parent.spanId}-${parent.flags}`;
}

/** Bytes of one trace id and one span id. */
const IDS_BYTES = 24;
/**
 * Randomness for new traces, drawn 170 traces at a time: every message an
 * edge sends without a trace context starts one, and two `randomBytes`
 * calls per message were 3–4 % of a sending bridge's CPU (decision 0041).
 * The same CSPRNG (`randomFillSync`); a slice is used once.
 */
const idPool = Buffer.alloc(IDS_BYTES * 170);
let idPoolOffset = idPool.length;

/** A new trace, sampled (so every traced hop records it). */
export function newTraceparent(): string {
  if (idPoolOffset + IDS_BYTES > idPool.length) {
    randomFillSync(idPool);
    idPoolOffset = 0;
  }
  const start = idPoolOffset;
  idPoolOffset += IDS_BYTES;
  return formatTraceparent({
    version: '00',
    traceId: idPool.toString('hex', start, start + 16),
    spanId: idPool.toString('hex', start + 16, start + IDS_BYTES),
    flags: '01',
  });
}

/** What an edge puts on a message: always a valid `traceparent`, a `tracestate` only with the parent it came with. */
export interface EdgeTraceContext {
  traceparent: string;
  tracestate?: string;
  /** Where the traceparent came from. */
  source: 'given' | 'active-span' | 'new';
  /** A traceparent was given but malformed, and replaced (never passed on). */
  replaced: boolean;
}

const TRACESTATE = /^[\x20-\x7e]{1,512}$/;

/**
 * The trace context an edge (the SDK's send, the bridge) gives a message:
 * a valid `traceparent` given with it (parseTraceparent) is kept, a
 * malformed one is replaced with a new trace and its `tracestate` dropped
 * (W3C: a participant must not pass on a parent it cannot parse); with
 * none, the active OpenTelemetry span of the calling code continues (when
 * an application runs one; the API's global context, whichever copy of
 * `@opentelemetry/api` registered it), else a new trace starts.
 */
export function edgeTraceContext(
  given: { traceparent?: unknown; tracestate?: unknown },
  active: Context = context.active(),
): EdgeTraceContext {
  const present = given.traceparent !== undefined && given.traceparent !== null;
  const parsed = present ? parseTraceparent(given.traceparent) : undefined;
  if (parsed !== undefined) {
    const state = given.tracestate;
    return {
      traceparent: formatTraceparent(parsed),
      ...(typeof state === 'string' && TRACESTATE.test(state) ? { tracestate: state } : {}),
      source: 'given',
      replaced: false,
    };
  }
  const span = present ? undefined : trace.getSpanContext(active);
  if (span !== undefined && isSpanContextValid(span)) {
    const state = span.traceState?.serialize();
    return {
      traceparent: traceparentOf(span),
      ...(state !== undefined && state !== '' && TRACESTATE.test(state) ? { tracestate: state } : {}),
      source: 'active-span',
      replaced: false,
    };
  }
  return { traceparent: newTraceparent(), source: 'new', replaced: present };
}

/** The `traceparent` that makes a receiver continue from `span`. */
function traceparentOf(span: SpanContext): string {
  return formatTraceparent({
    version: '00',
    traceId: span.traceId,
    spanId: span.spanId,
    flags: (span.traceFlags & 0xff).toString(16).padStart(2, '0'),
  });
}

/** Plain string headers of an HTTP request as a propagation carrier. */
export const httpHeaderGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key];
    return Array.isArray(value) ? value[0] : value;
  },
};

/** A SERVER span of one HTTP request; end() is idempotent. */
export interface ServerSpan {
  /** The span's context, for work that should run inside it. */
  readonly context: Context;
  end(status: number | undefined, error?: unknown): void;
}

/**
 * Starts a SERVER span named `name` (the route pattern, never the URL with
 * its ids), the child of the request's `traceparent` when it is a valid W3C
 * one (the propagator ignores anything else: a new trace); undefined
 * without a tracer. For frameworks whose hooks start and end a request
 * (CentOps' fastify hooks).
 */
export function startServerSpan(
  tracer: Tracer | undefined,
  name: string,
  headers: Record<string, string | string[] | undefined>,
  attributes: Attributes,
): ServerSpan | undefined {
  if (tracer === undefined) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, headers, httpHeaderGetter);
  const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  let ended = false;
  return {
    context: trace.setSpan(parent, span),
    end: (status, error) => {
      if (ended) return;
      ended = true;
      if (status !== undefined) span.setAttribute('http.response.status_code', status);
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: errorName(error) });
      else if (status === undefined || status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    },
  };
}

/**
 * Runs an HTTP handler inside a SERVER span (startServerSpan); without a
 * tracer just runs it. `status()` gives the answer's status at the end.
 */
export function inServerSpan<T>(
  tracer: Tracer | undefined,
  name: string,
  headers: Record<string, string | string[] | undefined>,
  attributes: Attributes,
  work: () => Promise<T>,
  status: () => number,
): Promise<T> {
  const span = startServerSpan(tracer, name, headers, attributes);
  if (span === undefined) return work();
  return context.with(span.context, work).then(
    (value) => {
      span.end(status());
      return value;
    },
    (error: unknown) => {
      span.end(undefined, error);
      throw error;
    },
  );
}

/** A CLIENT span of one outgoing HTTP request; end() is idempotent. */
export interface ClientSpan {
  /** What to send as the request's `traceparent`: the receiver continues from this span. */
  readonly traceparent: string;
  /** `error`: a short outcome name (`timeout`, `network`), never a message. */
  end(status: number | undefined, error?: string): void;
}

/**
 * Starts a CLIENT span for one outgoing request (OpenTelemetry's HTTP
 * conventions: one per attempt), the child of `traceparent` when it is a
 * valid W3C one, else a new trace; undefined without a tracer (the caller
 * then sends `traceparent` on unchanged). An answer of 400 or more, or
 * none, marks it an error.
 */
export function startClientSpan(
  tracer: Tracer | undefined,
  name: string,
  traceparent: string | undefined,
  attributes: Attributes,
): ClientSpan | undefined {
  if (tracer === undefined) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, traceparent === undefined ? {} : { traceparent }, httpHeaderGetter);
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent);
  let ended = false;
  return {
    traceparent: traceparentOf(span.spanContext()),
    end: (status, error) => {
      if (ended) return;
      ended = true;
      if (status !== undefined) span.setAttribute('http.response.status_code', status);
      if (error !== undefined) span.setAttribute('error.type', error);
      if (error !== undefined || status === undefined || status >= 400) {
        span.setStatus({ code: SpanStatusCode.ERROR, ...(error === undefined ? {} : { message: error }) });
      }
      span.end();
    },
  };
}
