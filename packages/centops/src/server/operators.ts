/**
 * `dmr centops operator add`: an operator certificate made on the CentOps
 * host itself, for the cases the API cannot serve: bootstrap (the only
 * admin lost their key, or a second admin is wanted before anyone uses the
 * API) and offline sites. It needs the CentOps directory (the CA's key) and
 * its database, so whoever can run it already controls CentOps.
 *
 * Like init it generates the key here and writes key, certificate, trust
 * bundle and an operator CLI config into --out-dir; hand that directory over
 * and delete it. The certificate is recorded in the store and audited as a
 * local action. Online, prefer `POST /v1/operators/certificates`: the key is
 * then made by the operator and never leaves their machine.
 */
import { isAbsolute, join, relative, resolve } from 'node:path';
import { DmrError, parseDuration } from '@dmr/core';
import {
  assertCanCreate,
  certificateSubject,
  ensurePrivateDirectory,
  writeFilesAtomic,
  CertificateAuthority,
  type OperatorRole,
} from '@dmr/pki';
import { openStore } from '../store/index.js';
import { CONFIG_FILE, formatListen, loadConfig } from './config.js';
import { localActor, operatorCredentialFiles, recordIssued } from './credentials.js';
import { ADMIN_CERTIFICATE_TTL_MS } from './init.js';

/** Operator certificates are short enough that a lost laptop stops mattering; renew through the API. */
export const OPERATOR_CERTIFICATE_TTL_MS = ADMIN_CERTIFICATE_TTL_MS;
export const OPERATOR_CERTIFICATE_MAX_TTL_MS = 365 * 86_400_000;

/** An operator certificate lifetime from a duration (`30d`), default 90 days, at most a year. */
export function operatorTtlMs(ttl: string | undefined): number {
  if (ttl === undefined) return OPERATOR_CERTIFICATE_TTL_MS;
  const ms = parseDuration(ttl);
  if (ms < 60_000 || ms > OPERATOR_CERTIFICATE_MAX_TTL_MS) {
    throw new DmrError('INVALID_ARGUMENT', `an operator certificate lives between 1m and 365d, not ${ttl}`, {
      details: { ttl },
    });
  }
  return ms;
}

export interface AddOperatorOptions {
  /** The CentOps directory (its centops.yaml, CA and database are used). */
  dir: string;
  id: string;
  role: string;
  /** Where the key, certificate, trust bundle and CLI config are written; created if missing, files never overwritten. */
  outDir: string;
  ttl?: string;
}

export interface AddOperatorResult {
  id: string;
  role: OperatorRole;
  serial: string;
  notAfter: string;
  config: string;
  certificate: string;
  key: string;
  files: string[];
}

export async function addOperator(options: AddOperatorOptions): Promise<AddOperatorResult> {
  const subject = certificateSubject('operator', options.id, options.role);
  if (subject.kind !== 'operator') throw new DmrError('INTERNAL', 'an operator subject was expected');
  const ttlMs = operatorTtlMs(options.ttl);
  const config = await loadConfig(join(resolve(options.dir), CONFIG_FILE));
  const outDir = resolve(options.outDir);
  const inside = relative(resolve(options.dir), outDir);
  if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
    throw new DmrError('INVALID_ARGUMENT', `--out-dir ${outDir} is inside the CentOps directory`, {
      hint: 'an operator’s key must not stay on the server (CentOps refuses to serve while it is there): choose a directory outside it',
    });
  }
  const paths = {
    configPath: join(outDir, `${subject.id}.yaml`),
    certificatePath: join(outDir, `${subject.id}.crt`),
    keyPath: join(outDir, `${subject.id}.key`),
    caBundlePath: join(outDir, 'trust-bundle.pem'),
  };
  // Refuse before anything is issued: a certificate nobody receives is only something to revoke.
  await ensurePrivateDirectory(outDir);
  for (const path of Object.values(paths)) await assertCanCreate(path);

  const ca = await CertificateAuthority.open(config.caDir);
  const store = await openStore(config.database);
  let issued;
  try {
    issued = await ca.issueWithKey({ kind: 'operator', id: subject.id, role: subject.role, ttlMs });
    await recordIssued(store, subject, issued, localActor('operator add'));
  } finally {
    await store.close();
  }
  const files = operatorCredentialFiles({
    ...paths,
    caBundlePem: ca.trustBundlePem(),
    chainPem: issued.chainPem,
    privateKeyPem: issued.privateKeyPem,
    endpoint: `https://${formatListen(config.listen)}`,
    enrolEndpoint: `https://${formatListen(config.enrolListen)}`,
  });
  await writeFilesAtomic(files);
  return {
    id: subject.id,
    role: subject.role,
    serial: issued.serial,
    notAfter: issued.notAfter.toISOString(),
    config: paths.configPath,
    certificate: paths.certificatePath,
    key: paths.keyPath,
    files: files.map((file) => file.path),
  };
}
