/** Shared by this package's tests: a throwaway CA with a policy signer, the decision table, an OPA sidecar. Not exported from index. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '@dmr/pki';
import type { PolicyResult } from './decision.js';
import { findOpa } from './opa.js';
import { BundleSigner, policySignerSpiffeId, type BundleVerification } from './signing.js';
import { freePort, waitFor } from '@dmr/core/testing';

export const TRUST_DOMAIN = 'dmr.test';
const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The default pack, tests included. */
export const REGO_DIR = join(packageDir, 'rego');

export interface TableCase {
  name: string;
  input: unknown;
  expect: PolicyResult;
}

export async function decisionTable(): Promise<TableCase[]> {
  const table = JSON.parse(await readFile(join(packageDir, 'testdata', 'decision-table.json'), 'utf8')) as {
    cases: TableCase[];
  };
  return table.cases;
}

export async function tempDir(prefix = 'dmr-policy-test-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export interface TestPki {
  signer: BundleSigner;
  verification: BundleVerification;
  ca: CertificateAuthority;
  cleanup: () => Promise<void>;
}

export async function testPki(signerId: 'policy-signer' | 'config-signer' = 'policy-signer'): Promise<TestPki> {
  const dir = await tempDir('dmr-policy-ca-');
  const ca = await CertificateAuthority.init(join(dir.path, 'ca'), { trustDomain: TRUST_DOMAIN });
  const issued = await ca.issueWithKey({ kind: 'centops', id: signerId });
  return {
    ca,
    signer: new BundleSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem }),
    verification: { trustBundlePem: ca.rootCertificatePem, expectedSigner: policySignerSpiffeId(TRUST_DOMAIN) },
    cleanup: dir.cleanup,
  };
}

/** A tiny bundle service: what CentOps will be, for a stock OPA to pull from. */
export async function bundleServer(): Promise<{
  url: string;
  publish: (archive: Buffer) => void;
  close: () => Promise<void>;
}> {
  let current: Buffer | undefined;
  const server: Server = createServer((request, response) => {
    if (request.url !== '/bundles/dmr.tar.gz' || current === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'application/gzip' }).end(current);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    publish: (archive) => {
      current = archive;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface Sidecar {
  url: string;
  process: ChildProcess;
  /** Output so far, for assertion messages. */
  log: () => string;
  stop: () => Promise<void>;
}

/**
 * `opa run --server` on a free loopback port, pulling the bundle from
 * `serviceUrl` and verifying it with the signer's public key, as a node's
 * sidecar would. Resolves once OPA reports the bundle activated.
 */
export async function startSidecar(serviceUrl: string, publicKeyPem: string): Promise<Sidecar> {
  const dir = await tempDir('dmr-opa-sidecar-');
  const port = await freePort();
  const config = {
    services: { centops: { url: serviceUrl } },
    bundles: {
      dmr: {
        service: 'centops',
        resource: '/bundles/dmr.tar.gz',
        polling: { min_delay_seconds: 1, max_delay_seconds: 1 },
        signing: { keyid: 'policy-signer' },
      },
    },
    keys: { 'policy-signer': { algorithm: 'ES256', key: publicKeyPem } },
  };
  const configFile = join(dir.path, 'opa.json');
  await writeFile(configFile, JSON.stringify(config));
  const child = spawn(findOpa(), ['run', '--server', '--addr', `127.0.0.1:${port}`, '--config-file', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM'); // this child only, by its PID
      await exited;
    }
    await dir.cleanup();
  };
  try {
    await waitFor(
      'the opa sidecar to report its bundle healthy',
      async () => {
        if (child.exitCode !== null) throw new Error(`opa exited with ${child.exitCode}`);
        return (await fetch(`${url}/health?bundles`).catch(() => undefined))?.ok;
      },
      { intervalMs: 100 },
    );
  } catch (error) {
    await stop();
    throw new Error(`opa sidecar did not become ready (${String(error)}):\n${output}`, { cause: error });
  }
  return { url, process: child, log: () => output, stop };
}
