/**
 * The agent's events on a real node (a real CentOps in process, real mutual
 * TLS, a real harness broker): configuration applied, configuration refused,
 * its certificate renewed and installed, its certificate expiring. Each is
 * one log line of the agent, one `dmr_events_total` increment on the
 * agent's /metrics and one `node.event` entry in CentOps' audit log with the
 * node as actor (docs/events.md).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { ConfigSigner } from '@dmr/centops';
import type { NodeConfig } from '@dmr/contract';
import { waitFor } from '@dmr/core/testing';
import { NodeAgent, type AgentOptions } from './agent.js';
import { loadRunConfig, type RunConfig } from './run-config.js';
import { NODE, TD, startAgentEnvironment, writeRunConfig, type AgentEnvironment } from './test-support.js';

type Line = Record<string, unknown>;
interface AuditEntry {
  actor: string;
  action: string;
  id: string | null;
  detail: Record<string, unknown> | null;
}

describe('agent events: log line, counter and CentOps audit record', () => {
  let env: AgentEnvironment;
  let config: RunConfig;
  let agent: NodeAgent | undefined;
  const lines: Line[] = [];

  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString('utf8')) as Line);
        done();
      },
    }),
  );
  const start = async (options: AgentOptions = {}): Promise<NodeAgent> => {
    const started = new NodeAgent(config, { logger, ...options });
    await started.start();
    return started;
  };
  const counter = async (running: NodeAgent, kind: string, reason: string): Promise<number> => {
    const text = await (await fetch(`${running.metricsUrl as string}/metrics`)).text();
    const series = `dmr_events_total{kind="${kind}",reason="${reason}"} `;
    const line = text.split('\n').find((candidate) => candidate.startsWith(series));
    return line === undefined ? 0 : Number(line.slice(series.length));
  };
  /** CentOps' audit entries of the node's reports of `kind`, read over the API. */
  const reported = async (kind: string): Promise<AuditEntry[]> => {
    const answer = await env.api(`/v1/audit?action=node.event&id=${NODE}&limit=1000`);
    assert.equal(answer.status, 200, answer.text);
    return (answer.json as { items: AuditEntry[] }).items.filter((entry) => entry.detail?.event === kind);
  };
  const eventLines = (kind: string): Line[] => lines.filter((line) => line.event === kind);

  before(async () => {
    env = await startAgentEnvironment();
    config = await loadRunConfig(await writeRunConfig(env.dir, 'node-a.yaml', env.runConfig));
  });
  after(async () => {
    await agent?.stop();
    await env?.close();
  });

  it('configuration applied: the agent says so, counts it, and CentOps audits it with the node as actor', async () => {
    await writeFile(join(env.dir, 'node-a.token'), `${await env.token(NODE, 'node')}\n`);
    agent = await start();
    const running = agent;
    const [entry] = await waitFor('the applied report in the audit log', async () => {
      const entries = await reported('config.applied');
      return entries.length > 0 ? entries : undefined;
    });
    assert.equal(entry?.actor, `spiffe://${TD}/node/${NODE}`);
    assert.equal(entry?.detail?.node, NODE);
    assert.equal(entry?.detail?.revision, running.appliedRevision);
    const [line] = eventLines('config.applied');
    assert.equal(line?.msg, 'configuration applied');
    assert.equal(line?.revision, running.appliedRevision);
    assert.equal(await counter(running, 'config.applied', 'none'), 1);
  });

  it('configuration refused: the refusal code in the line, the counter and the audit record; the reason only in the line', async () => {
    const running = agent as NodeAgent;
    const applied = running.appliedConfig as NodeConfig;
    const wrong = new ConfigSigner({
      certificateChainPem: await readFile(join(env.centopsDir, 'signer', 'policy-signer.crt'), 'utf8'),
      privateKeyPem: await readFile(join(env.centopsDir, 'signer', 'policy-signer.key'), 'utf8'),
    });
    const outcome = await running.applyDocument({
      revision: applied.revision,
      jws: await wrong.sign({ ...applied, clients: [] }),
      via: 'poll',
    });
    assert.equal(outcome.result, 'refused');
    const [entry] = await waitFor('the refusal in the audit log', async () => {
      const entries = await reported('config.refused');
      return entries.length > 0 ? entries : undefined;
    });
    assert.deepEqual(
      { revision: entry?.detail?.revision, code: entry?.detail?.code },
      { revision: applied.revision, code: 'CONFIG_SIGNATURE_INVALID' },
    );
    assert.equal(entry?.detail?.reason, undefined, 'no free text in the audit record');
    const [line] = eventLines('config.refused');
    assert.equal(line?.msg, 'configuration refused');
    assert.equal(line?.level, 40);
    assert.equal(line?.code, 'CONFIG_SIGNATURE_INVALID');
    assert.match(String(line?.reason), /^CONFIG_SIGNATURE_INVALID: /);
    assert.equal(await counter(running, 'config.refused', 'CONFIG_SIGNATURE_INVALID'), 1);
  });

  it('certificate renewed by the node: certificate.installed from the node, certificate.renewed by CentOps', async () => {
    const running = agent as NodeAgent;
    const renewed = await running.renewNow();
    assert.ok(renewed);
    const [entry] = await waitFor('the installed report in the audit log', async () => {
      const entries = await reported('certificate.installed');
      return entries.length > 0 ? entries : undefined;
    });
    assert.equal(entry?.detail?.serial, renewed.serial);
    assert.equal(entry?.detail?.notAfter, renewed.notAfter.toISOString());
    assert.equal(eventLines('certificate.installed')[0]?.msg, 'certificate renewed');
    assert.equal(await counter(running, 'certificate.installed', 'none'), 1);
    // CentOps' side of the same renewal: its own record, made when it issued.
    const issued = await env.api(`/v1/audit?action=certificate.record&id=${NODE}&limit=1000`);
    const serials = (issued.json as { items: AuditEntry[] }).items.map((item) => item.detail?.serial);
    assert.ok(serials.includes(renewed.serial), `${renewed.serial} in ${serials.join(', ')}`);
  });

  it('certificate expiring: once its renewal is overdue, one event for the nearest threshold', async () => {
    const running = agent as NodeAgent;
    const identity = running.identity;
    assert.ok(identity);
    await running.stop();
    // A clock 12 hours before the end: the 1d threshold is crossed (7d too, announced as one event).
    const late = new Date(identity.notAfter.getTime() - 12 * 3_600_000);
    // The renewal is then due at once too: the check at start comes first, for the certificate the node holds.
    agent = await start({ now: () => late });
    const restarted = agent;
    const entries = await waitFor('the expiring report in the audit log', async () => {
      const found = (await reported('certificate.expiring')).filter((item) => item.detail?.serial === identity.serial);
      return found.length > 0 ? found : undefined;
    });
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.detail?.threshold, '1d');
    const line = eventLines('certificate.expiring').find((candidate) => candidate.serial === identity.serial);
    assert.equal(line?.level, 40);
    assert.equal(line?.threshold, '1d');
    assert.ok((await counter(restarted, 'certificate.expiring', '1d')) >= 1);
  });
});
