/**
 * The CentOps registry model: what operators create and what the
 * configuration feed is derived from. These are the API's resource shapes
 * (the `spec` an operator writes); storage adds a version (the ETag) and
 * timestamps around them.
 *
 * Ids of organisations, clients and nodes share one namespace (docs/contract.md:
 * "Ids are unique across the mesh"). A lowercase UUID already satisfies the
 * id rules, which is how today's Bürokratt agents (UUID ids) fit in.
 */
import type { KeyAlgorithm } from '@dmr/pki';
import type { ClientStatus } from '@dmr/contract';

export const RESOURCE_KINDS = ['Organisation', 'Client', 'Node', 'Link'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export type Labels = Record<string, string>;

export interface Organisation {
  id: string;
  name: string;
  labels: Labels;
}

export { CLIENT_STATUSES, type ClientStatus } from '@dmr/contract';

export interface CertificateProfile {
  keyAlgorithm: KeyAlgorithm;
  /** Certificate lifetime as a duration string (`24h`, `7d`). */
  lifetime: string;
  /** Extra DNS/IP SANs; clients are refused any (the PKI profile allows none), nodes may have them. */
  extraDns: string[];
  extraIps: string[];
}

/**
 * What a Client gets when its spec names no `certificateProfile`: the key
 * and lifetime `dmr ctl create client` writes, and no extra names (a client
 * certificate may carry none). Stored in full, so a later change of this
 * default never changes an existing client.
 */
export const DEFAULT_CLIENT_CERTIFICATE_PROFILE: Readonly<CertificateProfile> = Object.freeze({
  keyAlgorithm: 'ecdsa-p256',
  lifetime: '7d',
  extraDns: [],
  extraIps: [],
});

export interface Client {
  id: string;
  organisation: string;
  homeNode: string;
  roles: string[];
  labels: Labels;
  status: ClientStatus;
  certificateProfile: CertificateProfile;
}

export interface DmrNode {
  id: string;
  /** `amqps://host:port` where clients and peer nodes connect. */
  amqpsEndpoint: string;
  /** `https://host:port` of the node's RabbitMQ management API, reachable by the node's own router only. */
  managementEndpoint: string;
  labels: Labels;
  /** The node's own certificate; its extra DNS/IP SANs name the hosts in the endpoints above. */
  certificateProfile: CertificateProfile;
}

export interface Link {
  /** `<node-a>--<node-b>` with the two node ids in sorted order, so a pair has one id. */
  id: string;
  nodes: [string, string];
  /** Routing cost; lower is preferred. A positive integer. */
  cost: number;
}

export interface ResourceSpecs {
  Organisation: Organisation;
  Client: Client;
  Node: DmrNode;
  Link: Link;
}

/** A resource as stored: its spec plus the version that is its ETag. */
export interface Stored<K extends ResourceKind> {
  kind: K;
  spec: ResourceSpecs[K];
  /** Increments on every change of this resource; the ETag is `"<version>"`. */
  version: number;
  /** The registry-wide revision at which this resource last changed. */
  revision: number;
  createdAt: string;
  updatedAt: string;
}

export function linkId(a: string, b: string): string {
  return a < b ? `${a}--${b}` : `${b}--${a}`;
}
