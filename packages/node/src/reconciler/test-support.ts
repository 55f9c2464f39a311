/** A minimal valid NodeConfig for the reconciler's tests, with CentOps' default limits (not exported from the package). */
import { DEFAULT_LIMITS } from '@dmr/centops';
import type { NodeConfig } from '@dmr/contract';

export type ClientStatus = NodeConfig['clients'][number]['status'];

export function sampleConfig(
  clients: ReadonlyArray<string | { id: string; status: ClientStatus }>,
  extra: Partial<Pick<NodeConfig, 'denylist' | 'links' | 'limits'>> & { node?: string } = {},
): NodeConfig {
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain: 'dmr.test',
    node: {
      id: extra.node ?? 'node-a',
      amqpsEndpoint: 'amqps://127.0.0.1:5671',
      managementEndpoint: 'https://127.0.0.1:15671',
    },
    revision: 1,
    issuedAt: '2026-01-01T00:00:00.000Z',
    clients: clients.map((client) => {
      const { id, status } = typeof client === 'string' ? { id: client, status: 'active' as const } : client;
      return { id, organisation: 'org-a', roles: [], labels: {}, status };
    }),
    directory: [],
    links: extra.links ?? [],
    routes: [],
    denylist: extra.denylist ?? [],
    limits: extra.limits ?? { ...DEFAULT_LIMITS },
  };
}

export function denyClient(id: string): NodeConfig['denylist'][number] {
  return { id, kind: 'client', reason: 'test', since: '2026-01-01T00:00:00.000Z' };
}

export function denyNode(id: string): NodeConfig['denylist'][number] {
  return { id, kind: 'node', reason: 'test', since: '2026-01-01T00:00:00.000Z' };
}
