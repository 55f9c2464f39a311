/**
 * A CentOps with nothing registered: `initCentOps --dev` in a temp directory,
 * both listeners on ephemeral ports, real mutual TLS, the admin's
 * credentials and an HTTPS client for the API. The server, store and
 * enrolment tests start one per suite (on SQLite or PostgreSQL) and register
 * what they need; startTestCentOps and the policy tests' CentOps build on it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, generatePrivateKey, type KeyAlgorithm } from '@dmr/pki';
import { openStore, type Store } from '../../store/index.js';
import { startServer, type CentOpsServer, type StartOptions } from '../app.js';
import { CONFIG_FILE, loadConfig, type CentOpsConfig } from '../config.js';
import { initCentOps } from '../init.js';
import { call, type Credentials, type Response } from './https.js';

export interface EmptyCentOpsOptions {
  /** Names the temp directory (`dmr-<label>-…`). */
  label: string;
  /** Default `dmr.test`. */
  trustDomain?: string;
  /** The database's location (a test backend's fresh database); default SQLite in the CentOps directory. */
  database?: string;
  /** Changes to the configuration `initCentOps` wrote (limits, the renewal overlap) before the server starts. */
  configure?: (config: CentOpsConfig) => void;
  /**
   * The store's clock, for tests that move time: the store is then opened here with it (and closed after
   * the server) instead of by the server. The server's own clock is `server.now`.
   */
  storeNow?: () => Date;
  /** Options for startServer (the poll interval, the certificate service's clock, the policy timeout). */
  server?: Omit<StartOptions, 'store'>;
}

export type TestCallOptions = Partial<Parameters<typeof call>[1]>;

export interface TestEnrolOptions {
  /** Default `client`. */
  kind?: 'client' | 'node';
  dns?: string[];
  algorithm?: KeyAlgorithm;
}

export interface EmptyCentOps {
  /** The temp directory; removed by close(). */
  dir: string;
  /** The CentOps directory (its admin material is in `<centopsDir>-admin`, beside it). */
  centopsDir: string;
  trustDomain: string;
  server: CentOpsServer;
  store: Store;
  /** CentOps' root certificate (PEM): TLS trust and the bundle verification root. */
  rootPem: string;
  admin: Credentials;
  /** A call on the mutual-TLS API, as the admin unless `credentials` say otherwise. */
  api(path: string, options?: TestCallOptions): Promise<Response>;
  /** A one-time bootstrap token for `id` (default kind: client, default lifetime: CentOps'). */
  token(id: string, options?: { kind?: 'client' | 'node'; ttl?: string }): Promise<string>;
  /** A key and a CSR for `id` in this trust domain. */
  csr(id: string, options?: TestEnrolOptions): Promise<{ csr: string; key: string }>;
  /** Enrols `id` through the enrolment listener with a fresh token and key, as a real principal would. */
  enrol(id: string, options?: TestEnrolOptions): Promise<Credentials & { serial: string }>;
  close(): Promise<void>;
}

export async function startEmptyCentOps(options: EmptyCentOpsOptions): Promise<EmptyCentOps> {
  const trustDomain = options.trustDomain ?? 'dmr.test';
  const dir = await mkdtemp(join(tmpdir(), `dmr-${options.label}-`));
  let ownStore: Store | undefined;
  let server: CentOpsServer | undefined;
  const close = async () => {
    await server?.close();
    await ownStore?.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const centopsDir = join(dir, 'centops');
    const made = await initCentOps({ dir: centopsDir, dev: true, trustDomain, database: options.database });
    const config = await loadConfig(join(centopsDir, CONFIG_FILE));
    config.listen.port = 0;
    config.enrolListen.port = 0;
    options.configure?.(config);
    if (options.storeNow !== undefined) ownStore = await openStore(config.database, { now: options.storeNow });
    const running = await startServer(config, { ...options.server, store: ownStore });
    server = running;
    const rootPem = await readFile(join(centopsDir, 'ca', 'root.crt'), 'utf8');
    const admin = { cert: await readFile(made.admin.certificate, 'utf8'), key: await readFile(made.admin.key, 'utf8') };
    const api = (path: string, request: TestCallOptions = {}) =>
      call(`${running.apiUrl}${path}`, { ...request, ca: rootPem, credentials: request.credentials ?? admin });
    const token = async (id: string, request: { kind?: 'client' | 'node'; ttl?: string } = {}) => {
      const answer = await api('/v1/tokens', { method: 'POST', body: { id, ...request } });
      if (answer.status !== 201) throw new Error(`token for ${id}: ${answer.status} ${answer.text}`);
      return (answer.json as { token: string }).token;
    };
    const csr = async (id: string, request: TestEnrolOptions = {}) => {
      const key = await generatePrivateKey(request.algorithm);
      const kind = request.kind ?? 'client';
      return { csr: await createCsr({ id, kind, trustDomain, privateKeyPem: key, dns: request.dns ?? [] }), key };
    };
    return {
      dir,
      centopsDir,
      trustDomain,
      server: running,
      store: ownStore ?? running.store,
      rootPem,
      admin,
      api,
      token,
      csr,
      async enrol(id, request = {}) {
        const secret = await token(id, { kind: request.kind ?? 'client' });
        const made = await csr(id, request);
        const answer = await call(`${running.enrolUrl}/v1/enroll`, {
          ca: rootPem,
          method: 'POST',
          body: { token: secret, csr: made.csr },
        });
        if (answer.status !== 201) throw new Error(`enrolment of ${id}: ${answer.status} ${answer.text}`);
        const issued = answer.json as { chain: string; serial: string };
        return { cert: issued.chain, key: made.key, serial: issued.serial };
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
