/**
 * The certificate service: enrolment with a one-time token, renewal with
 * the current certificate, revocation, and the CRL. The CA signs; the store
 * records (mesh certificates), audits and denylists. The rule behind every
 * path: a certificate is only ever issued for the id the caller has proved
 * (the token's id, or the id of the certificate it presents), with that id's
 * registry profile (key algorithm, lifetime, host names), never with names
 * taken from the CSR.
 */
import { randomBytes } from 'node:crypto';
import { DmrError, parseDuration, type PrincipalKind } from '@dmr/core';
import {
  certificateSubject,
  checkCsr,
  checkHostNames,
  csrCommonName,
  normaliseSerial,
  subjectFromUris,
  verifyRenewalProof,
  type CertificateAuthority,
  type CertificateKind,
  type CertificateSubject,
  type IssuedCertificate,
  type IssuedCertificateResponse,
  type IssuedRecord,
  type OperatorRole,
  type RevocationReason,
} from '@dmr/pki';
import type { CertificateProfile } from '../model.js';
import type { CertificateRecord, IdentityKind, Store } from '../store/index.js';
import { actorOf, type IssuedIndex, type Principal } from './auth.js';
import { recordIssued } from './credentials.js';
import { OPERATOR_CERTIFICATE_TTL_MS, operatorTtlMs } from './operators.js';

/** What enrolment and renewal answer: the wire shape clients read (@dmr/pki), with the server's narrower kinds. */
export interface IssuedResponse extends IssuedCertificateResponse {
  kind: PrincipalKind | 'operator';
  /** Operators only. */
  role?: OperatorRole;
}

export interface RevokeResponse {
  serial: string;
  kind: string;
  id: string;
  reason: RevocationReason;
  /** Whether the identity was put on the denylist (mesh identities only; false if it already was). */
  denylisted: boolean;
  /** Every serial this revocation revoked: all unexpired certificates of the identity (CentOps' own: just this one). */
  serials: string[];
  /** The identity's new not-before (clients, nodes, operators). */
  notBefore?: string;
}

const CRL_MAX_AGE_MS = 5 * 60_000;
const CRL_NEXT_UPDATE_MS = 24 * 3_600_000;
const HOUR_MS = 3_600_000;
/** Renewals (certificates recorded) per id per hour before RATE_LIMITED; a healthy holder renews a few times a day. */
export const DEFAULT_RENEWALS_PER_HOUR = 10;

/**
 * The one answer to every enrolment whose token is unknown, used, expired or
 * malformed: nothing about ids, their status or the token's history reaches a
 * caller who has not shown a usable token (the audit keeps the reason).
 */
function enrolmentRefused(): DmrError {
  return new DmrError('TOKEN_INVALID', 'enrolment refused: the bootstrap token is not valid', {
    hint: 'ask an operator for a new bootstrap token (tokens are single-use and expire)',
  });
}

export interface CertificateServiceOptions {
  store: Store;
  ca: CertificateAuthority;
  issued: IssuedIndex;
  trustDomain: string;
  onRevision: (revision: number) => void;
  /** Renewals per id per hour (default 10). */
  renewalsPerHour?: number;
  /** The clock (tests move it); the store should share it. */
  now?: () => Date;
  /** How long a renewed certificate's predecessor stays valid (default 1h). */
  renewalOverlapMs?: number;
  /** How long after expiry a certificate's key may still renew it with a proof (default 7d). */
  renewalGraceMs?: number;
  /** Told of every certificate issued and every enrolment token spent (the /metrics counters). */
  events?: CertificateEvents;
}

export type IssuedVia = 'enrol' | 'renew' | 'operator';

/** What CertificateService tells (server/events.ts: the counters and the events of docs/events.md). */
export interface CertificateEvents {
  issued(
    kind: PrincipalKind | 'operator',
    via: IssuedVia,
    certificate?: { id: string; serial: string; notAfter: string },
  ): void;
  tokenUsed(kind: PrincipalKind): void;
  /** Certificates revoked (the store wrote their audit records). */
  revoked?(kind: string, id: string, serials: readonly string[], reason: RevocationReason): void;
  /** A client or node put on the denylist by a revocation or a deny, at `revision`. */
  denylisted?(kind: 'client' | 'node', id: string, revision: number): void;
}

/** A grace-renewal nonce is good for this long, once. */
export const RENEWAL_NONCE_TTL_MS = 5 * 60_000;
/** Outstanding nonces at most (the enrolment listener's rate limit keeps far below it). */
export const MAX_RENEWAL_NONCES = 10_000;
export const DEFAULT_RENEWAL_GRACE_MS = 7 * 24 * HOUR_MS;

/** A renewal's predecessor is revoked as superseded this long after the renewal. */
export const DEFAULT_RENEWAL_OVERLAP_MS = 3_600_000;
/** The audit "who" of what CentOps does on its own (superseding after the overlap). */
const SYSTEM_ACTOR = 'centops:renewal-overlap';

export class CertificateService {
  readonly #store: Store;
  readonly #ca: CertificateAuthority;
  readonly #issued: IssuedIndex;
  readonly #trustDomain: string;
  readonly #onRevision: (revision: number) => void;
  readonly #renewalsPerHour: number;
  readonly #events: CertificateEvents | undefined;
  readonly #now: () => Date;
  readonly #overlapMs: number;
  readonly #graceMs: number;
  /** Grace-renewal nonces → when they expire (ms); single use. In memory: a proof goes to the CentOps that gave its nonce. */
  readonly #nonces = new Map<string, number>();
  #crl: { pem: string; at: number } | undefined;
  #sweeping: Promise<void> | undefined;
  #caWork: Promise<unknown> = Promise.resolve();

  constructor(options: CertificateServiceOptions) {
    this.#store = options.store;
    this.#ca = options.ca;
    this.#issued = options.issued;
    this.#trustDomain = options.trustDomain;
    this.#onRevision = options.onRevision;
    this.#renewalsPerHour = options.renewalsPerHour ?? DEFAULT_RENEWALS_PER_HOUR;
    this.#now = options.now ?? (() => new Date());
    this.#overlapMs = options.renewalOverlapMs ?? DEFAULT_RENEWAL_OVERLAP_MS;
    this.#graceMs = options.renewalGraceMs ?? DEFAULT_RENEWAL_GRACE_MS;
    this.#events = options.events;
  }

  /** How long after expiry a certificate may still be renewed with a proof of its key. */
  get renewalGraceMs(): number {
    return this.#graceMs;
  }

  /** How long a renewed certificate's predecessor stays valid. */
  get renewalOverlapMs(): number {
    return this.#overlapMs;
  }

  /** The registry entry a mesh id enrols or renews as, refused unless it may hold a certificate now. */
  async #meshIdentity(id: string, kind?: PrincipalKind): Promise<{ kind: PrincipalKind; profile: CertificateProfile }> {
    const client = kind === 'node' ? undefined : await this.#store.find('Client', id);
    const node = client !== undefined || kind === 'client' ? undefined : await this.#store.find('Node', id);
    if (client === undefined && node === undefined) {
      throw new DmrError('FORBIDDEN', `no ${kind ?? 'client or node'} "${id}" is registered`, { details: { id } });
    }
    if (client !== undefined && client.spec.status !== 'active') {
      throw new DmrError('FORBIDDEN', `client ${id} is ${client.spec.status}; it cannot get a certificate`, {
        details: { id, status: client.spec.status },
      });
    }
    if ((await this.#store.listDenylist()).some((entry) => entry.id === id)) {
      throw new DmrError('FORBIDDEN', `${id} is on the denylist; it cannot get a certificate`, { details: { id } });
    }
    return client !== undefined
      ? { kind: 'client', profile: client.spec.certificateProfile }
      : { kind: 'node', profile: node?.spec.certificateProfile as CertificateProfile };
  }

  /** Every check the CA and the profile make on a CSR, without issuing: enrolment runs it before spending the token. */
  async #checkMeshCsr(
    id: string,
    kind: PrincipalKind,
    profile: CertificateProfile,
    csrPem: string,
  ): Promise<{ dns: string[]; ips: string[] }> {
    const hosts = checkHostNames(kind, profile.extraDns, profile.extraIps);
    const checked = await checkCsr(csrPem, { id, kind, trustDomain: this.#trustDomain, hosts });
    if (checked.key.algorithm !== profile.keyAlgorithm) {
      throw new DmrError(
        'CSR_MISMATCH',
        `the CSR's key is ${checked.key.algorithm}; ${id}'s profile asks for ${profile.keyAlgorithm}`,
        {
          details: { csrKey: checked.key.algorithm, profileKey: profile.keyAlgorithm },
          hint: `make a new key with: dmr pki keygen --algorithm ${profile.keyAlgorithm}`,
        },
      );
    }
    return hosts;
  }

  /** A certificate the store recorded as revoked (its identity was revoked while it was being signed) is not handed out. */
  async #refuseIfRevoked(recorded: CertificateRecord): Promise<void> {
    if (recorded.revokedAt === null) return;
    await this.syncRevocations();
    throw new DmrError(
      'FORBIDDEN',
      `${recorded.kind} ${recorded.id} was revoked while its certificate was being issued`,
      {
        details: { id: recorded.id, serial: recorded.serial },
        hint: 'ask an operator: a revoked id enrols again with a new token',
      },
    );
  }

  /**
   * A holder that renews in a loop would re-sign and push a new document to
   * every node each time: at most `renewalsPerHour` certificates per id in
   * the last hour, counted in the store (so restarts and replicas share it).
   */
  async #limitRenewals(kind: CertificateKind, id: string): Promise<void> {
    const since = new Date(this.#now().getTime() - HOUR_MS);
    const recent = await this.#store.countCertificatesSince(kind, id, since);
    if (recent >= this.#renewalsPerHour) {
      throw new DmrError('RATE_LIMITED', `${kind} ${id} has renewed ${recent} times in the last hour`, {
        details: { id, kind, limit: this.#renewalsPerHour, retryAfterSeconds: 3600 },
        hint: 'renew at most a few times a day (at 2/3 of the certificate lifetime); look for a renewal loop',
      });
    }
  }

  async #issueMesh(
    id: string,
    kind: PrincipalKind,
    profile: CertificateProfile,
    csrPem: string,
  ): Promise<IssuedResponse> {
    const hosts = await this.#checkMeshCsr(id, kind, profile, csrPem);
    const issued = await this.#ca.issue({
      csrPem,
      kind,
      id,
      dns: hosts.dns,
      ips: hosts.ips,
      ttlMs: parseDuration(profile.lifetime),
    });
    const recorded = await recordIssued(
      this.#store,
      { kind, id },
      issued,
      `spiffe://${this.#trustDomain}/${kind}/${id}`,
      {
        supersedePreviousAfterMs: this.#overlapMs,
      },
    );
    await this.#refuseIfRevoked(recorded);
    // Recording a mesh certificate was a new revision (its fingerprint is in the node documents): push it.
    this.#onRevision(await this.#store.revision());
    return this.#response(id, kind, issued);
  }

  #response(id: string, kind: IssuedResponse['kind'], issued: IssuedCertificate, role?: OperatorRole): IssuedResponse {
    return {
      id,
      kind,
      ...(role === undefined ? {} : { role }),
      serial: issued.serial,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
      fingerprint: issued.fingerprintSha256,
      certificate: issued.certificatePem,
      chain: issued.chainPem,
      trustBundle: this.#ca.trustBundlePem(),
    };
  }

  /**
   * Enrolment, in three steps. First the token, and nothing else: an unknown,
   * used or expired token gets one generic 401 whatever the CSR says, so an
   * unauthenticated caller learns nothing about ids. Then, for the token's
   * own id only, every other check (the CSR names that id, the id may hold a
   * certificate, the CSR fits its profile and the CA's rules), so a mistake
   * does not burn the one-time token. Last, the token is spent atomically
   * (of two racing enrolments one wins) and the certificate issued.
   */
  async enrol(token: string, csrPem: string, source = 'enrol'): Promise<IssuedResponse> {
    let owner: { id: string; kind: PrincipalKind };
    try {
      owner = await this.#store.checkBootstrapToken(token, source);
    } catch (error) {
      if (error instanceof DmrError && error.code === 'TOKEN_INVALID') throw enrolmentRefused();
      throw error;
    }
    const named = csrCommonName(csrPem);
    if (named !== owner.id) {
      throw new DmrError('CSR_MISMATCH', `the CSR names ${named}; this token enrols ${owner.kind} ${owner.id}`, {
        details: { csrId: named, tokenId: owner.id },
        hint: 'make the CSR for the id the token was created for; the token is still unused',
      });
    }
    const { kind, profile } = await this.#meshIdentity(owner.id, owner.kind);
    await this.#checkMeshCsr(owner.id, kind, profile, csrPem);
    try {
      const spent = await this.#store.consumeBootstrapToken(token, `spiffe://${this.#trustDomain}/${kind}/${owner.id}`);
      if (spent.id !== owner.id || spent.kind !== owner.kind) throw enrolmentRefused();
    } catch (error) {
      if (error instanceof DmrError && error.code === 'TOKEN_INVALID') throw enrolmentRefused();
      throw error;
    }
    this.#events?.tokenUsed(owner.kind);
    const response = await this.#issueMesh(owner.id, kind, profile, csrPem);
    this.#events?.issued(owner.kind, 'enrol', response);
    return response;
  }

  /** Renewal: the caller's current certificate (already verified) decides the id; the CSR must match it. */
  async renew(principal: Principal, csrPem: string): Promise<IssuedResponse> {
    await this.#limitRenewals(principal.kind, principal.id);
    let response: IssuedResponse;
    if (principal.kind === 'operator') {
      // The role is the current certificate's: renewal never changes what an operator may do.
      response = await this.#issueOperator(
        { kind: 'operator', id: principal.id, role: principal.role },
        csrPem,
        OPERATOR_CERTIFICATE_TTL_MS,
        actorOf(principal, this.#trustDomain),
      );
    } else {
      const { kind, profile } = await this.#meshIdentity(principal.id, principal.kind);
      response = await this.#issueMesh(principal.id, kind, profile, csrPem);
    }
    this.#events?.issued(principal.kind, 'renew', response);
    return response;
  }

  /** A fresh single-use nonce for a grace renewal (the enrolment listener: the caller has no valid certificate). */
  renewalNonce(): { nonce: string; expiresAt: string } {
    const now = this.#now().getTime();
    for (const [nonce, expiresAt] of this.#nonces) {
      // Insertion order is expiry order: stop at the first live one.
      if (expiresAt > now) break;
      this.#nonces.delete(nonce);
    }
    if (this.#nonces.size >= MAX_RENEWAL_NONCES) {
      throw new DmrError('RATE_LIMITED', `${MAX_RENEWAL_NONCES} renewal nonces are outstanding`, {
        details: { retryAfterSeconds: RENEWAL_NONCE_TTL_MS / 1000 },
        hint: 'try again in a few minutes',
      });
    }
    const nonce = randomBytes(32).toString('base64url');
    const expiresAt = now + RENEWAL_NONCE_TTL_MS;
    this.#nonces.set(nonce, expiresAt);
    return { nonce, expiresAt: new Date(expiresAt).toISOString() };
  }

  /**
   * Grace renewal: a client or node whose certificate expired while it was
   * down proves it still holds the key (renewal-proof.ts: a JWS by that key,
   * x5c = the expired chain, over a nonce from renewalNonce() and the CSR of
   * its new key). In order: the proof (signature, chain to our roots as it
   * was while valid), the nonce (spent, even if a later check refuses), the
   * certificate is one this CentOps issued, the identity may hold a
   * certificate (registered, active, not denylisted: FORBIDDEN), the
   * certificate is not revoked and not from before its identity's
   * not-before (CERTIFICATE_REVOKED), it expired at most `renewalGraceMs` ago
   * (RENEWAL_GRACE_EXPIRED), the renewal rate, then issuing as any renewal
   * does. A certificate that has not expired yet is accepted too: the proof
   * is as strong as presenting it in TLS.
   */
  async renewWithProof(proof: unknown): Promise<IssuedResponse> {
    const now = this.#now();
    const verified = await verifyRenewalProof(proof, { trustBundlePem: this.#ca.trustBundlePem(), now });
    const expiresAt = this.#nonces.get(verified.payload.nonce);
    this.#nonces.delete(verified.payload.nonce);
    if (expiresAt === undefined || expiresAt <= now.getTime()) {
      throw new DmrError('UNAUTHENTICATED', 'renewal proof refused: the nonce is unknown, used or expired', {
        hint: 'ask for a fresh nonce (POST /v1/renewal/nonce) and sign it at once',
      });
    }
    const subject = subjectFromUris(verified.uris, this.#trustDomain);
    if (subject === undefined || (subject.kind !== 'client' && subject.kind !== 'node')) {
      throw new DmrError('UNAUTHENTICATED', 'renewal proof refused: the certificate names no client or node', {
        details: { uris: verified.uris },
      });
    }
    const { kind, id } = subject;
    const serial = normaliseSerial(verified.serial);
    const record = await this.#issued.get(serial);
    if (record === undefined || record.fingerprintSha256 !== verified.fingerprintSha256) {
      throw new DmrError(
        'UNAUTHENTICATED',
        `renewal proof refused: certificate ${serial} was not issued by this CentOps`,
      );
    }
    // The identity first: a denylisted one is told so (its certificates are revoked too, but that is not the news).
    const { profile } = await this.#meshIdentity(id, kind);
    const stored = await this.#store.getCertificate(serial).catch(() => undefined);
    const notBefore = await this.#store.identityNotBefore(kind, id);
    const revokedByIdentity = notBefore !== undefined && record.issuedAt.getTime() < Date.parse(notBefore);
    if (record.revoked || stored?.revokedAt || revokedByIdentity) {
      throw new DmrError('CERTIFICATE_REVOKED', `certificate ${serial} of ${kind} ${id} is revoked`, {
        details: { serial, id, kind },
        hint: 'a revoked certificate cannot be renewed: ask an operator for a one-time token and enrol again',
      });
    }
    const expiredForMs = now.getTime() - verified.notAfter.getTime();
    if (expiredForMs > this.#graceMs) {
      throw new DmrError(
        'RENEWAL_GRACE_EXPIRED',
        `certificate ${serial} of ${kind} ${id} expired ${verified.notAfter.toISOString()}, more than ${Math.round(this.#graceMs / 60_000)} min ago`,
        {
          details: { serial, id, kind, notAfter: verified.notAfter.toISOString(), graceMs: this.#graceMs },
          hint: 'enrol again with a one-time token from an operator (`dmr ctl token create`)',
        },
      );
    }
    if (csrCommonName(verified.payload.csr) !== id) {
      throw new DmrError('CSR_MISMATCH', `the CSR does not name ${id}, whose certificate signed the proof`, {
        details: { id },
      });
    }
    await this.#limitRenewals(kind, id);
    const response = await this.#issueMesh(id, kind, profile, verified.payload.csr);
    this.#events?.issued(kind, 'renew', response);
    return response;
  }

  /**
   * A certificate for an operator, on an admin's request (the route allows
   * admins only). The operator made the key and sends the CSR through the
   * admin; the CA checks that the CSR is signed by its key and asks for
   * nothing but this id and this role (a CSR asking for `admin` is refused
   * for a `viewer` certificate, and the reverse). The private key never
   * travels.
   */
  async issueOperator(
    request: { id: string; role: OperatorRole; csr: string; ttl?: string },
    principal: Principal,
  ): Promise<IssuedResponse> {
    const response = await this.#issueOperator(
      { kind: 'operator', id: request.id, role: request.role },
      request.csr,
      operatorTtlMs(request.ttl),
      actorOf(principal, this.#trustDomain),
    );
    this.#events?.issued('operator', 'operator', response);
    return response;
  }

  async #issueOperator(
    subject: Extract<CertificateSubject, { kind: 'operator' }>,
    csrPem: string,
    ttlMs: number,
    actor: string,
  ): Promise<IssuedResponse> {
    const issued = await this.#ca.issue({ csrPem, kind: 'operator', id: subject.id, role: subject.role, ttlMs });
    const recorded = await recordIssued(this.#store, subject, issued, actor, {
      supersedePreviousAfterMs: this.#overlapMs,
    });
    await this.#refuseIfRevoked(recorded);
    return this.#response(subject.id, 'operator', issued, subject.role);
  }

  /**
   * The store's record of a certificate the CA issued. Certificates issued
   * before the store recorded their kind (operators and CentOps' own, before
   * migration 0002) are recorded now from the CA's record, so that their
   * revocation is in the store and the audit like any other.
   */
  async #storedRecord(record: IssuedRecord, actor: string): Promise<CertificateRecord> {
    const stored = await this.#store.getCertificate(record.serial).catch((error: unknown) => {
      if (error instanceof DmrError && error.code === 'UNKNOWN_SERIAL') return undefined;
      throw error;
    });
    if (stored !== undefined) return stored;
    return recordIssued(this.#store, certificateSubject(record.kind, record.id, record.role), record, actor);
  }

  /**
   * Revocation is by identity: revoking any certificate of a client, node or
   * operator (for any reason but `superseded`, see #supersede) revokes every
   * unexpired certificate of that id and moves its
   * not-before to now (store.revokeIdentity), so no earlier certificate of
   * the id comes back, not even when a denylist entry is lifted; a client
   * or node also goes on the denylist, in the same revision. An operator is
   * not put on the node documents' denylist (nodes never see operators):
   * its not-before is its denylist, and only a certificate an admin issues
   * afterwards is accepted. CentOps' own certificates (API, signers) are
   * revoked one serial at a time: rotating a signer revokes the old one
   * while the new one stays. Only an admin revokes operators' and CentOps'
   * certificates. The CA's records (and so the CRL) follow at once.
   */
  async revoke(serialText: string, reason: RevocationReason, principal: Principal): Promise<RevokeResponse> {
    const serial = normaliseSerial(serialText);
    const record = await this.#issued.get(serial);
    if (!record) {
      throw new DmrError('UNKNOWN_SERIAL', `this CentOps has not issued a certificate with serial ${serial}`, {
        details: { serial },
      });
    }
    const mesh = record.kind === 'client' || record.kind === 'node';
    if (!mesh && !(principal.kind === 'operator' && principal.role === 'admin')) {
      throw new DmrError('FORBIDDEN', `only an admin may revoke a ${record.kind} certificate`, { details: { serial } });
    }
    const actor = actorOf(principal, this.#trustDomain);
    const stored = await this.#storedRecord(record, actor);
    if (record.revoked && stored.revokedAt !== null) {
      throw new DmrError('ALREADY_REVOKED', `certificate ${serial} (${record.kind} ${record.id}) is already revoked`, {
        details: { serial },
      });
    }
    if (record.kind === 'centops') {
      await this.#exclusive(async () => {
        if (!record.revoked) await this.#ca.revoke(serial, reason);
        this.#crl = undefined;
      });
      if (stored.revokedAt === null) {
        await this.#store.revokeCertificate(serial, reason, actor);
        this.#events?.revoked?.(record.kind, record.id, [serial], reason);
      }
      return { serial, kind: record.kind, id: record.id, reason, denylisted: false, serials: [serial] };
    }
    if (reason === 'superseded') return this.#supersede(record, stored, actor);
    const revoked = await this.#store.revokeIdentity(
      { kind: record.kind as IdentityKind, id: record.id },
      reason,
      actor,
      mesh ? { denylistReason: `certificate ${serial} revoked (${reason})` } : {},
    );
    // The store decided; the CA's records (the CRL) follow, the serial asked for included even if it had expired.
    if (!record.revoked && !revoked.serials.includes(serial))
      await this.#ca.revoke(serial, reason).catch(() => undefined);
    await this.syncRevocations();
    this.#told(record.kind, record.id, revoked.serials, reason, revoked);
    if (revoked.revision !== null) this.#onRevision(revoked.revision);
    return {
      serial,
      kind: record.kind,
      id: record.id,
      reason,
      denylisted: revoked.denylisted,
      serials: revoked.serials,
      notBefore: revoked.notBefore,
    };
  }

  /**
   * `superseded` says the certificate was replaced, not that the identity is
   * in doubt: it revokes this serial alone (what the overlap sweep does, only
   * earlier), and only while a newer valid certificate of the id exists.
   * Any other reason revokes the identity.
   */
  async #supersede(record: IssuedRecord, stored: CertificateRecord, actor: string): Promise<RevokeResponse> {
    const valid = await this.#store.listCertificates({ kind: record.kind, id: record.id, revoked: false, limit: 1000 });
    const now = this.#now().toISOString();
    const successor = valid.items.some(
      (other) =>
        other.serial !== record.serial &&
        other.notAfter > now &&
        (other.notBefore > stored.notBefore || other.recordedAt > stored.recordedAt),
    );
    if (!successor) {
      throw new DmrError(
        'CONFLICT',
        `no newer certificate of ${record.kind} ${record.id} supersedes ${record.serial}`,
        {
          details: { serial: record.serial },
          hint: 'revoke with the reason that applies (e.g. keyCompromise, cessationOfOperation): that revokes the identity',
        },
      );
    }
    const revoked = await this.#store.revokeCertificate(record.serial, 'superseded', actor);
    this.#events?.revoked?.(record.kind, record.id, [record.serial], 'superseded');
    await this.syncRevocations();
    if (revoked.revision !== null) this.#onRevision(revoked.revision);
    return {
      serial: record.serial,
      kind: record.kind,
      id: record.id,
      reason: 'superseded',
      denylisted: false,
      serials: [record.serial],
    };
  }

  /**
   * Puts an identity on the denylist: every unexpired certificate of it is
   * revoked (privilegeWithdrawn) and its not-before moves to now. A client
   * or node joins the node documents' denylist; an operator (admins only)
   * is refused by CentOps from now on, until an admin issues it a new
   * certificate.
   */
  async deny(
    identity: { kind: IdentityKind; id: string },
    reason: string,
    principal: Principal,
  ): Promise<{ id: string; kind: IdentityKind; notBefore: string; serials: string[]; denylisted: boolean }> {
    if (identity.kind === 'operator' && !(principal.kind === 'operator' && principal.role === 'admin')) {
      throw new DmrError('FORBIDDEN', 'only an admin may deny an operator', { details: { id: identity.id } });
    }
    const revoked = await this.#store.revokeIdentity(
      identity,
      'privilegeWithdrawn',
      actorOf(principal, this.#trustDomain),
      identity.kind === 'operator' ? {} : { denylistReason: reason },
    );
    await this.syncRevocations();
    this.#told(identity.kind, identity.id, revoked.serials, 'privilegeWithdrawn', revoked);
    if (revoked.revision !== null) this.#onRevision(revoked.revision);
    return {
      id: identity.id,
      kind: identity.kind,
      notBefore: revoked.notBefore,
      serials: revoked.serials,
      denylisted: revoked.denylisted,
    };
  }

  /**
   * The CA's records follow the store: every unexpired certificate the store
   * has revoked (by identity, by delete, as superseded) is revoked at the CA
   * too, so the next CRL lists it. Idempotent; also what heals a crash
   * between the store's transaction and the CA's write.
   */
  syncRevocations(): Promise<string[]> {
    return this.#exclusive(() => this.#syncRevocations());
  }

  /**
   * Syncing the CA and making a CRL take turns, so a CRL is never cached
   * from before a revocation that another sync was writing meanwhile.
   */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#caWork.then(work);
    this.#caWork = run.catch(() => undefined);
    return run;
  }

  async #syncRevocations(): Promise<string[]> {
    const wanted = await this.#store.revokedUnexpired();
    const done: string[] = [];
    for (const { serial, reason } of wanted) {
      const record = await this.#issued.get(serial);
      if (record === undefined || record.revoked) continue;
      await this.#ca.revoke(serial, reason).catch((error: unknown) => {
        if (!(error instanceof DmrError && error.code === 'ALREADY_REVOKED')) throw error;
      });
      done.push(serial);
    }
    if (done.length > 0) this.#crl = undefined;
    return done;
  }

  /** The events of an identity revocation: each certificate revoked, and the denylist entry if it made one. */
  #told(
    kind: string,
    id: string,
    serials: readonly string[],
    reason: RevocationReason,
    revoked: { denylisted: boolean; revision: number | null },
  ): void {
    this.#events?.revoked?.(kind, id, serials, reason);
    if (revoked.denylisted && revoked.revision !== null && (kind === 'client' || kind === 'node')) {
      this.#events?.denylisted?.(kind, id, revoked.revision);
    }
  }

  /**
   * Revokes, as superseded, the predecessors whose overlap after a renewal
   * has passed, and publishes the revision (their fingerprints leave the
   * node documents, and nodes fetch the new CRL when that happens). The
   * server runs it on a timer and before every CRL; one sweep at a time.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= (async () => {
      try {
        const { serials, revision } = await this.#store.revokeSuperseded(SYSTEM_ACTOR);
        for (const serial of serials) {
          const record = await this.#issued.get(serial);
          if (record !== undefined) this.#events?.revoked?.(record.kind, record.id, [serial], 'superseded');
        }
        if (serials.length > 0) await this.syncRevocations();
        if (revision !== null) this.#onRevision(revision);
      } finally {
        this.#sweeping = undefined;
      }
    })();
    return this.#sweeping;
  }

  /** A CRL at most a few minutes old (and fresh after every revocation), signed by CentOps' intermediate. */
  async crl(): Promise<string> {
    // Whatever the store has revoked by now is on this CRL, even if the CA's records lagged.
    await this.sweep();
    return this.#exclusive(async () => {
      await this.#syncRevocations();
      const now = Date.now();
      if (this.#crl === undefined || now - this.#crl.at > CRL_MAX_AGE_MS) {
        this.#crl = { pem: await this.#ca.createCrl({ nextUpdateMs: CRL_NEXT_UPDATE_MS }), at: now };
      }
      return this.#crl.pem;
    });
  }
}
