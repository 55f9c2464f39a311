/**
 * CentOps' policy-signing key: `signer/policy-signer.{crt,key}` beside the
 * configuration signer, a `centops/policy-signer` certificate from CentOps'
 * CA (URI SAN `spiffe://<td>/centops/policy-signer`, digitalSignature only).
 * Nodes trust bundles signed with it through the DMR root they already have
 * (x5c); a stock OPA is configured with its public key.
 *
 * `centops init` creates it; `serve` creates it too when a CentOps directory
 * made before policies existed has none, so upgrading needs no extra step.
 * Either way the certificate is recorded in the store and audited.
 */
import { access, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFilesAtomic, type CertificateAuthority } from '@dmr/pki';
import { BundleSigner } from '@dmr/policy';
import { recordIssued } from '../server/credentials.js';
import type { Store } from '../store/index.js';

/** 180 days, like CentOps' other service certificates. */
export const POLICY_SIGNER_TTL_MS = 180 * 86_400_000;

export interface PolicySignerPaths {
  certificate: string;
  key: string;
}

/** Where the policy signer lives: beside the configuration signer's certificate. */
export function policySignerPaths(configSignerCertificate: string): PolicySignerPaths {
  const dir = dirname(configSignerCertificate);
  return { certificate: join(dir, 'policy-signer.crt'), key: join(dir, 'policy-signer.key') };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Loads the policy signer, issuing and recording it first when it does not exist yet. */
export async function ensurePolicySigner(
  paths: PolicySignerPaths,
  ca: CertificateAuthority,
  store: Store,
  actor: string,
): Promise<{ signer: BundleSigner; created: boolean }> {
  let created = false;
  if (!(await exists(paths.certificate)) || !(await exists(paths.key))) {
    const issued = await ca.issueWithKey({ kind: 'centops', id: 'policy-signer', ttlMs: POLICY_SIGNER_TTL_MS });
    await mkdir(dirname(paths.certificate), { recursive: true, mode: 0o700 });
    await writeFilesAtomic([
      { path: paths.certificate, data: issued.chainPem, mode: 0o644 },
      { path: paths.key, data: issued.privateKeyPem, mode: 0o600 },
    ]);
    await recordIssued(store, { kind: 'centops', id: 'policy-signer' }, issued, actor);
    created = true;
  }
  const [certificateChainPem, privateKeyPem] = await Promise.all([
    readFile(paths.certificate, 'utf8'),
    readFile(paths.key, 'utf8'),
  ]);
  return { signer: new BundleSigner({ certificateChainPem, privateKeyPem }), created };
}
