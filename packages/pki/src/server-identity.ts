/**
 * Pinning the identity of the server a DMR client talks to. Every server
 * certificate of a mesh chains to the same roots, and node certificates may
 * carry the same host names as CentOps' (`localhost` in the local mesh), so
 * "the chain verifies and the host name matches" would let any node's key
 * stand in for CentOps (and collect bootstrap tokens) or for another node's
 * broker. A client therefore also checks the server's SPIFFE id, the URI SAN
 * the CA put in the certificate:
 *
 * | server              | expected SPIFFE id              |
 * | ------------------- | ------------------------------- |
 * | CentOps (API, enrolment listener) | `spiffe://<td>/centops/api` |
 * | the broker of node X | `spiffe://<td>/node/X` (the node agent installs the node certificate as its broker's) |
 *
 * `serverIdentityCheck` is a `checkServerIdentity` for node:tls / https /
 * amqplib: the host name check Node does by default, then exactly one SPIFFE
 * URI SAN equal to the expected one. A refusal is the DmrError
 * SERVER_IDENTITY_MISMATCH, which TLS hands to the caller as the
 * connection's error (the socket is destroyed with it before any byte of the
 * request is written, so a bootstrap token never reaches an impostor).
 *
 * Where a client learns the trust domain (`trustDomainFromCertificate`,
 * `trustDomainFromTrustBundle`) is described in docs/decisions/0009-pinned-server-identities.md.
 */
import { checkServerIdentity as checkHostName, type PeerCertificate } from 'node:tls';
import { DmrError, assertValidId, isDmrError, isValidTrustDomain, spiffeId } from '@dmr/core';
import { parseCertificates } from './certificates.js';
import { readSanExtension } from './names.js';
import { X509Certificate } from './x509.js';

/** CentOps' API and enrolment listeners (profiles.ts: `centops`/`api`). */
export function centOpsApiSpiffeId(trustDomain: string): string {
  assertTrustDomain(trustDomain);
  return `spiffe://${trustDomain}/centops/api`;
}

/** What node `nodeId` presents, on its broker's AMQPS listener too. */
export function nodeSpiffeId(trustDomain: string, nodeId: string): string {
  assertTrustDomain(trustDomain);
  assertValidId(nodeId, 'node id');
  return spiffeId(trustDomain, 'node', nodeId);
}

function assertTrustDomain(trustDomain: string): void {
  if (!isValidTrustDomain(trustDomain)) {
    throw new DmrError('INVALID_ARGUMENT', `"${trustDomain}" is not a trust domain (e.g. dmr.example.ee)`);
  }
}

/** The SPIFFE URI SANs of a DER certificate (none when it cannot be read: that is never the expected identity). */
export function spiffeUrisOf(der: Uint8Array): string[] {
  try {
    const certificate = new X509Certificate(der);
    const extension = certificate.getExtension('2.5.29.17');
    if (extension === null) return [];
    return readSanExtension(extension.value).uris.filter((uri) => uri.startsWith('spiffe://'));
  } catch {
    return [];
  }
}

export interface ServerIdentity {
  /** The SPIFFE id the server must present, e.g. centOpsApiSpiffeId(td) or nodeSpiffeId(td, id). */
  expected: string;
  /** Names the server in the message, e.g. `CentOps` or `the broker of node node-a`. */
  what: string;
  /** What to check when it does not match. */
  hint: string;
}

export type CheckServerIdentity = (host: string, certificate: PeerCertificate) => Error | undefined;

/** A `checkServerIdentity` for TLS options: Node's host name check, then the pinned SPIFFE id. */
export function serverIdentityCheck(identity: ServerIdentity): CheckServerIdentity {
  return (host, certificate) => {
    const hostError = checkHostName(host, certificate);
    if (hostError !== undefined) return hostError;
    const presented = spiffeUrisOf(certificate.raw);
    if (presented.length === 1 && presented[0] === identity.expected) return undefined;
    const shown = presented.length === 0 ? 'no SPIFFE id' : presented.join(' and ');
    return new DmrError(
      'SERVER_IDENTITY_MISMATCH',
      `${identity.what} at ${host} presented ${shown}, not ${identity.expected}: refusing to talk to it`,
      { details: { host, expected: identity.expected, presented }, hint: identity.hint },
    );
  };
}

/** Pins CentOps (API or enrolment listener) of `trustDomain`. */
export function centOpsServerCheck(trustDomain: string): CheckServerIdentity {
  return serverIdentityCheck({
    expected: centOpsApiSpiffeId(trustDomain),
    what: 'the server contacted as CentOps',
    hint: 'check the CentOps URL and port (a DMR node or another service of the mesh answered), and the trust domain; CentOps presents the centops/api certificate `dmr centops init` issued',
  });
}

/** Pins the broker of node `nodeId` of `trustDomain`. */
export function brokerServerCheck(trustDomain: string, nodeId: string): CheckServerIdentity {
  return serverIdentityCheck({
    expected: nodeSpiffeId(trustDomain, nodeId),
    what: `the broker contacted as node ${nodeId}`,
    hint: `check the AMQPS URL and the node id (the broker answering is not node ${nodeId}'s), and that node ${nodeId}'s agent installed its node certificate as the broker's server certificate (broker.tls)`,
  });
}

/** Whether `error` is a refusal by a serverIdentityCheck (callers pass it on instead of calling it "unreachable"). */
export function isServerIdentityMismatch(error: unknown): error is DmrError {
  return isDmrError(error) && error.code === 'SERVER_IDENTITY_MISMATCH';
}

/** The trust domain of a DMR leaf (its SPIFFE URI SAN): how a client with a certificate knows its mesh. */
export function trustDomainFromCertificate(pem: string): string | undefined {
  const [leaf] = parseCertificates(pem, 'the certificate');
  if (leaf === undefined) return undefined;
  const uri = spiffeUrisOf(new Uint8Array(leaf.rawData))[0];
  const match = uri === undefined ? null : /^spiffe:\/\/([^/]+)\//.exec(uri);
  return match?.[1] !== undefined && isValidTrustDomain(match[1]) ? match[1] : undefined;
}

/** The trust domain named by a DMR root (`CN=DMR Root CA (<td>)`): how a client without a certificate knows it. */
export function trustDomainFromTrustBundle(pem: string): string | undefined {
  const found = new Set<string>();
  for (const root of parseCertificates(pem, 'the trust bundle')) {
    const match = /^DMR Root CA \((.+)\)$/.exec(root.subjectName.getField('CN')[0] ?? '');
    if (match?.[1] !== undefined && isValidTrustDomain(match[1])) found.add(match[1]);
  }
  // Two meshes' roots in one bundle say nothing about which one this client belongs to.
  return found.size === 1 ? [...found][0] : undefined;
}
