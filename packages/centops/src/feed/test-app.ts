/**
 * A plain-HTTP Fastify app around feedRoutes for tests and the benchmark,
 * standing in for the CentOps server until it is ready: the principal comes
 * from an `x-test-principal` header (`node:<id>`, `client:<id>`,
 * `operator:<role>:<id>`) instead of a client certificate, and DmrErrors
 * become the API's JSON errors. Never used outside tests and benchmarks.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { isDmrError } from '@dmr/core';
import type { Store } from '../store/types.js';
import type { RevisionHub } from './hub.js';
import { asPrincipal } from './principal.js';
import { feedRoutes, type FeedOptions } from './routes.js';
import type { ConfigSigner } from './signing.js';
import { TRUST_DOMAIN } from './test-support.js';

export const TEST_PRINCIPAL_HEADER = 'x-test-principal';

export function principalHeader(text: string): Record<string, string> {
  return { [TEST_PRINCIPAL_HEADER]: text };
}

function parsePrincipal(header: string | string[] | undefined): unknown {
  if (typeof header !== 'string') return undefined;
  const [kind, a, b] = header.split(':');
  return kind === 'operator' ? { kind, role: a, id: b } : { kind, id: a };
}

export interface TestApp {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export async function startTestApp(
  store: Store,
  signer: ConfigSigner,
  hub: RevisionHub,
  extra: Partial<FeedOptions> = {},
): Promise<TestApp> {
  // forceCloseConnections: fetch (undici) may hold a connected socket that never carried a request; Node
  // keeps such sockets until headersTimeout, which would stall close() for a minute in tests.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  // null as never: compiles whether or not the server's FastifyRequest augmentation is present.
  app.decorateRequest('principal', null as never);
  app.addHook('onRequest', async (request) => {
    (request as unknown as { principal: unknown }).principal = asPrincipal(
      parsePrincipal(request.headers[TEST_PRINCIPAL_HEADER]),
    );
  });
  app.setErrorHandler((error, _request, reply) => {
    if (isDmrError(error)) return reply.code(error.httpStatus).send(error.toJSON());
    const validation = (error as { validation?: unknown }).validation !== undefined;
    const message = error instanceof Error ? error.message : String(error);
    return reply
      .code(validation ? 400 : 500)
      .send({ error: { code: validation ? 'INVALID_ARGUMENT' : 'INTERNAL', message, details: {} } });
  });
  await app.register(feedRoutes, { store, signer, hub, build: { trustDomain: TRUST_DOMAIN }, ...extra });
  await app.listen({ host: '127.0.0.1', port: 0 });

  const { port } = app.server.address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}
