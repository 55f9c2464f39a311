/**
 * The node's data directory: the interface between the agent (writer) and
 * the router processes (readers), and what survives a restart.
 *
 *   identity/node.key          the node's private key (0600; generated here, never sent)
 *   identity/node.crt          its certificate chain (leaf, intermediate)
 *   identity/trust-bundle.pem  the CentOps roots
 *   state/config.jws           the last applied signed document (last known good)
 *   state/policy.tar.gz        the verified bundle it names
 *   state/status.json          what the agent last did (applied, refused, connected)
 *   state/crl.pem              the last CRL fetched (signer checks, also offline)
 *   state/replay/shard-<n>/    router n's replay memory (ReplayJournal): the one part
 *                              of the data dir a router writes, and only its own shard's
 *
 * Write order matters for readers that may look at any moment: the bundle
 * is written before the document that names it, each by rename, so a reader
 * that sees a new config.jws finds its bundle; a reader that sees a new
 * bundle with the old document checks the digest and keeps what it had.
 * Readers re-verify everything (signature, node id, bundle digest): the
 * files are only as trusted as the checks made on reading them.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';
import { configSignerSpiffeId, verifyNodeConfig, type LocalStatus, type NodeConfig } from '@dmr/contract';
import { ensurePrivateDirectory, writeFileAtomic } from '@dmr/pki';

export interface DataPaths {
  identityDir: string;
  keyFile: string;
  certificateFile: string;
  trustBundleFile: string;
  stateDir: string;
  configFile: string;
  bundleFile: string;
  statusFile: string;
  /** The last CRL fetched from CentOps: signer checks use it, also on an offline start. */
  crlFile: string;
}

export function dataPaths(dataDir: string): DataPaths {
  const identityDir = join(dataDir, 'identity');
  const stateDir = join(dataDir, 'state');
  return {
    identityDir,
    keyFile: join(identityDir, 'node.key'),
    certificateFile: join(identityDir, 'node.crt'),
    trustBundleFile: join(identityDir, 'trust-bundle.pem'),
    stateDir,
    configFile: join(stateDir, 'config.jws'),
    bundleFile: join(stateDir, 'policy.tar.gz'),
    statusFile: join(stateDir, 'status.json'),
    crlFile: join(stateDir, 'crl.pem'),
  };
}

/** Where router `shard` keeps its replay memory (message/replay-journal.ts). */
export function replayDir(dataDir: string, shard: number): string {
  return join(dataDir, 'state', 'replay', `shard-${shard}`);
}

export type { LocalStatus } from '@dmr/contract';

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export interface LastGood {
  jws: string;
  config: NodeConfig;
  /** The verified bundle, when the document names a policy. */
  bundle: Buffer | undefined;
}

export interface VerifyContext {
  nodeId: string;
  trustDomain: string;
  trustBundlePem: string;
  /** Refuse documents older than this. */
  minRevision?: number;
  /** The CRLs the node fetched: a document signed by a revoked signer is refused. */
  crlPems?: readonly string[];
}

/** Verifies a signed document for this node (verifyNodeConfig with the node's trust and identity). */
export async function verifySigned(jws: string, context: VerifyContext): Promise<NodeConfig> {
  const { config } = await verifyNodeConfig(jws, {
    trustBundlePem: context.trustBundlePem,
    expectedSigner: configSignerSpiffeId(context.trustDomain),
    expectedNodeId: context.nodeId,
    ...(context.minRevision === undefined ? {} : { minRevision: context.minRevision }),
    ...(context.crlPems === undefined ? {} : { crlPems: context.crlPems }),
  });
  return config;
}

/**
 * That `bundle` is the archive `config` names (sha256 = policy.digest). Its
 * signature is checked where it is activated (PolicyEngine.swap).
 */
export function checkBundleDigest(config: NodeConfig, bundle: Buffer | undefined): Buffer | undefined {
  if (config.policy === undefined) return undefined;
  if (bundle === undefined) {
    throw new DmrError(
      'POLICY_BUNDLE_INVALID',
      `revision ${config.revision} names policy ${config.policy.revision}, but its bundle is missing`,
      { details: { check: 'digest', revision: config.revision } },
    );
  }
  const digest = sha256Digest(bundle);
  if (digest !== config.policy.digest) {
    throw new DmrError(
      'POLICY_BUNDLE_INVALID',
      `the policy bundle's sha256 is not the digest revision ${config.revision} names`,
      { details: { check: 'digest', expected: config.policy.digest, actual: digest } },
    );
  }
  return bundle;
}

/** Both checks: the document, then the bundle it names. */
export async function verifyDocument(
  jws: string,
  bundle: Buffer | undefined,
  context: VerifyContext,
): Promise<{ config: NodeConfig; bundle: Buffer | undefined }> {
  const config = await verifySigned(jws, context);
  return { config, bundle: checkBundleDigest(config, bundle) };
}

/** The last good document from disk, verified again; undefined when there is none. */
export async function readLastGood(dataDir: string, context: VerifyContext): Promise<LastGood | undefined> {
  const paths = dataPaths(dataDir);
  const jwsBytes = await readOptional(paths.configFile);
  if (jwsBytes === undefined) return undefined;
  const jws = jwsBytes.toString('utf8').trim();
  const bundle = await readOptional(paths.bundleFile);
  const verified = await verifyDocument(jws, bundle, context);
  return { jws, config: verified.config, bundle: verified.bundle };
}

/** Persists an applied document (bundle first, then the document: see the module comment). */
export async function writeLastGood(dataDir: string, jws: string, bundle: Buffer | undefined): Promise<void> {
  const paths = dataPaths(dataDir);
  await ensurePrivateDirectory(paths.stateDir);
  if (bundle !== undefined) await writeFileAtomic(paths.bundleFile, bundle, { overwrite: true, mode: 0o600 });
  await writeFileAtomic(paths.configFile, `${jws}\n`, { overwrite: true, mode: 0o600 });
}

export async function writeLocalStatus(dataDir: string, status: LocalStatus): Promise<void> {
  const paths = dataPaths(dataDir);
  await ensurePrivateDirectory(paths.stateDir);
  await writeFileAtomic(paths.statusFile, `${JSON.stringify(status, null, 2)}\n`, { overwrite: true, mode: 0o600 });
}

export async function readLocalStatus(dataDir: string): Promise<LocalStatus | undefined> {
  const bytes = await readOptional(dataPaths(dataDir).statusFile);
  return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as LocalStatus);
}

/** The CRL kept from the last fetch, if any. */
export async function readCrl(dataDir: string): Promise<string | undefined> {
  return (await readOptional(dataPaths(dataDir).crlFile))?.toString('utf8');
}

export async function writeCrl(dataDir: string, pem: string): Promise<void> {
  const paths = dataPaths(dataDir);
  await ensurePrivateDirectory(paths.stateDir);
  await writeFileAtomic(paths.crlFile, pem, { overwrite: true, mode: 0o644 });
}
