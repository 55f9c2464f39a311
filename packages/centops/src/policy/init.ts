/**
 * The policy half of `dmr centops init`: the policy signer
 * (`signer/policy-signer.{crt,key}`) and the default pack from @dmr/policy
 * stored as version 1 of the policy set (checked, tested, built and signed
 * like any change; no registry revision, as nothing has been served yet).
 */
import type { CertificateAuthority } from '@dmr/pki';
import { openStore } from '../store/index.js';
import { seedDefaultPolicy, PolicyService } from './service.js';
import { ensurePolicySigner, policySignerPaths } from './signer.js';

export interface InitPolicyOptions {
  /** The store location (opened and closed here). */
  database: string;
  ca: CertificateAuthority;
  /** The configuration signer's certificate path: the policy signer goes beside it. */
  configSignerCertificate: string;
  actor: string;
  /** A policy directory to seed instead of the default pack. */
  packDir?: string;
}

export async function initPolicy(
  options: InitPolicyOptions,
): Promise<{ files: string[]; version: number | undefined }> {
  const paths = policySignerPaths(options.configSignerCertificate);
  const store = await openStore(options.database);
  try {
    const { signer } = await ensurePolicySigner(paths, options.ca, store, options.actor);
    const service = new PolicyService({ store, signer });
    const seeded = await seedDefaultPolicy(service, options.actor, options.packDir);
    return { files: [paths.certificate, paths.key], version: seeded?.policy?.version };
  } finally {
    await store.close();
  }
}
