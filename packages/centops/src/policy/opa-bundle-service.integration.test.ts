/**
 * A stock OPA server with CentOps as its bundle service: `opa run --server`
 * (the pinned binary) configured as in the README ("Policy bundle service"):
 * mutual TLS with a node certificate, the CentOps root as TLS trust, and the
 * policy signer's public key to verify the bundle. It must activate the
 * bundle, decide like the policy says, and pick up an accepted change by
 * polling. The OPA process is stopped by its PID.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findOpa } from '@dmr/policy';
import { sqliteBackend } from '../store/test-support/backends.js';
import { TD, samplePolicyInput, startPolicyCentOps, type PolicyCentOps } from './test-support.js';
import { freePort, waitFor } from '@dmr/core/testing';

/** The OPA configuration the README documents, for this CentOps. */
export function opaConfig(options: {
  centopsUrl: string;
  caCert: string;
  clientCert: string;
  clientKey: string;
  algorithm: string;
  publicKeyPem: string;
}): unknown {
  return {
    services: {
      centops: {
        url: options.centopsUrl,
        tls: { ca_cert: options.caCert },
        credentials: { client_tls: { cert: options.clientCert, private_key: options.clientKey } },
      },
    },
    bundles: {
      dmr: {
        service: 'centops',
        resource: '/v1/policy/bundle',
        polling: { min_delay_seconds: 1, max_delay_seconds: 2 },
        signing: { keyid: 'policy-signer' },
      },
    },
    keys: { 'policy-signer': { algorithm: options.algorithm, key: options.publicKeyPem } },
  };
}

describe('a stock OPA server with CentOps as its bundle service', () => {
  const backend = sqliteBackend();
  let centops: PolicyCentOps;
  let opa: ChildProcess | undefined;
  let opaUrl = '';
  let output = '';

  async function decide(input: unknown): Promise<{ allow: boolean; reasons: string[] }> {
    const response = await fetch(`${opaUrl}/v1/data/dmr/authz/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input }),
    });
    assert.equal(response.status, 200, output);
    const body = (await response.json()) as { result?: { allow: boolean; reasons: string[] } };
    assert.ok(body.result, `no decision: ${JSON.stringify(body)}\n${output}`);
    return body.result;
  }

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      () => `${what} (opa exit ${String(opa?.exitCode)}):\n${output}`,
      async () => {
        if (opa?.exitCode !== null) assert.fail(`opa exited (${String(opa?.exitCode)}) before ${what}:\n${output}`);
        return check().catch(() => false); // not up yet
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  before(async () => {
    await backend.setup();
    centops = await startPolicyCentOps(backend);
    const caCert = join(centops.dir, 'root.crt');
    await writeFile(caCert, centops.ca);
    const configFile = join(centops.dir, 'opa.json');
    const service = centops.server.policies;
    await writeFile(
      configFile,
      JSON.stringify(
        opaConfig({
          centopsUrl: centops.server.apiUrl,
          caCert,
          clientCert: centops.node.certPath,
          clientKey: centops.node.keyPath,
          algorithm: service.signingAlgorithm,
          publicKeyPem: service.verificationKeyPem,
        }),
      ),
    );
    const port = await freePort();
    opaUrl = `http://127.0.0.1:${port}`;
    opa = spawn(findOpa(), ['run', '--server', '--addr', `127.0.0.1:${port}`, '--config-file', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    opa.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    opa.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  });

  after(async () => {
    if (opa !== undefined && opa.exitCode === null && opa.signalCode === null) {
      const exited = new Promise<void>((resolve) => opa?.once('exit', () => resolve()));
      process.kill(opa.pid as number, 'SIGTERM'); // this child only, by its PID
      await exited;
    }
    await centops?.close();
    await backend.teardown();
  });

  it('activates the signed bundle, decides by it, and follows an accepted change', async () => {
    await until('bundle activation', async () => (await fetch(`${opaUrl}/health?bundles`)).ok);
    assert.deepEqual(await decide(samplePolicyInput('ria', 'ria')), { allow: true, reasons: ['SAME_ORGANISATION'] });
    assert.deepEqual(await decide(samplePolicyInput('sk', 'rik')), { allow: false, reasons: ['NO_GRANT'] });

    const current = await centops.server.policies.get();
    const data = JSON.parse(current.files['dmr/data.json'] ?? '{}') as { grants: unknown[] };
    data.grants.push({ from: 'sk', to: 'rik' });
    const result = await centops.server.policies.apply(
      { ...current.files, 'dmr/data.json': JSON.stringify(data) },
      `spiffe://${TD}/operator/admin`,
    );
    assert.equal(result.changed, true);
    await until('the new revision in OPA', async () => (await decide(samplePolicyInput('sk', 'rik'))).allow);
    // OPA keeps each bundle's manifest under data.system.bundles.
    const manifest = await fetch(`${opaUrl}/v1/data/system/bundles/dmr/manifest/revision`);
    assert.deepEqual(await manifest.json(), { result: String(result.policy?.version) });
  });
});
