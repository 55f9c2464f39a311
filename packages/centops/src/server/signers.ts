/**
 * `dmr centops rotate-signer`: a new key and certificate for the
 * configuration or the policy signer, made on the CentOps host with its CA
 * (like init made the first), recorded and audited; the old certificate is
 * revoked as superseded, so nodes refuse it from their next CRL fetch. For
 * the policy signer, the current policy set is re-signed as the next
 * version: nodes never activate an older bundle revision, and the bundle
 * they hold is signed by the certificate just revoked. Run it with CentOps
 * stopped (the server loads its signers at start), then start it again.
 * ADR 0012 "Rotating a signer".
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DmrError } from '@dmr/core';
import { BundleSigner } from '@dmr/policy';
import { CertificateAuthority, normaliseSerial, writeFilesAtomic } from '@dmr/pki';
import { PolicyService } from '../policy/service.js';
import { POLICY_SIGNER_TTL_MS, policySignerPaths } from '../policy/signer.js';
import { openStore } from '../store/index.js';
import { CONFIG_FILE, loadConfig } from './config.js';
import { localActor, recordIssued } from './credentials.js';
import { SERVER_CERTIFICATE_TTL_MS } from './init.js';

export type SignerName = 'config' | 'policy';

export interface RotateSignerResult {
  signer: 'config-signer' | 'policy-signer';
  previousSerial: string;
  serial: string;
  notAfter: string;
  /** Policy signer only: the version the current policy set was re-signed as. */
  policyVersion?: number;
}

function serialOf(pem: string): string {
  return normaliseSerial(new X509Certificate(pem).serialNumber);
}

export async function rotateSigner(options: { dir: string; signer: SignerName }): Promise<RotateSignerResult> {
  if (options.signer !== 'config' && options.signer !== 'policy') {
    throw new DmrError('INVALID_ARGUMENT', `--signer ${String(options.signer)} is not config or policy`);
  }
  const config = await loadConfig(join(resolve(options.dir), CONFIG_FILE));
  const id = options.signer === 'config' ? 'config-signer' : 'policy-signer';
  const paths = options.signer === 'config' ? config.signer : policySignerPaths(config.signer.certificate);
  const previousSerial = serialOf(await readFile(paths.certificate, 'utf8'));
  const ca = await CertificateAuthority.open(config.caDir);
  const store = await openStore(config.database);
  const actor = localActor('rotate-signer');
  try {
    const ttlMs = options.signer === 'config' ? SERVER_CERTIFICATE_TTL_MS : POLICY_SIGNER_TTL_MS;
    const issued = await ca.issueWithKey({ kind: 'centops', id, ttlMs });
    await recordIssued(store, { kind: 'centops', id }, issued, actor);
    await writeFilesAtomic([
      { path: paths.certificate, data: issued.chainPem, mode: 0o644, overwrite: true },
      { path: paths.key, data: issued.privateKeyPem, mode: 0o600, overwrite: true },
    ]);
    const before = await ca.findIssued(previousSerial);
    if (before !== undefined && before.revoked === undefined) await ca.revoke(previousSerial, 'superseded');
    const stored = await store.getCertificate(previousSerial).catch(() => undefined);
    if (stored !== undefined && stored.revokedAt === null) {
      await store.revokeCertificate(previousSerial, 'superseded', actor);
    }
    let policyVersion: number | undefined;
    if (options.signer === 'policy') {
      const service = new PolicyService({
        store,
        signer: new BundleSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem }),
      });
      const current = await service.current();
      if (current !== undefined) {
        const resigned = await service.apply((await service.get()).files, actor, { resign: true });
        policyVersion = resigned.policy?.version;
      }
    }
    return {
      signer: id,
      previousSerial,
      serial: issued.serial,
      notAfter: issued.notAfter.toISOString(),
      ...(policyVersion === undefined ? {} : { policyVersion }),
    };
  } finally {
    await store.close();
  }
}
