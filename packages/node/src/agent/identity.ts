/**
 * The node's identity on disk: its private key (made here, never sent), its
 * certificate chain and the CentOps trust bundle. Enrolment exchanges a
 * one-time bootstrap token and a CSR for the first certificate; renewal
 * proves the current certificate over mutual TLS and sends a CSR for a NEW
 * key, so a key that leaked before the renewal is useless after it.
 *
 * The exchange (key, CSR, checks on the answer) is @dmr/pki's
 * `obtainCertificate`, shared with the SDK; this file adds the token file,
 * the node's hints and the atomic store.
 */
import { readFile } from 'node:fs/promises';
import { DmrError, isDmrError } from '@dmr/core';
import {
  ensurePrivateDirectory,
  isServerIdentityMismatch,
  obtainCertificate,
  parseCertificates,
  writeFilesAtomic,
  type KeyAlgorithm,
  type ObtainedIdentity,
} from '@dmr/pki';
import type { CentOpsClient } from './centops-client.js';
import { dataPaths } from './state-dir.js';

export interface NodeIdentity {
  chainPem: string;
  privateKeyPem: string;
  trustBundlePem: string;
  /** Lowercase hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

function describe(chainPem: string, privateKeyPem: string, trustBundlePem: string): NodeIdentity {
  const [leaf] = parseCertificates(chainPem, 'the node certificate');
  if (leaf === undefined) throw new DmrError('CERTIFICATE_INVALID', 'the node certificate file holds no certificate');
  return {
    chainPem,
    privateKeyPem,
    trustBundlePem,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The identity in `dataDir`, or undefined when the node has not enrolled yet. */
export async function loadIdentity(dataDir: string): Promise<NodeIdentity | undefined> {
  const paths = dataPaths(dataDir);
  const [chain, key, bundle] = await Promise.all(
    [paths.certificateFile, paths.keyFile, paths.trustBundleFile].map(readOptional),
  );
  if (chain === undefined || key === undefined || bundle === undefined) return undefined;
  return describe(chain, key, bundle);
}

async function storeIdentity(dataDir: string, obtained: ObtainedIdentity): Promise<NodeIdentity> {
  const paths = dataPaths(dataDir);
  await ensurePrivateDirectory(paths.identityDir);
  // One atomic set: a crash never leaves a new certificate beside the old key.
  await writeFilesAtomic([
    { path: paths.keyFile, data: obtained.privateKeyPem, mode: 0o600, overwrite: true },
    { path: paths.certificateFile, data: obtained.chainPem, mode: 0o644, overwrite: true },
    { path: paths.trustBundleFile, data: obtained.trustBundlePem, mode: 0o644, overwrite: true },
  ]);
  return describe(obtained.chainPem, obtained.privateKeyPem, obtained.trustBundlePem);
}

export interface EnrolOptions {
  dataDir: string;
  nodeId: string;
  trustDomain: string;
  tokenFile: string | undefined;
  keyAlgorithm?: KeyAlgorithm;
}

/** First start: key, CSR, token → certificate. The request body carries only the token and the CSR. */
export async function enrol(client: CentOpsClient, options: EnrolOptions): Promise<NodeIdentity> {
  if (options.tokenFile === undefined) {
    throw new DmrError('ENROLMENT_FAILED', `node ${options.nodeId} has no certificate and no bootstrap token`, {
      hint: 'create a token (`dmr ctl token create --id NODE`), put it in a file and set centops.tokenFile',
    });
  }
  const token = (await readOptional(options.tokenFile))?.trim();
  if (token === undefined || token === '') {
    throw new DmrError('ENROLMENT_FAILED', `the bootstrap token file ${options.tokenFile} is missing or empty`, {
      details: { tokenFile: options.tokenFile },
      hint: 'write the token from `dmr ctl token create` into that file',
    });
  }
  const nodeId = options.nodeId;
  /** The node's own words for a failed exchange: which file to fix, what to check. */
  const explain = (error: unknown): DmrError => {
    // Its own message names the expected and the presented identity; wrapping it would hide both.
    if (isServerIdentityMismatch(error)) return error;
    if (isDmrError(error) && error.code === 'TOKEN_INVALID') {
      return new DmrError('TOKEN_INVALID', `enrolment of ${nodeId} refused: ${error.message}`, {
        details: { tokenFile: options.tokenFile },
        hint: 'the token is unknown, expired or used; ask an operator for a new one (`dmr ctl token create`)',
        cause: error,
      });
    }
    const code = isDmrError(error) ? error.code : 'INTERNAL';
    return new DmrError('ENROLMENT_FAILED', `enrolment of ${nodeId} failed (${code}): ${(error as Error).message}`, {
      details: { cause: code },
      hint:
        code === 'CENTOPS_UNREACHABLE'
          ? 'check centops.enrolUrl and that CentOps is running; the node retries when restarted'
          : 'check that the node is registered in CentOps and its certificate profile matches (key algorithm)',
      cause: error,
    });
  };
  const obtained = await obtainCertificate({
    id: nodeId,
    kind: 'node',
    trustDomain: options.trustDomain,
    ...(options.keyAlgorithm === undefined ? {} : { keyAlgorithm: options.keyAlgorithm }),
    what: `enrolment of ${nodeId}`,
    send: (csrPem) =>
      client.enrol(token, csrPem).catch((error: unknown) => {
        throw explain(error);
      }),
  });
  return storeIdentity(options.dataDir, obtained);
}

/**
 * A new certificate for a NEW key, authenticated by the current one; stored,
 * then returned. `expired`: the current certificate expired (TLS refuses it),
 * so the grace path proves its key instead (decision 0030); past CentOps'
 * grace period that is RENEWAL_GRACE_EXPIRED, and only a new token helps.
 */
export async function renew(
  client: CentOpsClient,
  options: Omit<EnrolOptions, 'tokenFile'> & { expired?: boolean },
): Promise<NodeIdentity> {
  const obtained = await obtainCertificate({
    id: options.nodeId,
    kind: 'node',
    trustDomain: options.trustDomain,
    ...(options.keyAlgorithm === undefined ? {} : { keyAlgorithm: options.keyAlgorithm }),
    what: `${options.expired === true ? 'grace renewal' : 'renewal'} of ${options.nodeId}`,
    send: (csrPem) => (options.expired === true ? client.renewExpired(csrPem) : client.renew(csrPem)),
  });
  return storeIdentity(options.dataDir, obtained);
}
