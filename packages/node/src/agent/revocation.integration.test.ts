/**
 * Revocation reaching the data plane (a revoked or denylisted identity must
 * lose its access at the broker, not only at CentOps), with a real
 * CentOps, a real RabbitMQ (harness) and the node agent:
 *
 * - a denied and lifted client's earlier certificate is refused by the
 *   broker once CentOps' CRL is installed there, while a certificate from a
 *   new enrolment is accepted;
 * - the agent refuses a policy bundle and then a configuration signed by a
 *   revoked signer certificate, keeps its last good configuration, and tells
 *   CentOps why (PUT /v1/nodes/{id}/status → refused.reason).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { probeTls } from '@dmr/broker';
import { readPolicyDir, defaultPackDir } from '@dmr/centops';
import { NodeAgent } from './agent.js';
import { loadRunConfig } from './run-config.js';
import { NODE, startAgentEnvironment, writeRunConfig, type AgentEnvironment } from './test-support.js';
import { waitFor } from '@dmr/core/testing';

describe('revocation at the broker and at the node', () => {
  let env: AgentEnvironment;
  let agent: NodeAgent | undefined;

  before(async () => {
    env = await startAgentEnvironment();
  });
  after(async () => {
    await agent?.stop();
    await env?.close();
  });

  async function installCentOpsCrl(): Promise<void> {
    const crl = await env.api('/v1/pki/crl');
    assert.equal(crl.status, 200, crl.text);
    await env.harness.installCrl(crl.text);
  }

  const probe = (credentials: { chainPem: string; privateKeyPem: string }) =>
    probeTls({
      port: env.harness.node(0).amqpsPort,
      caPem: env.ca,
      certificatePem: credentials.chainPem,
      privateKeyPem: credentials.privateKeyPem,
    });

  it('after deny and lift, the broker refuses the earlier certificate through CentOps’ CRL', async () => {
    const old = await env.enrolClient('police-bot');
    await installCentOpsCrl();
    assert.equal((await probe(old)).ok, true, 'before: the handshake succeeds');
    const denied = await env.api('/v1/denylist', {
      method: 'POST',
      body: { id: 'police-bot', kind: 'client', reason: 'test' },
    });
    assert.equal(denied.status, 201, denied.text);
    assert.equal((await env.api('/v1/denylist/police-bot', { method: 'DELETE' })).status, 204);
    const fresh = await env.enrolClient('police-bot');
    await installCentOpsCrl();
    const refused = await probe(old);
    assert.equal(refused.ok, false);
    assert.match(`${refused.code ?? ''} ${refused.message ?? ''}`, /revoked/i);
    assert.equal((await probe(fresh)).ok, true, 'a certificate issued after the not-before is accepted');
  });

  async function nodeStatus(): Promise<{
    refused: { reason: string; revision: number } | null;
    appliedRevision: number;
  }> {
    const answer = await env.api(`/v1/nodes/${NODE}/status`);
    assert.equal(answer.status, 200, answer.text);
    return answer.json as { refused: { reason: string; revision: number } | null; appliedRevision: number };
  }

  async function revokeCentOps(id: string): Promise<void> {
    const listed = await env.api('/v1/certificates?kind=centops');
    const items = (listed.json as { items: Array<{ serial: string; id: string; revokedAt: string | null }> }).items;
    const current = items.find((item) => item.id === id && item.revokedAt === null);
    assert.ok(current, `${id} has a current certificate`);
    const revoked = await env.api(`/v1/certificates/${current.serial}/revoke`, {
      method: 'POST',
      body: { reason: 'keyCompromise' },
    });
    assert.equal(revoked.status, 200, revoked.text);
  }

  it('the node refuses a bundle and a configuration signed by a revoked signer, and reports why', async () => {
    await writeFile(join(env.dir, 'node-a.token'), `${await env.token(NODE, 'node')}\n`);
    const config = await loadRunConfig(await writeRunConfig(env.dir, 'node-a.yaml', env.runConfig));
    agent = new NodeAgent(config);
    await agent.start();
    const started = agent;
    const applied = await waitFor('the first document', async () => {
      const status = await nodeStatus();
      return status.appliedRevision !== null && status.appliedRevision === started.appliedRevision
        ? status.appliedRevision
        : undefined;
    });
    const policyBefore = started.appliedConfig?.policy?.revision;

    // The policy signer first: CentOps still signs with it, the configuration signer is still good.
    await revokeCentOps('policy-signer');
    const pack = await readPolicyDir(defaultPackDir());
    const changed = { ...pack, 'dmr/extra.rego': 'package dmr.extra\n\nmarker := true\n' };
    const put = await env.api('/v1/policy', { method: 'PUT', body: { files: changed } });
    assert.equal(put.status, 200, put.text);
    const bundleRefused = await waitFor('the bundle refusal', async () => {
      const status = await nodeStatus();
      return status.refused !== null && status.refused.revision > applied ? status.refused : undefined;
    });
    assert.match(bundleRefused.reason, /^POLICY_BUNDLE_INVALID: policy bundle refused \(revoked\)/);
    assert.equal(started.appliedConfig?.policy?.revision, policyBefore, 'the last good bundle keeps running');

    // Then the configuration signer: the next document is refused before anything in it is used.
    await revokeCentOps('config-signer');
    const lastGood = started.appliedRevision;
    const created = await env.api('/v1/organisations', {
      method: 'POST',
      body: { id: 'rik', name: 'RIK', labels: {} },
    });
    assert.equal(created.status, 201, created.text);
    const configRefused = await waitFor('the configuration refusal', async () => {
      const status = await nodeStatus();
      return status.refused?.reason.startsWith('CONFIG_SIGNATURE_INVALID') === true ? status.refused : undefined;
    });
    assert.match(
      configRefused.reason,
      /node configuration refused \(revoked\): the signer certificate \w+ is revoked \(keyCompromise/,
    );
    assert.equal(started.appliedRevision, lastGood, 'the last good configuration keeps running');
  });
});
