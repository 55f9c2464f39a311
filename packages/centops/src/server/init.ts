/**
 * `dmr centops init`: everything a new CentOps needs, in one directory.
 *
 *   DIR/centops.yaml          server config (serve --dir DIR reads it)
 *   DIR/centops.db            SQLite store (unless --database points elsewhere)
 *   DIR/ca/                   CentOps' issuing CA: intermediate + root certificate, never the root key
 *   DIR/dev-root/             --dev only: a throwaway root CA (with its key) for development
 *   DIR/tls/api.{crt,key}     the API server certificate (centops/api, serverAuth)
 *   DIR/signer/config-signer.{crt,key}   the configuration-signing key (digitalSignature only)
 *   DIR/signer/policy-signer.{crt,key}   the policy-bundle signing key; the default policy pack is stored
 *                             as version 1 of the policy set (src/policy/init.ts; needs opa)
 *   ADMIN/<id>.{crt,key}, ADMIN/<id>.yaml, ADMIN/trust-bundle.pem
 *                             the first admin's credentials and CLI config, OUTSIDE DIR
 *                             (--admin-dir, default DIR-admin): hand them to the admin and
 *                             delete them from this host; `serve` refuses to start while a key
 *                             that is not CentOps' own lies in DIR (stray-keys.ts)
 *
 * The keys of the server, the signer and the first admin are generated here:
 * they are CentOps' own keys, and the first admin has nobody yet to send a
 * CSR to. Every later key is generated where it is used (enrolment). The
 * three certificates are recorded in the store (audited as done locally),
 * so `GET /v1/certificates` lists them and an admin can revoke them there.
 */
import { chmod, mkdir, readdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { DmrError, assertValidId, assertValidTrustDomain } from '@dmr/core';
import {
  CertificateAuthority,
  assertCanCreate,
  ensurePrivateDirectory,
  writeFilesAtomic,
  type PendingFile,
} from '@dmr/pki';
import { initPolicy } from '../policy/init.js';
import { openStore } from '../store/index.js';
import { CONFIG_FILE, formatListen, parseListen, renderConfig, type CentOpsConfig } from './config.js';
import { localActor, operatorCredentialFiles, recordIssued } from './credentials.js';

const DAY_MS = 86_400_000;
/** Long enough to not be a chore, short enough that a lost laptop stops mattering; renew with the API. */
export const ADMIN_CERTIFICATE_TTL_MS = 90 * DAY_MS;
export const SERVER_CERTIFICATE_TTL_MS = 180 * DAY_MS;
export const DEV_TRUST_DOMAIN = 'dmr.localhost';

export interface InitCentOpsOptions {
  dir: string;
  /** A `dmr pki` CA directory whose root (root.key needed) signs CentOps' intermediate. */
  pkiDir?: string;
  /** Make a fresh root in DIR/dev-root instead (development only). */
  dev?: boolean;
  database?: string;
  trustDomain?: string;
  listen?: string;
  enrolListen?: string;
  admin?: string;
  /**
   * Where the first admin's key, certificate, trust bundle and CLI config go:
   * outside DIR (default: DIR-admin beside it). CentOps never keeps them.
   */
  adminDir?: string;
  /** Extra host names for the API certificate (the listen host is always included). */
  dns?: string[];
  ips?: string[];
}

export interface InitCentOpsResult {
  dir: string;
  config: string;
  adminConfig: string;
  trustDomain: string;
  database: string;
  caDir: string;
  root: 'dev' | string;
  listen: string;
  enrolListen: string;
  /** The first admin's credentials, in `dir` (outside the CentOps directory): hand them over and delete them. */
  admin: { id: string; dir: string; certificate: string; key: string; serial: string; notAfter: string };
  files: string[];
}

async function assertEmptyOrMissing(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return;
    throw error;
  }
  if (entries.length > 0) {
    throw new DmrError('ALREADY_EXISTS', `${dir} is not empty (${entries.slice(0, 5).join(', ')})`, {
      details: { dir, files: entries },
      hint: 'choose a new directory; init never overwrites an existing CentOps',
    });
  }
}

function apiHostNames(listenHost: string, dns: string[], ips: string[]): { dns: string[]; ips: string[] } {
  const names = { dns: new Set(['localhost', ...dns]), ips: new Set(['127.0.0.1', ...ips]) };
  // A wildcard listen address is no name to verify; the explicit --dns/--ip cover that case.
  if (isIP(listenHost) !== 0) {
    if (listenHost !== '0.0.0.0' && listenHost !== '::') names.ips.add(listenHost);
  } else {
    names.dns.add(listenHost.toLowerCase());
  }
  return { dns: [...names.dns], ips: [...names.ips] };
}

export async function initCentOps(options: InitCentOpsOptions): Promise<InitCentOpsResult> {
  if ((options.pkiDir === undefined) === (options.dev !== true)) {
    throw new DmrError('INVALID_ARGUMENT', 'give exactly one of --pki ROOTDIR or --dev', {
      hint: 'production: --pki with the directory of `dmr pki init`; development: --dev makes a throwaway root',
    });
  }
  const dir = resolve(options.dir);
  const adminId = options.admin ?? 'admin';
  assertValidId(adminId, 'admin id');
  const listen = parseListen(options.listen ?? '127.0.0.1:8443');
  const enrolListen = parseListen(options.enrolListen ?? `${listen.host}:${listen.port + 1}`, '--enrol-listen');
  if (options.trustDomain !== undefined) assertValidTrustDomain(options.trustDomain);
  await assertEmptyOrMissing(dir);
  const adminDir = resolve(options.adminDir ?? `${dir}-admin`);
  const insideDir = relative(dir, adminDir);
  if (insideDir === '' || (!insideDir.startsWith('..') && !isAbsolute(insideDir))) {
    throw new DmrError('INVALID_ARGUMENT', `--admin-dir ${adminDir} is inside the CentOps directory ${dir}`, {
      hint: 'the first admin’s key must not stay on the server: choose a directory outside it',
    });
  }
  const adminPaths = {
    configPath: join(adminDir, `${adminId}.yaml`),
    certificatePath: join(adminDir, `${adminId}.crt`),
    keyPath: join(adminDir, `${adminId}.key`),
    caBundlePath: join(adminDir, 'trust-bundle.pem'),
  };
  // Refused before any key exists, like a non-empty DIR.
  await ensurePrivateDirectory(adminDir);
  for (const path of Object.values(adminPaths)) await assertCanCreate(path);

  // The database is checked before any key exists, so a refused init leaves no CA behind.
  const database = options.database ?? 'centops.db';
  const databaseLocation = /^[a-z][a-z0-9+.-]+:\/\//i.test(database) ? database : resolve(dir, database);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const store = await openStore(databaseLocation);
  try {
    const used = (await store.listAudit({ limit: 1 })).items.length > 0 || (await store.revision()) > 0;
    if (used) {
      throw new DmrError('ALREADY_EXISTS', 'the database already holds a CentOps registry', {
        hint: 'give an empty database; init never takes over an existing one',
      });
    }
  } finally {
    await store.close();
  }
  // The registry and token hashes are not for other local users.
  if (!databaseLocation.startsWith('postgres')) await chmod(databaseLocation, 0o600).catch(() => undefined);

  let rootDir: string;
  if (options.dev === true) {
    rootDir = join(dir, 'dev-root');
    await CertificateAuthority.init(rootDir, { trustDomain: options.trustDomain ?? DEV_TRUST_DOMAIN });
  } else {
    rootDir = resolve(options.pkiDir ?? '');
    const root = await CertificateAuthority.open(rootDir);
    if (options.trustDomain !== undefined && options.trustDomain !== root.trustDomain) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `--trust-domain ${options.trustDomain} differs from the root's ${root.trustDomain}`,
        {
          hint: 'leave --trust-domain out: it is taken from the root CA',
        },
      );
    }
  }
  const caDir = join(dir, 'ca');
  const ca = await CertificateAuthority.initSubordinate(caDir, {
    rootDir,
    commonName: `DMR CentOps CA (${(await CertificateAuthority.open(rootDir)).trustDomain})`,
  });

  const hosts = apiHostNames(listen.host, options.dns ?? [], options.ips ?? []);
  const api = await ca.issueWithKey({ kind: 'centops', id: 'api', ...hosts, ttlMs: SERVER_CERTIFICATE_TTL_MS });
  const signer = await ca.issueWithKey({ kind: 'centops', id: 'config-signer', ttlMs: SERVER_CERTIFICATE_TTL_MS });
  const admin = await ca.issueWithKey({
    kind: 'operator',
    id: adminId,
    role: 'admin',
    ttlMs: ADMIN_CERTIFICATE_TTL_MS,
  });

  const recording = await openStore(databaseLocation);
  try {
    const actor = localActor('init');
    await recordIssued(recording, { kind: 'centops', id: 'api' }, api, actor);
    await recordIssued(recording, { kind: 'centops', id: 'config-signer' }, signer, actor);
    await recordIssued(recording, { kind: 'operator', id: adminId, role: 'admin' }, admin, actor);
  } finally {
    await recording.close();
  }

  for (const sub of ['tls', 'signer']) await mkdir(join(dir, sub), { mode: 0o700 });
  const config: CentOpsConfig = {
    trustDomain: ca.trustDomain,
    listen,
    enrolListen,
    database,
    caDir: 'ca',
    tls: { certificate: 'tls/api.crt', key: 'tls/api.key' },
    signer: { certificate: 'signer/config-signer.crt', key: 'signer/config-signer.key' },
    logLevel: 'info',
  };
  const files: PendingFile[] = [
    { path: join(dir, 'tls/api.crt'), data: api.chainPem, mode: 0o644 },
    { path: join(dir, 'tls/api.key'), data: api.privateKeyPem, mode: 0o600 },
    { path: join(dir, 'signer/config-signer.crt'), data: signer.chainPem, mode: 0o644 },
    { path: join(dir, 'signer/config-signer.key'), data: signer.privateKeyPem, mode: 0o600 },
    ...operatorCredentialFiles({
      ...adminPaths,
      caBundlePem: ca.trustBundlePem(),
      chainPem: admin.chainPem,
      privateKeyPem: admin.privateKeyPem,
      endpoint: `https://${formatListen(listen)}`,
      enrolEndpoint: `https://${formatListen(enrolListen)}`,
    }),
    { path: join(dir, CONFIG_FILE), data: renderConfig(config), mode: 0o600 },
  ];
  await writeFilesAtomic(files);
  const policy = await initPolicy({
    database: databaseLocation,
    ca,
    configSignerCertificate: join(dir, 'signer/config-signer.crt'),
    actor: localActor('init'),
  });
  return {
    dir,
    config: join(dir, CONFIG_FILE),
    adminConfig: adminPaths.configPath,
    trustDomain: ca.trustDomain,
    database: databaseLocation.startsWith('postgres') ? 'PostgreSQL' : databaseLocation,
    caDir,
    root: options.dev === true ? 'dev' : rootDir,
    listen: formatListen(listen),
    enrolListen: formatListen(enrolListen),
    admin: {
      id: adminId,
      dir: adminDir,
      certificate: adminPaths.certificatePath,
      key: adminPaths.keyPath,
      serial: admin.serial,
      notAfter: admin.notAfter.toISOString(),
    },
    files: [caDir, ...files.map((file) => file.path), ...policy.files],
  };
}
