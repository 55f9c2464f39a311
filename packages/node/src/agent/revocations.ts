import type { NodeConfig } from '@dmr/contract';

/**
 * Whether `next` says something was revoked since `previous`: it denylists
 * an id `previous` did not, or a certificate `previous` listed (directory or
 * link peer) is gone before its expiry (revoked, superseded after a renewal,
 * or its id deleted). Either way the CRL has news for the broker and for the
 * signer checks.
 */
export function revocationsGrew(previous: NodeConfig | undefined, next: NodeConfig, now: Date): boolean {
  const before = new Set(previous?.denylist.map((entry) => `${entry.kind}/${entry.id}`) ?? []);
  if (next.denylist.some((entry) => !before.has(`${entry.kind}/${entry.id}`))) return true;
  const refs = (config: NodeConfig) => [
    ...config.directory.flatMap((entry) => entry.certificates),
    ...config.links.flatMap((link) => link.peerCertificates),
  ];
  const listed = new Set(refs(next).map((ref) => ref.fingerprint));
  return refs(previous ?? next).some((ref) => !listed.has(ref.fingerprint) && Date.parse(ref.notAfter) > now.getTime());
}
