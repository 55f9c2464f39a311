/**
 * The one test CentOps: a real CentOps in process (startEmptyCentOps:
 * `initCentOps --dev`, SQLite in a temp directory, both listeners on
 * ephemeral ports, real mutual TLS) with a small registry, the admin's
 * credentials and an HTTPS client for the API. Packages below the node (the node's own tests) take it from
 * `@dmr/centops/testing`; everything above takes it from `@dmr/testkit`.
 *
 * Its CA (`server.ca`) can be handed to NodeFixture or a broker harness so
 * that the broker accepts the certificates CentOps issues.
 */
import { obtainCertificate, requestEnrolment } from '@dmr/pki';
import type { CertificateProfile } from '../../model.js';
import type { CentOpsServer } from '../app.js';
import { startEmptyCentOps } from './empty-centops.js';
import type { Credentials, Response } from './https.js';

export interface TestCentOpsClient {
  id: string;
  organisation: string;
  /** Default: the first node. */
  homeNode?: string;
  /** Default `['bot']`. */
  roles?: string[];
}

export interface TestCentOpsOptions {
  /** Names the temp directory (`dmr-<label>-…`). */
  label: string;
  /** Default `dmr.test`. */
  trustDomain?: string;
  /** id → display name. */
  organisations: Record<string, string>;
  /** Node ids; their certificates also name `localhost` and 127.0.0.1 (a node's broker serves with it). */
  nodes: string[];
  clients: TestCentOpsClient[];
  /** The certificate lifetime of every profile (default 1h). */
  lifetime?: string;
}

export interface TestCentOps {
  dir: string;
  /** The CentOps directory (its admin material is in `<centopsDir>-admin`, beside it). */
  centopsDir: string;
  trustDomain: string;
  server: CentOpsServer;
  /** CentOps' root certificate (PEM): TLS trust and the bundle verification root. */
  rootPem: string;
  /** CentOps' trust bundle (PEM): what an enrolling client is given to authenticate CentOps. */
  trustBundlePem: string;
  admin: Credentials;
  /** A call on the mutual-TLS API as the admin. */
  api(path: string, options?: { method?: string; body?: unknown }): Promise<Response>;
  /** A one-time bootstrap token for `id` (default kind: client). */
  token(id: string, kind?: 'node' | 'client'): Promise<string>;
  /** Enrols a client through the enrolment listener (key made here), as a real client would. */
  enrolClient(id: string): Promise<{ chainPem: string; privateKeyPem: string; serial: string }>;
  /** Sets the certificate lifetime of client `id`'s profile (e.g. to tell two of its certificates apart). */
  setLifetime(id: string, lifetime: string): Promise<void>;
  close(): Promise<void>;
}

export async function startTestCentOps(options: TestCentOpsOptions): Promise<TestCentOps> {
  const centops = await startEmptyCentOps({
    label: options.label,
    trustDomain: options.trustDomain,
    server: { pollIntervalMs: 50 },
  });
  const { server, store, trustDomain, rootPem } = centops;
  const actor = `spiffe://${trustDomain}/operator/admin`;
  try {
    const profile: CertificateProfile = {
      keyAlgorithm: 'ecdsa-p256',
      lifetime: options.lifetime ?? '1h',
      extraDns: [],
      extraIps: [],
    };
    for (const [id, name] of Object.entries(options.organisations)) {
      await store.create('Organisation', { id, name, labels: {} }, actor);
    }
    for (const id of options.nodes) {
      await store.create(
        'Node',
        {
          id,
          amqpsEndpoint: 'amqps://127.0.0.1:5671',
          managementEndpoint: 'https://127.0.0.1:15671',
          labels: {},
          // The node certificate is also its broker's server certificate: name the host clients dial.
          certificateProfile: { ...profile, extraDns: ['localhost'], extraIps: ['127.0.0.1'] },
        },
        actor,
      );
    }
    for (const client of options.clients) {
      const homeNode = client.homeNode ?? options.nodes[0];
      if (!homeNode) throw new Error(`client ${client.id} needs a home node`);
      await store.create(
        'Client',
        {
          id: client.id,
          organisation: client.organisation,
          homeNode,
          roles: client.roles ?? ['bot'],
          labels: {},
          status: 'active',
          certificateProfile: profile,
        },
        actor,
      );
    }
    const token = (id: string, kind: 'node' | 'client' = 'client') => centops.token(id, { kind });
    return {
      dir: centops.dir,
      centopsDir: centops.centopsDir,
      trustDomain,
      server,
      rootPem,
      trustBundlePem: server.ca.trustBundlePem(),
      admin: centops.admin,
      api: (path, request = {}) => centops.api(path, request),
      token,
      async enrolClient(id) {
        const secret = await token(id, 'client');
        const issued = await obtainCertificate({
          id,
          kind: 'client',
          trustDomain,
          what: `enrolment of ${id}`,
          send: (csrPem) =>
            requestEnrolment({ enrolUrl: server.enrolUrl, token: secret, csrPem, caPem: rootPem, trustDomain }),
        });
        return { chainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem, serial: issued.serial };
      },
      async setLifetime(id, lifetime) {
        const client = await store.get('Client', id);
        await store.update(
          'Client',
          { ...client.spec, certificateProfile: { ...client.spec.certificateProfile, lifetime } },
          actor,
        );
      },
      close: () => centops.close(),
    };
  } catch (error) {
    await centops.close();
    throw error;
  }
}
