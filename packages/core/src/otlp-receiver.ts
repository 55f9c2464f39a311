/**
 * Test only: a small OTLP/HTTP traces receiver on 127.0.0.1. It takes what
 * the real exporter (`@opentelemetry/exporter-trace-otlp-http`, OTLP JSON)
 * posts to `/v1/traces`, decodes it into flat spans and answers 200 as a
 * collector does. docs/decisions/0032-traces.md says why the suite checks
 * traces against this instead of a real Jaeger.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Undefined for a root span. */
  parentSpanId: string | undefined;
  name: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer (0 unspecified). */
  kind: number;
  /** The resource's `service.name`. */
  service: string;
  /** Resource and span attributes, flattened to strings (span attributes win). */
  attributes: Record<string, string>;
  events: string[];
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  status: number;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpKeyValue {
  key: string;
  value?: OtlpValue;
}
interface OtlpSpan {
  kind?: number;
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  attributes?: OtlpKeyValue[];
  events?: Array<{ name?: string }>;
  status?: { code?: number };
}
interface OtlpRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  }>;
}

function flatten(attributes: OtlpKeyValue[] | undefined): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const { key, value } of attributes ?? []) {
    const scalar = value?.stringValue ?? value?.intValue ?? value?.boolValue ?? value?.doubleValue;
    if (scalar !== undefined) flat[key] = String(scalar);
  }
  return flat;
}

async function body(request: IncomingMessage): Promise<string> {
  let text = '';
  request.setEncoding('utf8');
  for await (const chunk of request) text += chunk as string;
  return text;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Requests that were not OTLP JSON traces (the test fails on any). */
  readonly refused: string[] = [];
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((request, response) => {
      void (async () => {
        const text = await body(request);
        const type = request.headers['content-type'] ?? '';
        if (request.method !== 'POST' || request.url !== '/v1/traces' || !/json/.test(type)) {
          this.refused.push(`${request.method ?? '?'} ${request.url ?? '?'} ${type}`);
          response.writeHead(404).end();
          return;
        }
        this.#take(JSON.parse(text) as OtlpRequest);
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      })().catch((error: unknown) => {
        this.refused.push(String(error));
        response.writeHead(400).end();
      });
    });
  }

  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    receiver.#server.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => receiver.#server.once('listening', resolve));
    return receiver;
  }

  /** The base URL to give an exporter (as OTEL_EXPORTER_OTLP_ENDPOINT). */
  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((span) => span.traceId === traceId);
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #take(request: OtlpRequest): void {
    for (const resourceSpans of request.resourceSpans ?? []) {
      const resource = flatten(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            traceId: span.traceId ?? '',
            spanId: span.spanId ?? '',
            parentSpanId: span.parentSpanId === undefined || span.parentSpanId === '' ? undefined : span.parentSpanId,
            name: span.name ?? '',
            kind: span.kind ?? 0,
            service: resource['service.name'] ?? '',
            attributes: { ...resource, ...flatten(span.attributes) },
            events: (span.events ?? []).map((event) => event.name ?? ''),
            status: span.status?.code ?? 0,
          });
        }
      }
    }
  }
}
