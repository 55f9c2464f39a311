/** Valid specs for tests; override fields to make them invalid on purpose. */
import type { CertificateProfile, Client, DmrNode, Link, Organisation } from '../../model.js';
import { linkId } from '../../model.js';

export function organisation(id: string, overrides: Partial<Organisation> = {}): Organisation {
  return { id, name: `Organisation ${id}`, labels: {}, ...overrides };
}

export function profile(overrides: Partial<CertificateProfile> = {}): CertificateProfile {
  return { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [], ...overrides };
}

export function node(id: string, overrides: Partial<DmrNode> = {}): DmrNode {
  return {
    id,
    amqpsEndpoint: `amqps://${id}.dmr.example.ee:5671`,
    managementEndpoint: `https://${id}.dmr.example.ee:15671`,
    labels: { region: 'ee' },
    certificateProfile: profile({ extraDns: [`${id}.dmr.example.ee`] }),
    ...overrides,
  };
}

export function client(id: string, org: string, homeNode: string, overrides: Partial<Client> = {}): Client {
  return {
    id,
    organisation: org,
    homeNode,
    roles: ['chatbot'],
    labels: {},
    status: 'active',
    certificateProfile: profile(),
    ...overrides,
  };
}

export function link(a: string, b: string, cost = 10): Link {
  return { id: linkId(a, b), nodes: [a, b], cost };
}
