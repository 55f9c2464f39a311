import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DmrError, assertValidTrustDomain, formatDuration } from '@dmr/core';
import { ensurePrivateDirectory, writeFilesAtomic } from './atomic-file.js';
import {
  CA_FILES,
  CA_REQUIRED_FILES,
  readState,
  serialiseState,
  withCaLock,
  writeState,
  type CaState,
  type IssuedRecord,
} from './ca-store.js';
import {
  certificatePem,
  keyIdentifier,
  normaliseSerial,
  parseCertificates,
  randomSerial,
  sameName,
  sha256Hex,
  wholeSeconds,
} from './certificates.js';
import { assertRevocationReason, buildCrl, type RevocationReason } from './crl.js';
import { checkCsr, createCsr, sanExtension } from './csr.js';
import { generatePrivateKey, loadSigningKey, type KeyAlgorithm, type SigningKey } from './keys.js';
import { checkHostNames } from './names.js';
import { certificateSubject, leafUsage, subjectUris, type CertificateKind, type OperatorRole } from './profiles.js';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
  type X509Certificate,
} from './x509.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_ROOT_TTL_MS = 3650 * DAY_MS;
export const DEFAULT_INTERMEDIATE_TTL_MS = 365 * DAY_MS;
export const DEFAULT_LEAF_TTL_MS = 24 * HOUR_MS;
export const DEFAULT_CRL_NEXT_UPDATE_MS = 7 * DAY_MS;
/** Certificates start this much before "now" so a peer whose clock lags a little still accepts them. */
export const BACKDATE_MS = 60_000;

export interface InitOptions {
  trustDomain: string;
  rootTtlMs?: number;
  intermediateTtlMs?: number;
}

export interface IssueOptions {
  csrPem: string;
  /** client | node (the mesh), operator | centops (the control plane; see profiles.ts). */
  kind: CertificateKind;
  id: string;
  /** Operators only: admin, operator or viewer, carried as a `urn:dmr:role:` URI SAN. */
  role?: OperatorRole;
  dns?: string[];
  ips?: string[];
  /** Lifetime from now (default 24h). Ignored when notAfter is given. */
  ttlMs?: number;
  /** Explicit validity window, e.g. for tests that need an expired or not-yet-valid certificate. */
  notBefore?: Date;
  notAfter?: Date;
}

export interface IssuedCertificate {
  certificatePem: string;
  /** Leaf then intermediate: what a TLS peer presents. */
  chainPem: string;
  /** Lowercase hex, no colons. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  fingerprintSha256: string;
  /** When the CA signed it (its record's issuedAt): what revocation by identity compares with. */
  issuedAt: Date;
}

export type IssueWithKeyOptions = Omit<IssueOptions, 'csrPem'> & { keyAlgorithm?: KeyAlgorithm };

export interface CrlOptions {
  /** How long until the next CRL is due (default 7 days). */
  nextUpdateMs?: number;
}

function assertTtl(ms: number, what: string): void {
  if (!Number.isSafeInteger(ms) || ms < 1000) {
    throw new DmrError('INVALID_ARGUMENT', `${what} must be at least one second`, { details: { [what]: ms } });
  }
}

function errno(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** The issuing half of the CA, loaded once: the intermediate's key never leaves this object. */
interface Issuer {
  certificate: X509Certificate;
  key: SigningKey;
  keyId: string;
}

/**
 * A two-level CA in a directory: an offline-capable root that only signs the
 * intermediate, and the intermediate that signs every leaf certificate and
 * every CRL (so Erlang's CRL check, which looks the CRL up by the leaf's
 * issuer, finds it without a distribution point).
 */
export class CertificateAuthority {
  readonly dir: string;
  readonly trustDomain: string;
  readonly rootCertificatePem: string;
  readonly intermediateCertificatePem: string;
  readonly #trustBundlePem: string;
  readonly #issuer: Issuer;

  private constructor(dir: string, trustDomain: string, root: string, bundle: string, issuer: Issuer) {
    this.dir = dir;
    this.trustDomain = trustDomain;
    this.rootCertificatePem = root;
    this.intermediateCertificatePem = certificatePem(issuer.certificate);
    this.#trustBundlePem = bundle;
    this.#issuer = issuer;
  }

  /** Creates a new CA in `dir` (made 0700 if missing). Refuses a directory that already holds CA files. */
  static async init(dir: string, options: InitOptions): Promise<CertificateAuthority> {
    assertValidTrustDomain(options.trustDomain);
    const rootTtlMs = options.rootTtlMs ?? DEFAULT_ROOT_TTL_MS;
    const intermediateTtlMs = options.intermediateTtlMs ?? DEFAULT_INTERMEDIATE_TTL_MS;
    assertTtl(rootTtlMs, 'rootTtlMs');
    assertTtl(intermediateTtlMs, 'intermediateTtlMs');
    if (intermediateTtlMs > rootTtlMs) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the intermediate lifetime (${formatDuration(intermediateTtlMs)}) exceeds the root lifetime (${formatDuration(rootTtlMs)})`,
        { hint: 'an intermediate cannot outlive the root that signed it' },
      );
    }
    const absolute = await emptyCaDirectory(dir);

    const td = options.trustDomain;
    const now = Date.now();
    const notBefore = wholeSeconds(new Date(now - BACKDATE_MS));
    const [rootKeyPem, intermediateKeyPem] = await Promise.all([
      generatePrivateKey('ecdsa-p256'),
      generatePrivateKey('ecdsa-p256'),
    ]);
    const [rootKey, intermediateKey] = await Promise.all([
      loadSigningKey(rootKeyPem),
      loadSigningKey(intermediateKeyPem),
    ]);
    const rootKeyId = (await SubjectKeyIdentifierExtension.create(rootKey.spki)).keyId;
    const root = await X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: [`DMR Root CA (${td})`] }],
      notBefore,
      notAfter: wholeSeconds(new Date(now + rootTtlMs)),
      keys: { privateKey: rootKey.privateKey, publicKey: rootKey.publicKey },
      signingAlgorithm: rootKey.signingAlgorithm,
      extensions: [
        new BasicConstraintsExtension(true, 1, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        new SubjectKeyIdentifierExtension(rootKeyId),
      ],
    });
    const intermediate = await signIntermediate(root, rootKey, intermediateKey, {
      commonName: `DMR Intermediate CA (${td})`,
      now,
      ttlMs: intermediateTtlMs,
    });

    const state: CaState = { trustDomain: td, createdAt: new Date(now), crlNumber: 0, issued: [] };
    // ca.json goes last in the list: a CA directory is complete exactly when it exists.
    await writeFilesAtomic([
      { path: join(absolute, CA_FILES.rootKey), data: rootKeyPem, mode: 0o600 },
      { path: join(absolute, CA_FILES.intermediateKey), data: intermediateKeyPem, mode: 0o600 },
      { path: join(absolute, CA_FILES.rootCertificate), data: certificatePem(root), mode: 0o644 },
      { path: join(absolute, CA_FILES.intermediateCertificate), data: certificatePem(intermediate), mode: 0o644 },
      { path: join(absolute, CA_FILES.state), data: serialiseState(state), mode: 0o600 },
    ]);
    return CertificateAuthority.open(absolute);
  }

  /**
   * Creates a CA in `dir` whose intermediate is signed by the root of the
   * CA in `rootDir` (which needs its root.key). The new directory gets the
   * root certificate and trust bundle but never the root key: this is how a
   * service such as CentOps gets its own issuing CA while the root stays
   * with `dmr pki`, offline.
   */
  static async initSubordinate(
    dir: string,
    options: { rootDir: string; intermediateTtlMs?: number; commonName?: string },
  ): Promise<CertificateAuthority> {
    const rootDir = resolve(options.rootDir);
    const parent = await CertificateAuthority.open(rootDir);
    const intermediateTtlMs = options.intermediateTtlMs ?? DEFAULT_INTERMEDIATE_TTL_MS;
    assertTtl(intermediateTtlMs, 'intermediateTtlMs');
    let rootKeyPem: string;
    try {
      rootKeyPem = await readFile(join(rootDir, CA_FILES.rootKey), 'utf8');
    } catch (error) {
      throw new DmrError('NOT_FOUND', `${join(rootDir, CA_FILES.rootKey)} is needed to sign a new intermediate`, {
        details: { dir: rootDir },
        hint: 'bring the offline root key back for this step, or use the directory where `dmr pki init` made it',
        cause: error,
      });
    }
    const rootKey = await loadSigningKey(rootKeyPem, CA_FILES.rootKey);
    const [root] = parseCertificates(parent.rootCertificatePem, CA_FILES.rootCertificate);
    if (!root) throw new DmrError('CA_INVALID', `${rootDir} has no root certificate`);
    const now = Date.now();
    if (now + intermediateTtlMs > root.notAfter.getTime()) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the intermediate would outlive the root (${root.notAfter.toISOString()})`,
        {
          hint: 'ask for a shorter intermediate lifetime',
        },
      );
    }
    const absolute = await emptyCaDirectory(dir);
    const intermediateKeyPem = await generatePrivateKey('ecdsa-p256');
    const intermediate = await signIntermediate(root, rootKey, await loadSigningKey(intermediateKeyPem), {
      // A distinct name keeps name-based chain building from confusing it with the root's other intermediates.
      commonName: options.commonName ?? `DMR Subordinate CA (${parent.trustDomain})`,
      now,
      ttlMs: intermediateTtlMs,
    });
    const state: CaState = { trustDomain: parent.trustDomain, createdAt: new Date(now), crlNumber: 0, issued: [] };
    const bundle = parent.trustBundlePem();
    await writeFilesAtomic([
      { path: join(absolute, CA_FILES.intermediateKey), data: intermediateKeyPem, mode: 0o600 },
      { path: join(absolute, CA_FILES.rootCertificate), data: parent.rootCertificatePem, mode: 0o644 },
      ...(bundle === parent.rootCertificatePem
        ? []
        : [{ path: join(absolute, CA_FILES.trustBundle), data: bundle, mode: 0o644 }]),
      { path: join(absolute, CA_FILES.intermediateCertificate), data: certificatePem(intermediate), mode: 0o644 },
      { path: join(absolute, CA_FILES.state), data: serialiseState(state), mode: 0o600 },
    ]);
    return CertificateAuthority.open(absolute);
  }

  /** Opens the CA in `dir`, checking that its files are complete and belong together. */
  static async open(dir: string): Promise<CertificateAuthority> {
    const absolute = resolve(dir);
    const initHint = `create one with: dmr pki init --dir ${dir} --trust-domain <name>`;
    try {
      if (!(await stat(absolute)).isDirectory()) {
        throw new DmrError('CA_INVALID', `${absolute} is not a directory`, { hint: initHint });
      }
    } catch (error) {
      if (error instanceof DmrError) throw error;
      throw new DmrError('NOT_FOUND', `no CA directory at ${absolute}`, { details: { dir: absolute }, hint: initHint });
    }
    const present = await existingCaFiles(absolute);
    if (present.length === 0) {
      throw new DmrError('NOT_FOUND', `${absolute} holds no CA`, { details: { dir: absolute }, hint: initHint });
    }
    // root.key may be absent: it only signs intermediates and is meant to be kept offline (initSubordinate).
    const missing = CA_REQUIRED_FILES.filter((file) => file !== CA_FILES.rootKey && !present.includes(file));
    if (missing.length > 0) {
      throw new DmrError('CA_INVALID', `the CA in ${absolute} is missing ${missing.join(', ')}`, {
        details: { dir: absolute, missing },
        hint: 'restore the missing files from a backup; an interrupted init leaves files without ca.json: remove the directory and run init again',
      });
    }

    const state = await readState(absolute);
    const read = (file: string) => readFile(join(absolute, file), 'utf8');
    const invalid = (problem: string, cause?: unknown) =>
      new DmrError('CA_INVALID', `the CA in ${absolute}: ${problem}`, {
        details: { dir: absolute },
        hint: 'the CA files do not belong together; restore them from one backup',
        cause,
      });
    const parseOne = (pem: string, file: string): X509Certificate => {
      try {
        const [certificate, ...rest] = parseCertificates(pem, file);
        if (!certificate || rest.length > 0) throw invalid(`${file} must hold exactly one certificate`);
        return certificate;
      } catch (error) {
        throw error instanceof DmrError && error.code === 'CA_INVALID'
          ? error
          : invalid(`${file} is unreadable`, error);
      }
    };
    const loadKey = async (file: string): Promise<SigningKey> => {
      try {
        return await loadSigningKey(await read(file), file);
      } catch (error) {
        throw invalid(`${file} is unreadable: ${error instanceof Error ? error.message : String(error)}`, error);
      }
    };

    const rootPem = await read(CA_FILES.rootCertificate);
    const root = parseOne(rootPem, CA_FILES.rootCertificate);
    const intermediate = parseOne(await read(CA_FILES.intermediateCertificate), CA_FILES.intermediateCertificate);
    const [rootKey, intermediateKey] = await Promise.all([
      present.includes(CA_FILES.rootKey) ? loadKey(CA_FILES.rootKey) : undefined,
      loadKey(CA_FILES.intermediateKey),
    ]);
    if (rootKey && !rootKey.spki.equals(Buffer.from(root.publicKey.rawData))) {
      throw invalid('root.key does not match root.crt');
    }
    if (!intermediateKey.spki.equals(Buffer.from(intermediate.publicKey.rawData))) {
      throw invalid('intermediate.key does not match intermediate.crt');
    }
    const signedByRoot =
      sameName(intermediate.issuerName, root.subjectName) &&
      (await intermediate.verify({ publicKey: root.publicKey, signatureOnly: true }));
    if (!signedByRoot) throw invalid('intermediate.crt is not signed by root.crt');

    let bundle = rootPem;
    try {
      bundle = await read(CA_FILES.trustBundle);
    } catch (error) {
      if (errno(error) !== 'ENOENT') throw invalid(`${CA_FILES.trustBundle} is unreadable`, error);
    }
    const rootFingerprint = sha256Hex(root.rawData);
    let bundleRoots: X509Certificate[];
    try {
      bundleRoots = parseCertificates(bundle, CA_FILES.trustBundle);
    } catch (error) {
      throw invalid(`${CA_FILES.trustBundle} is unreadable`, error);
    }
    if (!bundleRoots.some((certificate) => sha256Hex(certificate.rawData) === rootFingerprint)) {
      throw invalid(`${CA_FILES.trustBundle} does not contain root.crt, so nothing this CA issues would be trusted`);
    }

    const issuer: Issuer = {
      certificate: intermediate,
      key: intermediateKey,
      keyId: await keyIdentifier(intermediate),
    };
    return new CertificateAuthority(absolute, state.trustDomain, rootPem, bundle, issuer);
  }

  /** The roots a peer should trust: trust-bundle.pem when present (several roots during a rollover), else root.crt. */
  trustBundlePem(): string {
    return this.#trustBundlePem;
  }

  /** Signs a CSR after checking it (see checkCsr). The certificate's names come from `options`, never from the CSR. */
  async issue(options: IssueOptions): Promise<IssuedCertificate> {
    const subject = certificateSubject(options.kind, options.id, options.role);
    const hosts = checkHostNames(subject, options.dns, options.ips);
    const usage = leafUsage(subject);
    const { notBefore, notAfter } = this.#validity(options);
    const checked = await checkCsr(options.csrPem, {
      id: options.id,
      kind: options.kind,
      role: options.role,
      trustDomain: this.trustDomain,
      hosts,
    });
    const isRsa = checked.key.algorithm.startsWith('rsa-');
    const issuer = this.#issuer;

    return withCaLock(this.dir, async () => {
      const state = await readState(this.dir);
      const taken = new Set(state.issued.map((record) => record.serial));
      let serial = randomSerial();
      while (taken.has(serial)) serial = randomSerial();

      const certificate = await X509CertificateGenerator.create({
        serialNumber: serial,
        subject: [{ CN: [options.id] }],
        issuer: issuer.certificate.subjectName,
        notBefore,
        notAfter,
        publicKey: checked.publicKeySpki,
        signingKey: issuer.key.privateKey,
        signingAlgorithm: issuer.key.signingAlgorithm,
        extensions: [
          new BasicConstraintsExtension(false, undefined, true),
          // RSA key exchange (TLS 1.2 RSA suites) needs keyEncipherment; ECDSA keys only sign.
          new KeyUsagesExtension(KeyUsageFlags.digitalSignature | (isRsa ? KeyUsageFlags.keyEncipherment : 0), true),
          // A signing-only key (config-signer) gets no EKU at all, so no TLS stack accepts it as a peer.
          ...(usage.eku.length === 0
            ? []
            : [new ExtendedKeyUsageExtension(usage.eku.map((purpose) => ExtendedKeyUsage[purpose]))]),
          await SubjectKeyIdentifierExtension.create(checked.publicKeySpki),
          new AuthorityKeyIdentifierExtension(issuer.keyId, false),
          sanExtension(subjectUris(this.trustDomain, subject), hosts),
        ],
      });
      const issued: IssuedCertificate = {
        certificatePem: certificatePem(certificate),
        chainPem: certificatePem(certificate) + this.intermediateCertificatePem,
        serial,
        notBefore,
        notAfter,
        fingerprintSha256: sha256Hex(certificate.rawData),
        issuedAt: new Date(),
      };
      state.issued.push({
        serial,
        kind: options.kind,
        id: options.id,
        ...(options.role === undefined ? {} : { role: options.role }),
        notBefore,
        notAfter,
        fingerprintSha256: issued.fingerprintSha256,
        dns: hosts.dns,
        ips: hosts.ips,
        issuedAt: issued.issuedAt,
      });
      await writeState(this.dir, state);
      return issued;
    });
  }

  /** Development convenience: makes the key here instead of where it will be used. Production keys come as CSRs. */
  async issueWithKey(options: IssueWithKeyOptions): Promise<IssuedCertificate & { privateKeyPem: string }> {
    checkHostNames(certificateSubject(options.kind, options.id, options.role), options.dns, options.ips);
    const privateKeyPem = await generatePrivateKey(options.keyAlgorithm);
    const csrPem = await createCsr({
      id: options.id,
      kind: options.kind,
      role: options.role,
      trustDomain: this.trustDomain,
      privateKeyPem,
      dns: options.dns,
      ips: options.ips,
    });
    const issued = await this.issue({
      csrPem,
      kind: options.kind,
      id: options.id,
      role: options.role,
      dns: options.dns,
      ips: options.ips,
      ttlMs: options.ttlMs,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
    });
    return { ...issued, privateKeyPem };
  }

  /** Records a revocation; it reaches peers with the next CRL (createCrl). */
  async revoke(serial: string, reason: RevocationReason): Promise<void> {
    const wanted = normaliseSerial(serial);
    assertRevocationReason(reason);
    await withCaLock(this.dir, async () => {
      const state = await readState(this.dir);
      const record = state.issued.find((candidate) => candidate.serial === wanted);
      if (!record) {
        throw new DmrError('UNKNOWN_SERIAL', `this CA has not issued a certificate with serial ${wanted}`, {
          details: { serial: wanted },
          hint: 'list what this CA issued with: dmr pki list --dir <dir>',
        });
      }
      if (record.revoked) {
        throw new DmrError(
          'ALREADY_REVOKED',
          `certificate ${wanted} (${record.kind} ${record.id}) was already revoked at ${record.revoked.at.toISOString()}`,
          { details: { serial: wanted, reason: record.revoked.reason } },
        );
      }
      record.revoked = { at: wholeSeconds(new Date()), reason };
      await writeState(this.dir, state);
    });
  }

  /** A fresh CRL of every revoked certificate, signed by the intermediate, with the next cRLNumber. */
  async createCrl(options: CrlOptions = {}): Promise<string> {
    const nextUpdateMs = options.nextUpdateMs ?? DEFAULT_CRL_NEXT_UPDATE_MS;
    assertTtl(nextUpdateMs, 'nextUpdateMs');
    return withCaLock(this.dir, async () => {
      const state = await readState(this.dir);
      const now = Date.now();
      const crlNumber = state.crlNumber + 1;
      const pem = await buildCrl({
        issuer: this.#issuer.certificate,
        issuerKeyId: this.#issuer.keyId,
        signingKey: this.#issuer.key.privateKey,
        signingAlgorithm: this.#issuer.key.signingAlgorithm,
        crlNumber,
        thisUpdate: wholeSeconds(new Date(now)),
        nextUpdate: wholeSeconds(new Date(now + nextUpdateMs)),
        entries: state.issued.flatMap((record) =>
          record.revoked
            ? [{ serial: record.serial, revokedAt: record.revoked.at, reason: record.revoked.reason }]
            : [],
        ),
      });
      // The number is spent only once the CRL exists, so numbers stay gapless and increasing.
      await writeState(this.dir, { ...state, crlNumber });
      return pem;
    });
  }

  /** Everything this CA has issued, oldest first. */
  async listIssued(): Promise<IssuedRecord[]> {
    return (await readState(this.dir)).issued;
  }

  /** Looks up one issued certificate by serial (any notation normaliseSerial accepts). */
  async findIssued(serial: string): Promise<IssuedRecord | undefined> {
    const wanted = normaliseSerial(serial);
    return (await this.listIssued()).find((record) => record.serial === wanted);
  }

  #validity(options: IssueOptions): { notBefore: Date; notAfter: Date } {
    const now = Date.now();
    let notBefore: Date;
    let notAfter: Date;
    if (options.notAfter !== undefined) {
      notAfter = wholeSeconds(options.notAfter);
      notBefore = wholeSeconds(options.notBefore ?? new Date(now - BACKDATE_MS));
    } else {
      const ttlMs = options.ttlMs ?? DEFAULT_LEAF_TTL_MS;
      assertTtl(ttlMs, 'ttl');
      notBefore = wholeSeconds(options.notBefore ?? new Date(now - BACKDATE_MS));
      notAfter = wholeSeconds(new Date(Math.max(now, notBefore.getTime()) + ttlMs));
    }
    if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime()) || notAfter <= notBefore) {
      throw new DmrError('INVALID_ARGUMENT', 'the validity window is empty: notAfter must be later than notBefore', {
        details: { notBefore: String(notBefore), notAfter: String(notAfter) },
      });
    }
    const caNotAfter = this.#issuer.certificate.notAfter;
    if (notAfter > caNotAfter) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the certificate would outlive the intermediate CA, which expires ${caNotAfter.toISOString()}`,
        { hint: 'ask for a shorter --ttl, or renew the intermediate first' },
      );
    }
    return { notBefore, notAfter };
  }
}

/** An issuing intermediate (pathLen 0) for `intermediateKey`, signed by the root. */
async function signIntermediate(
  root: X509Certificate,
  rootKey: SigningKey,
  intermediateKey: SigningKey,
  options: { commonName: string; now: number; ttlMs: number },
): Promise<X509Certificate> {
  return X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [options.commonName] }],
    issuer: root.subjectName,
    notBefore: wholeSeconds(new Date(options.now - BACKDATE_MS)),
    notAfter: wholeSeconds(new Date(options.now + options.ttlMs)),
    publicKey: intermediateKey.spki,
    signingKey: rootKey.privateKey,
    signingAlgorithm: rootKey.signingAlgorithm,
    extensions: [
      new BasicConstraintsExtension(true, 0, true),
      new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      await SubjectKeyIdentifierExtension.create(intermediateKey.spki),
      new AuthorityKeyIdentifierExtension(await keyIdentifier(root), false),
    ],
  });
}

/** `dir` as an absolute, private directory that holds no CA yet (ALREADY_EXISTS otherwise). */
async function emptyCaDirectory(dir: string): Promise<string> {
  const absolute = resolve(dir);
  await ensurePrivateDirectory(absolute);
  const present = await existingCaFiles(absolute);
  if (present.length > 0) {
    throw new DmrError('ALREADY_EXISTS', `${absolute} already holds a CA (${present.join(', ')})`, {
      details: { dir: absolute, files: present },
      hint: 'open it instead, or choose an empty directory for a new CA',
    });
  }
  return absolute;
}

async function existingCaFiles(dir: string): Promise<string[]> {
  const entries = new Set(await readdir(dir));
  return CA_REQUIRED_FILES.filter((file) => entries.has(file));
}
