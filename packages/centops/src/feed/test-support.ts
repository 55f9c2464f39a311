/** Shared by the feed's tests: a throwaway CA with a config signer, snapshots without a database. Not exported. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '@dmr/pki';
import type { Client, DmrNode, Link, ResourceKind, ResourceSpecs, Stored } from '../model.js';
import type { DenylistEntry, RegistrySnapshot } from '../store/types.js';
import { ConfigSigner } from './signing.js';

export const TRUST_DOMAIN = 'dmr.test';
/** Until the CA has a `centops` profile, the test signer is a node certificate named config-signer. */
export const TEST_SIGNER_URI = `spiffe://${TRUST_DOMAIN}/node/config-signer`;

export interface TestPki {
  ca: CertificateAuthority;
  signer: ConfigSigner;
  signerChainPem: string;
  signerKeyPem: string;
  cleanup(): Promise<void>;
}

export async function testPki(trustDomain = TRUST_DOMAIN, signerId = 'config-signer'): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-feed-pki-'));
  const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain });
  const issued = await ca.issueWithKey({ kind: 'node', id: signerId, ttlMs: 3_600_000 });
  return {
    ca,
    signer: new ConfigSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem }),
    signerChainPem: issued.chainPem,
    signerKeyPem: issued.privateKeyPem,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

function stored<K extends ResourceKind>(kind: K, spec: ResourceSpecs[K]): Stored<K> {
  const at = '2025-01-01T00:00:00.000Z';
  return { kind, spec, version: 1, revision: 1, createdAt: at, updatedAt: at };
}

export function snapshotOf(parts: {
  revision?: number;
  nodes?: DmrNode[];
  clients?: Client[];
  links?: Link[];
  denylist?: DenylistEntry[];
}): RegistrySnapshot {
  const clients = parts.clients ?? [];
  const organisations = [...new Set(clients.map((client) => client.organisation))].map((id) =>
    stored('Organisation', { id, name: id, labels: {} }),
  );
  return {
    revision: parts.revision ?? 1,
    resources: {
      Organisation: organisations,
      Client: clients.map((spec) => stored('Client', spec)),
      Node: (parts.nodes ?? []).map((spec) => stored('Node', spec)),
      Link: (parts.links ?? []).map((spec) => stored('Link', spec)),
    },
    denylist: parts.denylist ?? [],
  };
}
