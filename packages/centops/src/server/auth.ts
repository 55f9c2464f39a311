/**
 * Who is calling: the principal comes from the verified TLS client
 * certificate and nothing else (no headers, no tokens). The contract the
 * route plugins (registry, PKI, the config feed) rely on:
 *
 *   request.principal            set before any handler runs on the mTLS listener
 *   requireRole('operator', …)   preHandler: an operator certificate with one of the roles
 *   requireNode()                preHandler: a node certificate (routes check the :id themselves
 *                                with sameNode, or use requireNode({ param: 'id' }))
 *   requireMeshPrincipal()       preHandler: any client, node or operator (public directory data)
 *
 * A certificate is accepted only if this CentOps issued it (its CA has the
 * serial, with the same fingerprint), neither the CA nor the store has it
 * revoked, and it was issued after its identity's not-before (revocation is
 * by identity, store/identities.ts); a client or node must also not be on
 * the denylist. These checks run on
 * every request, not once per TLS connection, so a revocation also stops a
 * kept-alive connection.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { DmrError } from '@dmr/core';
import {
  CA_FILES,
  normaliseSerial,
  subjectFromUris,
  type CertificateAuthority,
  type IssuedRecord,
  type OperatorRole,
} from '@dmr/pki';
import type { Store } from '../store/index.js';

export type Principal =
  { kind: 'operator'; id: string; role: OperatorRole } | { kind: 'node'; id: string } | { kind: 'client'; id: string };

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller (mTLS listener only; see auth.ts). */
    principal: Principal;
    /** The serial of the certificate the caller presented (lowercase hex). */
    certificateSerial: string;
  }
}

/** The audit "who": the principal's SPIFFE id. */
export function actorOf(principal: Principal, trustDomain: string): string {
  return `spiffe://${trustDomain}/${principal.kind}/${principal.id}`;
}

const unauthenticated = (message: string) =>
  new DmrError('UNAUTHENTICATED', message, {
    hint: 'present a valid, unrevoked certificate issued by this CentOps (enrol with a bootstrap token, or renew)',
  });

/**
 * The CA's record of what it issued (ca.json), re-read only when the file
 * changes: per-request lookups stay a Map access, and a revocation written
 * by any process that holds the CA is seen on the next request.
 */
export class IssuedIndex {
  readonly #ca: CertificateAuthority;
  #version = '';
  #bySerial = new Map<string, IssuedRecord>();
  #loading: Promise<void> | undefined;

  constructor(ca: CertificateAuthority) {
    this.#ca = ca;
  }

  async get(serial: string): Promise<IssuedRecord | undefined> {
    // ca.json is replaced by rename on every change, so the inode alone already tells a new version.
    const info = await stat(join(this.#ca.dir, CA_FILES.state));
    const version = `${info.ino}:${info.mtimeMs}:${info.size}`;
    if (version !== this.#version) {
      this.#loading ??= this.#ca
        .listIssued()
        .then((records) => {
          this.#bySerial = new Map(records.map((record) => [record.serial, record]));
          this.#version = version;
        })
        .finally(() => {
          this.#loading = undefined;
        });
      await this.#loading;
    }
    return this.#bySerial.get(serial);
  }
}

export interface AuthOptions {
  store: Store;
  trustDomain: string;
  issued: IssuedIndex;
}

/** The principal of a request, or UNAUTHENTICATED. */
export async function authenticate(request: FastifyRequest, options: AuthOptions): Promise<void> {
  const socket = request.raw.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) {
    throw unauthenticated('a client certificate is required');
  }
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) throw unauthenticated('a client certificate is required');
  const uris = (peer.subjectaltname ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
  const subject = subjectFromUris(uris, options.trustDomain);
  if (!subject || subject.kind === 'centops') {
    throw unauthenticated('the certificate names no operator, node or client of this trust domain');
  }
  const serial = normaliseSerial(peer.serialNumber);
  const fingerprint = peer.fingerprint256.replace(/:/g, '').toLowerCase();
  const record = await options.issued.get(serial);
  if (!record || record.fingerprintSha256 !== fingerprint) {
    throw unauthenticated(`certificate ${serial} was not issued by this CentOps`);
  }
  if (record.revoked) throw unauthenticated(`certificate ${serial} is revoked`);
  const stored = await options.store.getCertificate(serial).catch(() => undefined);
  if (stored?.revokedAt) throw unauthenticated(`certificate ${serial} is revoked`);
  // Revocation is by identity: a certificate issued before the id's not-before is refused whatever its serial.
  const notBefore = await options.store.identityNotBefore(subject.kind, subject.id);
  if (notBefore !== undefined && record.issuedAt.getTime() < Date.parse(notBefore)) {
    throw unauthenticated(`certificate ${serial} was issued before ${subject.kind} ${subject.id} was revoked`);
  }
  if (subject.kind === 'client' || subject.kind === 'node') {
    const denied = (await options.store.listDenylist()).some((entry) => entry.id === subject.id);
    if (denied) throw unauthenticated(`${subject.kind} ${subject.id} is on the denylist`);
  }
  request.principal = subject;
  request.certificateSerial = serial;
}

/** Installs authentication for every route of `app` (the mTLS listener). */
export function installAuth(app: FastifyInstance, options: AuthOptions): void {
  // Set per request by the onRequest hook; null only until then (fastify wants a value to shape requests by).
  app.decorateRequest('principal', null as never);
  app.decorateRequest('certificateSerial', '');
  app.addHook('onRequest', async (request) => {
    await authenticate(request, options);
    request.log = request.log.child({ principal: `${request.principal.kind}/${request.principal.id}` });
  });
}

function forbidden(message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('FORBIDDEN', message, { details });
}

/** preHandler: an operator certificate with one of `roles`. */
export function requireRole(...roles: OperatorRole[]): preHandlerAsyncHookHandler {
  return async function requireRoleHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const principal = request.principal;
    if (principal.kind !== 'operator' || !roles.includes(principal.role)) {
      const who = principal.kind === 'operator' ? `operator role ${principal.role}` : `a ${principal.kind}`;
      throw forbidden(`${who} may not do this; it needs one of: ${roles.join(', ')}`, { required: roles });
    }
  };
}

/**
 * preHandler: a node certificate. With `param`, the node must also be the
 * one the route names (`/v1/nodes/:id/…`): a node reads and reports only
 * for itself.
 */
export function requireNode(options: { param?: string } = {}): preHandlerAsyncHookHandler {
  return async function requireNodeHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const principal = request.principal;
    if (principal.kind !== 'node') throw forbidden('only a node certificate may do this');
    if (options.param !== undefined) {
      const params = request.params as Record<string, unknown>;
      if (params[options.param] !== principal.id) {
        throw forbidden(`node ${principal.id} may act only for itself`, { node: principal.id });
      }
    }
  };
}

/**
 * preHandler: any authenticated principal of the mesh: a client, a node or an
 * operator of any role (authentication already refused everyone else, and
 * revoked or denylisted certificates). For public directory data that every
 * participant needs, such as peers' certificates for end-to-end protection.
 */
export function requireMeshPrincipal(): preHandlerAsyncHookHandler {
  return async function requireMeshPrincipalHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const kind = (request.principal as Principal | null)?.kind;
    if (kind !== 'client' && kind !== 'node' && kind !== 'operator') {
      throw unauthenticated('a client, node or operator certificate is required');
    }
  };
}

/** Roles allowed to read the registry, and to change it. */
export const READERS: OperatorRole[] = ['admin', 'operator', 'viewer'];
export const WRITERS: OperatorRole[] = ['admin', 'operator'];
