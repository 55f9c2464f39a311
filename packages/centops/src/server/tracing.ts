/**
 * A SERVER span per CentOps API request (decision 0032), exported over
 * OTLP when `dmr centops serve` runs with OTEL_EXPORTER_OTLP_ENDPOINT set;
 * without a tracer no hook is installed at all. The span is named by the
 * route pattern (`GET /v1/nodes/:id`), never the URL with its ids, and
 * carries the method, the route, the listener and the status: no query,
 * body, header value or principal.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { startServerSpan, type ServerSpan, type Tracing } from '@dmr/core';

export function traceRequests(app: FastifyInstance, tracer: Tracing['tracer'], listener: 'api' | 'enrol'): void {
  if (tracer === undefined) return;
  const spans = new WeakMap<FastifyRequest, ServerSpan>();
  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const span = startServerSpan(tracer, `${request.method} ${route}`, request.headers, {
      'http.request.method': request.method,
      'http.route': route,
      'dmr.listener': listener,
    });
    if (span !== undefined) spans.set(request, span);
  });
  app.addHook('onResponse', async (request, reply) => {
    spans.get(request)?.end(reply.statusCode);
  });
  // A caller that hangs up (a feed stream ended by the node) ends its span too.
  app.addHook('onRequestAbort', async (request) => {
    spans.get(request)?.end(499);
  });
}
