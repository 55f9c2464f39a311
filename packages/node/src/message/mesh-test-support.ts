/**
 * A mesh of node identities for the hop chain's tests and benchmark: one CA,
 * real node certificates, a signer per node, and helpers that move a message
 * along a path the way routers and shovels will (each hop publishes as
 * itself, so `user_id` names the previous hop). Not exported from index.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spiffeId } from '@dmr/core';
import { CertificateAuthority, type KeyAlgorithm } from '@dmr/pki';
import { type SignableMessage } from '@dmr/contract';
import { HopChainSigner, HopChainVerifier, type HopChainVerifierOptions, type HopEntry } from './hop-chain.js';
import { testMessage } from './test-support.js';

export const TD = 'dmr.test';
/** The client every test message is from (a client of its origin node in `directoryFor`). */
export const SENDER = 'tax-bot';

export interface TestNode {
  id: string;
  spiffe: string;
  serial: string;
  signer: HopChainSigner;
  chainPem: string;
  privateKeyPem: string;
}

/** A signer that claims to be node `claimed` but holds `holder`'s certificate and key. */
export function impostor(claimed: string, holder: Pick<TestNode, 'chainPem' | 'privateKeyPem'>): HopChainSigner {
  return new HopChainSigner({
    nodeId: claimed,
    certificateChainPem: holder.chainPem,
    privateKeyPem: holder.privateKeyPem,
  });
}

export interface TestMesh {
  ca: CertificateAuthority;
  nodes: Map<string, TestNode>;
  node(id: string): TestNode;
  /** Node `id`'s verifier: every other node of the mesh is its link peer unless `options` says otherwise. */
  verifier(id: string, options?: Partial<HopChainVerifierOptions>): HopChainVerifier;
  cleanup(): Promise<void>;
}

export async function testMesh(
  ids: readonly string[],
  keyAlgorithms: Record<string, KeyAlgorithm> = {},
): Promise<TestMesh> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-hop-chain-'));
  const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: TD });
  const nodes = new Map<string, TestNode>();
  for (const id of ids) {
    const keyAlgorithm = keyAlgorithms[id];
    const issued = await ca.issueWithKey({ kind: 'node', id, ...(keyAlgorithm === undefined ? {} : { keyAlgorithm }) });
    nodes.set(id, {
      id,
      spiffe: spiffeId(TD, 'node', id),
      serial: issued.serial,
      chainPem: issued.chainPem,
      privateKeyPem: issued.privateKeyPem,
      signer: new HopChainSigner({
        nodeId: id,
        certificateChainPem: issued.chainPem,
        privateKeyPem: issued.privateKeyPem,
      }),
    });
  }
  const node = (id: string): TestNode => {
    const found = nodes.get(id);
    if (found === undefined) throw new Error(`no test node ${id}`);
    return found;
  };
  return {
    ca,
    nodes,
    node,
    verifier: (id, options = {}) =>
      new HopChainVerifier({
        nodeId: id,
        peers: new Set([...nodes.keys()].filter((peer) => peer !== id)),
        trustBundlePem: ca.trustBundlePem(),
        trustDomain: TD,
        denied: new Set(),
        ...options,
      }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** `message` with `headers` merged in. */
export function withHeaders(message: SignableMessage, headers: Record<string, unknown>): SignableMessage {
  return { ...message, properties: { ...message.properties, headers: { ...message.properties.headers, ...headers } } };
}

/** `message` as `from` publishes it: `user_id` its SPIFFE id (the broker checks that), `dmr-hops` = `hops`. */
export function publishedBy(message: SignableMessage, from: TestNode, hops: string): SignableMessage {
  const next = withHeaders(message, { 'dmr-hops': hops });
  return { ...next, properties: { ...next.properties, userId: from.spiffe } };
}

/** A client message as its origin `origin` forwards it to `to` at `at`. */
export function originated(
  origin: TestNode,
  to: string,
  at: Date,
  message: SignableMessage = testMessage(),
  sender = SENDER,
): SignableMessage {
  const headers = origin.signer.originate(message, sender, to, at);
  return publishedBy(withHeaders(message, headers), origin, headers['dmr-hops'] as string);
}

/** The entries of `message`'s `dmr-hops`, unverified and unchecked (what a careless hop would read). */
export function entriesOf(message: SignableMessage): HopEntry[] {
  const value = message.properties.headers?.['dmr-hops'];
  if (typeof value !== 'string') throw new Error('test message has no dmr-hops');
  return JSON.parse(value) as HopEntry[];
}

/** What node `by` forwards to `to` (null: delivers) when it appends to `message` without verifying it. */
export function appendedBlindly(message: SignableMessage, by: TestNode, to: string | null, at: Date): SignableMessage {
  const signature = message.properties.headers?.['dmr-sig'] as string;
  return publishedBy(message, by, by.signer.append({ signature, hops: entriesOf(message) }, to, at));
}

/** `at` + `ms`. */
export function later(at: Date, ms: number): Date {
  return new Date(at.getTime() + ms);
}
