/**
 * Peer certificates for end-to-end protection from the CentOps certificate
 * directory: `GET /v1/directory/clients/:id/certificate` on the
 * mutual-TLS API gives a client's current certificate; this module checks it
 * before anything is encrypted for it or believed from it:
 *
 * 1. CentOps' answer: the id is known, not on the denylist, and has a valid,
 *    unrevoked certificate (else CentOps refuses, and so does this module,
 *    with the reason: RECIPIENT_/SENDER_DENIED, CERTIFICATE_REVOKED,
 *    RECIPIENT_/SENDER_UNKNOWN, NOT_FOUND);
 * 2. the client is active in the registry (else RECIPIENT_/SENDER_INACTIVE);
 * 3. the chain names the id, is valid now and chains to the trust bundle
 *    (`checkPeerCertificate`; else CERTIFICATE_INVALID), and its leaf is the
 *    certificate CentOps named (fingerprint);
 * 4. the leaf is not on CentOps' CRL (`GET /v1/pki/crl`, its signature
 *    verified against the trust bundle by @dmr/pki; else
 *    CERTIFICATE_REVOKED). A CRL that cannot be verified or has expired
 *    refuses the certificate (CERTIFICATE_INVALID): it fails closed.
 *
 * Caching (bounded and documented in the README): a verdict about an id
 * (accepted or refused) is reused for `cacheTtlMs` (default 60 s; 0 turns
 * caching off), for at most `maxEntries` ids (the oldest go first).
 * Concurrent look-ups of one id share one request. The CRL is fetched again
 * at its nextUpdate or after `crlMaxAgeMs` (default 5 min), whichever comes
 * first; while CentOps cannot be reached, a CRL that has not reached its
 * nextUpdate is still used. Failures to reach CentOps, or CentOps refusing
 * this client's own certificate, are never cached. So a revocation in CentOps
 * takes effect here within `cacheTtlMs`; `forget(id)` makes it immediate.
 *
 * CentOps is pinned: its server certificate must carry
 * `spiffe://<td>/centops/api`, `<td>` being the trust domain of this
 * client's own certificate (else SERVER_IDENTITY_MISMATCH, never cached).
 *
 * No timers and no kept-alive sockets: nothing to close.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { DmrError, assertValidId, isErrorCode, type ErrorCode } from '@dmr/core';
import { CentOpsClient } from '@dmr/centops-client';
import { inspectCertificate, parseCrls } from '@dmr/pki';
import { checkPeerCertificate, describeCertificate, parseChain } from './certificates.js';
import type { CertificateCheck } from './client.js';
import type { PrivateKeyInput } from './protect.js';
import type { TlsPem } from './tls.js';

/** What a peer certificate is wanted for: encrypting for a recipient, or verifying a sender. */
export type PeerUse = 'encrypt' | 'verify';

export interface CentOpsDirectoryOptions {
  /** CentOps' mutual-TLS API, e.g. `https://centops.example:8443`. */
  apiUrl: string;
  /**
   * This client's identity: `cert`/`key` authenticate it to CentOps, `ca`
   * authenticates CentOps and is the trust bundle peers' chains must reach.
   */
  tls: TlsPem;
  /** How long a verdict about an id is reused (default 60 000 ms; 0: ask CentOps every time). */
  cacheTtlMs?: number;
  /** Ids whose verdicts are kept at most (default 10 000). */
  maxEntries?: number;
  /** The CRL is fetched again after this long even before its nextUpdate (default 300 000 ms). */
  crlMaxAgeMs?: number;
  /** Per request to CentOps (default 10 000 ms). */
  timeoutMs?: number;
  /** The clock (tests). */
  now?: () => Date;
}

/** A client's current certificate, as CentOps' directory gives it, after every check passed. */
export interface DirectoryEntry {
  id: string;
  /** Lowercase hex. */
  serial: string;
  /** sha256 of the DER leaf, lowercase hex. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  /** Leaf then CentOps' intermediate: pass as `encryptFor`, or return from `verifySender`. */
  chainPem: string;
  /** The client's registry status (always `active` in an entry this module hands out). */
  status: string;
  /**
   * Its other valid, unrevoked certificates (PEM chains, newest first), for
   * verifying a message signed just before a renewal. Never encrypted for;
   * each is checked (chain, CRL) when the SDK verifies with it.
   */
  earlier: string[];
}

const DEFAULT_TTL_MS = 60_000;
const DEFAULT_MAX_ENTRIES = 10_000;
const DEFAULT_CRL_MAX_AGE_MS = 5 * 60_000;
const DEFAULT_TIMEOUT_MS = 10_000;
const BODY_MAX = 256 * 1024;

type Verdict = { entry: DirectoryEntry } | { refusal: DmrError };

interface Cached {
  at: number;
  verdict: Verdict;
}

interface Answer {
  status: number;
  body: string;
}

interface CrlState {
  pem: string;
  fetchedAt: number;
  nextUpdate: number;
}

/** Refusals the directory gives, by CentOps' code, as what the caller sees for each use. */
function refusalCode(code: string, reason: unknown, use: PeerUse): ErrorCode | undefined {
  if (code === 'PRINCIPAL_DENIED') return use === 'encrypt' ? 'RECIPIENT_DENIED' : 'SENDER_DENIED';
  if (code === 'CERTIFICATE_REVOKED') return 'CERTIFICATE_REVOKED';
  if (code === 'NOT_FOUND' && reason === 'unknown-id')
    return use === 'encrypt' ? 'RECIPIENT_UNKNOWN' : 'SENDER_UNKNOWN';
  if (code === 'NOT_FOUND') return 'NOT_FOUND';
  if (code === 'VALIDATION_FAILED') return 'INVALID_ID';
  return undefined;
}

function fingerprintOf(pem: string, what: string): string {
  const [leaf] = parseChain(pem, what);
  return createHash('sha256')
    .update((leaf as X509Certificate).raw)
    .digest('hex');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The directory's 200 answer, validated field by field (it is input like any other). */
function parseEntry(body: string, id: string): DirectoryEntry {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    value = undefined;
  }
  const bad = (problem: string) =>
    new DmrError('CERTIFICATE_INVALID', `CentOps' directory entry for ${id} is malformed: ${problem}`, {
      details: { id },
    });
  if (!isObject(value)) throw bad('not a JSON object');
  for (const field of ['id', 'serial', 'fingerprint', 'notBefore', 'notAfter', 'chainPem', 'status']) {
    if (typeof value[field] !== 'string' || value[field] === '') throw bad(`${field} is missing`);
  }
  if (value.id !== id) throw bad(`it is for ${String(value.id)}`);
  const notBefore = new Date(value.notBefore as string);
  const notAfter = new Date(value.notAfter as string);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw bad('the validity is not a time');
  if (!/^[0-9a-f]{64}$/.test(value.fingerprint as string)) throw bad('the fingerprint is not a sha256');
  // Absent from a CentOps older than this field: no earlier certificates then.
  const earlierList = value.earlier ?? [];
  if (!Array.isArray(earlierList)) throw bad('earlier is not a list');
  const earlier = earlierList.map((item: unknown, index) => {
    if (!isObject(item) || typeof item.chainPem !== 'string' || item.chainPem === '') {
      throw bad(`earlier[${index}] has no chainPem`);
    }
    return item.chainPem;
  });
  return {
    id,
    serial: value.serial as string,
    fingerprint: value.fingerprint as string,
    notBefore,
    notAfter,
    chainPem: value.chainPem as string,
    status: value.status as string,
    earlier,
  };
}

/**
 * The CentOps certificate directory for end-to-end protection. Plug it into
 * the SDK:
 *
 * ```ts
 * const directory = new CentOpsDirectory({ apiUrl, tls: { cert, key, ca } });
 * const client = await DmrClient.connect({ ...options, checkCertificate: directory.checkCertificate });
 * await client.send({ to, type, body, protect: await directory.protectFor(to, keyPem) });
 * await client.receive(handler, { unprotect: { verifySender: directory.verifySender } });
 * ```
 */
export class CentOpsDirectory {
  readonly #apiUrl: URL;
  #tls: TlsPem;
  /** The one CentOps client, pinned to CentOps of this client's trust domain. */
  #client: CentOpsClient;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #crlMaxAgeMs: number;
  readonly #timeoutMs: number;
  readonly #now: () => Date;
  readonly #cache = new Map<string, Cached>();
  readonly #inflight = new Map<string, Promise<Verdict>>();
  #crl: CrlState | undefined;
  #crlLoading: Promise<CrlState> | undefined;

  constructor(options: CentOpsDirectoryOptions) {
    let url: URL;
    try {
      url = new URL(options.apiUrl);
    } catch {
      throw new DmrError('INVALID_ARGUMENT', `apiUrl "${String(options.apiUrl)}" is not a URL`);
    }
    if (url.protocol !== 'https:') throw new DmrError('INVALID_ARGUMENT', 'apiUrl must be https:// (CentOps is mTLS)');
    this.#apiUrl = url;
    this.#tls = CentOpsDirectory.#checkedTls(options.tls);
    this.#ttlMs = CentOpsDirectory.#whole(options.cacheTtlMs, DEFAULT_TTL_MS, 0, 'cacheTtlMs');
    this.#maxEntries = CentOpsDirectory.#whole(options.maxEntries, DEFAULT_MAX_ENTRIES, 1, 'maxEntries');
    this.#crlMaxAgeMs = CentOpsDirectory.#whole(options.crlMaxAgeMs, DEFAULT_CRL_MAX_AGE_MS, 0, 'crlMaxAgeMs');
    this.#timeoutMs = CentOpsDirectory.#whole(options.timeoutMs, DEFAULT_TIMEOUT_MS, 1, 'timeoutMs');
    this.#now = options.now ?? (() => new Date());
    this.#client = this.#clientFor(this.#tls);
  }

  static #whole(value: number | undefined, fallback: number, min: number, name: string): number {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < min) {
      throw new DmrError('INVALID_ARGUMENT', `${name} must be a whole number ≥ ${min}`);
    }
    return value;
  }

  static #checkedTls(tls: TlsPem): TlsPem {
    if (
      typeof tls !== 'object' ||
      tls === null ||
      typeof tls.cert !== 'string' ||
      typeof tls.key !== 'string' ||
      typeof tls.ca !== 'string'
    ) {
      throw new DmrError('INVALID_ARGUMENT', 'tls must be { cert, key, ca } PEM strings');
    }
    parseChain(tls.ca, 'trust bundle');
    return { cert: tls.cert, key: tls.key, ca: tls.ca };
  }

  /** A client for CentOps of the trust domain in this client's own certificate. */
  #clientFor(tls: TlsPem): CentOpsClient {
    const trustDomain = describeCertificate(tls.cert).trustDomain;
    if (trustDomain === undefined) {
      throw new DmrError('CERTIFICATE_INVALID', 'tls.cert has no SPIFFE id: the trust domain of CentOps is unknown', {
        hint: 'use the certificate CentOps issued to this client (enrol)',
      });
    }
    return new CentOpsClient({
      apiUrl: this.#apiUrl.href,
      caPem: tls.ca,
      trustDomain,
      identity: { certPem: tls.cert, keyPem: tls.key },
      timeoutMs: this.#timeoutMs,
      maxAnswerBytes: BODY_MAX,
    });
  }

  /** A new identity for talking to CentOps (after a renewal: pass the `renewed` event's chain and key). */
  useIdentity(tls: TlsPem): void {
    const checked = CentOpsDirectory.#checkedTls(tls);
    this.#client = this.#clientFor(checked);
    this.#tls = checked;
  }

  /** Drops cached verdicts (of one id, or all), so the next look-up asks CentOps. The CRL is kept. */
  forget(id?: string): void {
    if (id === undefined) this.#cache.clear();
    else this.#cache.delete(id);
  }

  /** The current, checked certificate of client `id`, or a DmrError saying why there is none. */
  async certificateOf(id: string, use: PeerUse = 'encrypt'): Promise<DirectoryEntry> {
    assertValidId(id);
    if (use !== 'encrypt' && use !== 'verify') throw new DmrError('INVALID_ARGUMENT', 'use is encrypt or verify');
    const verdict = await this.#verdict(id);
    if ('refusal' in verdict) throw this.#forUse(verdict.refusal, use);
    const { entry } = verdict;
    if (entry.status !== 'active') {
      const code = use === 'encrypt' ? 'RECIPIENT_INACTIVE' : 'SENDER_INACTIVE';
      throw new DmrError(code, `client ${id} is ${entry.status} in CentOps`, {
        details: { id, status: entry.status, use },
      });
    }
    // The cached verdict may be older than the certificate's end.
    const now = this.#now();
    if (now < entry.notBefore || now > entry.notAfter) {
      this.#cache.delete(id);
      throw new DmrError('CERTIFICATE_INVALID', `the directory's certificate of ${id} is not valid now`, {
        details: { id, serial: entry.serial, use },
      });
    }
    return entry;
  }

  /** The PEM chain to encrypt for: `send({ protect: { signWith, encryptFor } })`. */
  async encryptionCertificate(id: string): Promise<string> {
    return (await this.certificateOf(id, 'encrypt')).chainPem;
  }

  /** `send`'s `protect` option for recipient `to`, signing with this client's key. */
  async protectFor(to: string, signWith: PrivateKeyInput): Promise<{ signWith: PrivateKeyInput; encryptFor: string }> {
    return { signWith, encryptFor: await this.encryptionCertificate(to) };
  }

  /**
   * For `receive(…, { unprotect: { verifySender } })`: the sender's current
   * certificate, then its earlier valid ones. `fresh` (the SDK's second try after a signature did not
   * verify: the sender may have renewed) skips the cached verdict.
   */
  readonly verifySender = async (senderId: string, options: { fresh?: boolean } = {}): Promise<string[]> => {
    if (options.fresh === true) this.forget(senderId);
    const entry = await this.certificateOf(senderId, 'verify');
    // The current one first; the earlier ones verify what was signed just before a renewal (the SDK checks each).
    return [entry.chainPem, ...entry.earlier];
  };

  /**
   * For `DmrClient.connect({ checkCertificate })`. The peer must be in the
   * directory and pass every check (see the module comment). To encrypt,
   * the certificate must be the one the directory gives now (a recipient
   * decrypts with its current key). To verify, an earlier certificate of the
   * same id is accepted while it is valid, chains to the trust bundle and is
   * not on the CRL (a message signed just before the sender renewed).
   */
  readonly checkCertificate = async (certificatePem: string, peer: Parameters<CertificateCheck>[1]): Promise<void> => {
    const entry = await this.certificateOf(peer.id, peer.use);
    const fingerprint = fingerprintOf(certificatePem, `certificate of ${peer.id}`);
    if (fingerprint === entry.fingerprint) return;
    if (peer.use === 'encrypt') {
      throw new DmrError('CERTIFICATE_INVALID', `this is not the current certificate of ${peer.id} in CentOps`, {
        details: { id: peer.id, current: entry.serial },
        hint: 'encrypt for the certificate the directory gives (directory.encryptionCertificate(id))',
      });
    }
    checkPeerCertificate(certificatePem, peer.id, this.#tls.ca, this.#now());
    await this.#assertNotRevoked(certificatePem, peer.id);
  };

  #forUse(refusal: DmrError, use: PeerUse): DmrError {
    const code = refusalCode(String(refusal.details.centopsCode ?? ''), refusal.details.reason, use) ?? refusal.code;
    if (code === refusal.code) return refusal;
    return new DmrError(code, refusal.message, {
      details: { ...refusal.details, use },
      ...(refusal.hint === undefined ? {} : { hint: refusal.hint }),
    });
  }

  async #verdict(id: string): Promise<Verdict> {
    const cached = this.#cache.get(id);
    if (cached !== undefined && Date.now() - cached.at < this.#ttlMs) return cached.verdict;
    if (cached !== undefined) this.#cache.delete(id);
    let pending = this.#inflight.get(id);
    if (pending === undefined) {
      pending = this.#lookUp(id).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, pending);
    }
    return pending;
  }

  async #lookUp(id: string): Promise<Verdict> {
    const answer = await this.#get(`/v1/directory/clients/${encodeURIComponent(id)}/certificate`);
    let verdict: Verdict;
    if (answer.status === 200) {
      try {
        verdict = { entry: await this.#checked(parseEntry(answer.body, id)) };
      } catch (error) {
        // A certificate that fails a check stays refused for the TTL like any refusal. A failure to get the
        // CRL (CentOps down, our own certificate refused, a broken CRL) says nothing about the peer: not cached.
        const aboutPeer =
          error instanceof DmrError && (error.code === 'CERTIFICATE_INVALID' || error.code === 'CERTIFICATE_REVOKED');
        if (!aboutPeer) throw error;
        verdict = { refusal: error };
      }
    } else {
      const refusal = this.#refusal(answer, id);
      // Only CentOps' answers about the peer are facts to cache; anything about us or the server is not.
      if (refusalCode(String(refusal.details.centopsCode ?? ''), refusal.details.reason, 'encrypt') === undefined) {
        throw refusal;
      }
      verdict = { refusal };
    }
    if (this.#ttlMs > 0) {
      if (this.#cache.size >= this.#maxEntries) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(id, { at: Date.now(), verdict });
    }
    return verdict;
  }

  /** Steps 3 and 4 on an entry CentOps gave. */
  async #checked(entry: DirectoryEntry): Promise<DirectoryEntry> {
    checkPeerCertificate(entry.chainPem, entry.id, this.#tls.ca, this.#now());
    if (fingerprintOf(entry.chainPem, `certificate of ${entry.id}`) !== entry.fingerprint) {
      throw new DmrError(
        'CERTIFICATE_INVALID',
        `the directory's chain for ${entry.id} is not the certificate it names`,
        {
          details: { id: entry.id },
        },
      );
    }
    await this.#assertNotRevoked(entry.chainPem, entry.id);
    return entry;
  }

  async #assertNotRevoked(chainPem: string, id: string): Promise<void> {
    const crl = await this.#currentCrl();
    const now = this.#now();
    const report = await inspectCertificate(chainPem, { trustBundlePem: this.#tls.ca, crlPems: [crl.pem], now });
    if (report.revocation === 'revoked') {
      throw new DmrError('CERTIFICATE_REVOKED', `certificate ${report.serial} of ${id} is on CentOps' CRL`, {
        details: {
          id,
          serial: report.serial,
          reason: report.revocationReason ?? null,
          revokedAt: report.revokedAt?.toISOString() ?? null,
        },
      });
    }
    if (report.revocation !== 'good') {
      throw new DmrError('CERTIFICATE_INVALID', `the revocation of ${id}'s certificate cannot be checked`, {
        details: { id, serial: report.serial, problem: report.revocationProblem ?? null },
      });
    }
  }

  async #currentCrl(): Promise<CrlState> {
    const now = Date.now();
    const crl = this.#crl;
    if (crl !== undefined && now < crl.nextUpdate && now - crl.fetchedAt < this.#crlMaxAgeMs) return crl;
    this.#crlLoading ??= this.#fetchCrl().finally(() => {
      this.#crlLoading = undefined;
    });
    try {
      return await this.#crlLoading;
    } catch (error) {
      // CentOps is down: a CRL that has not reached its nextUpdate still speaks (RFC 5280 semantics).
      if (crl !== undefined && now < crl.nextUpdate) return crl;
      throw error;
    }
  }

  async #fetchCrl(): Promise<CrlState> {
    const answer = await this.#get('/v1/pki/crl');
    if (answer.status !== 200) throw this.#refusal(answer, 'the CRL');
    const [crl] = parseCrls(answer.body, "CentOps' CRL");
    const nextUpdate = crl?.nextUpdate?.getTime() ?? Date.now();
    this.#crl = { pem: answer.body, fetchedAt: Date.now(), nextUpdate };
    return this.#crl;
  }

  /** A CentOps error answer as a DmrError; CentOps' own code is kept in details.centopsCode. */
  #refusal(answer: Answer, about: string): DmrError {
    let code: string | undefined;
    let message = answer.body.slice(0, 300);
    let reason: unknown;
    try {
      const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
      if (typeof parsed.error?.code === 'string') code = parsed.error.code;
      if (typeof parsed.error?.message === 'string') message = parsed.error.message;
      if (isObject(parsed.error?.details)) reason = parsed.error.details.reason;
    } catch {
      // Not JSON (a proxy's page): keep the text.
    }
    // A server fault, or an answer that is not CentOps' (a proxy's page), says nothing about the peer.
    const known = code !== undefined && isErrorCode(code) && answer.status < 500 ? code : undefined;
    return new DmrError(known ?? 'CENTOPS_UNREACHABLE', `${about}: CentOps answered ${answer.status}: ${message}`, {
      details: {
        status: answer.status,
        centopsCode: code ?? null,
        ...(typeof reason === 'string' ? { reason } : {}),
      },
    });
  }

  async #get(path: string): Promise<Answer> {
    const answer = await this.#client.request('GET', path, { headers: { accept: '*/*' } });
    return { status: answer.status, body: answer.body.toString('utf8') };
  }
}
