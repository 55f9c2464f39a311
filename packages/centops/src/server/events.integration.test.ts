/**
 * CentOps' events over a real server (SQLite, real mutual TLS, the real opa
 * for the policy change): each is one JSON log line, one
 * `dmr_events_total` increment on /metrics and one entry in CentOps' audit
 * log — certificate issued, revoked (and the denylist entry it makes),
 * denylist lifted, policy changed, revision published — and a node's
 * report through POST /v1/nodes/:id/events, which only that node may make,
 * only with catalogue fields, and only so often.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry } from '../store/index.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import { NODE_EVENTS_BURST } from '../routes/node-events.js';
import { startEmptyCentOps, type EmptyCentOps } from './test-support/empty-centops.js';
import type { Credentials } from './test-support/https.js';

const ACTOR = 'spiffe://dmr.test/operator/admin';
type Line = Record<string, unknown> & { msg?: string; event?: string };

describe('CentOps events: one log line, one counter, one audit record', () => {
  let centops: EmptyCentOps;
  const lines: Line[] = [];
  let nodeCredentials: Credentials;

  const scrape = async (): Promise<string> => {
    const response = await fetch(`${centops.server.metricsUrl as string}/metrics`);
    return response.text();
  };
  const count = async (kind: string, reason: string): Promise<number> => {
    const series = `dmr_events_total{kind="${kind}",reason="${reason}"} `;
    const line = (await scrape()).split('\n').find((candidate) => candidate.startsWith(series));
    return line === undefined ? 0 : Number(line.slice(series.length));
  };
  const eventLines = (event: string): Line[] => lines.filter((line) => line.event === event);
  const audit = async (action: AuditEntry['action'], id: string): Promise<AuditEntry[]> =>
    (await centops.store.listAudit({ action, id, limit: 1000 })).items;

  before(async () => {
    centops = await startEmptyCentOps({
      label: 'centops-events',
      configure: (config) => {
        config.metricsListen = { host: '127.0.0.1', port: 0 };
      },
      server: {
        logger: {
          level: 'info',
          stream: { write: (line: string) => void lines.push(JSON.parse(line) as Line) },
        },
      },
    });
    await centops.store.create('Organisation', organisation('police'), ACTOR);
    await centops.store.create('Node', node('dmr-tallinn'), ACTOR);
    await centops.store.create('Node', node('dmr-tartu'), ACTOR);
    await centops.store.create('Client', client('police-bot', 'police', 'dmr-tallinn'), ACTOR);
    nodeCredentials = await centops.enrol('dmr-tallinn', { kind: 'node' });
  });
  after(() => centops?.close());

  it('certificate issued: the enrolment is a log line, a counter and the certificate.record entry', async () => {
    const before = await count('certificate.issued', 'enrol');
    const enrolled = await centops.enrol('police-bot');
    const [line] = eventLines('certificate.issued').filter((candidate) => candidate.id === 'police-bot');
    assert.ok(line !== undefined, 'one log line');
    assert.equal(line.msg, 'certificate.issued');
    assert.equal(line.serial, enrolled.serial.toLowerCase());
    assert.equal(line.principal, 'client');
    assert.equal(line.via, 'enrol');
    assert.equal(await count('certificate.issued', 'enrol'), before + 1);
    const records = await audit('certificate.record', 'police-bot');
    assert.equal(records.length, 1);
    assert.equal(records[0]?.detail?.serial, line.serial);
  });

  it('certificate revoked: each revoked serial and the denylist entry it made, then the entry lifted', async () => {
    const enrolled = await centops.enrol('police-bot');
    const serial = enrolled.serial.toLowerCase();
    const revoked = await centops.api(`/v1/certificates/${serial}/revoke`, {
      method: 'POST',
      body: { reason: 'keyCompromise' },
    });
    assert.equal(revoked.status, 200, revoked.text);
    const serials = (revoked.json as { serials: string[] }).serials;
    assert.ok(serials.includes(serial));
    const revokedLines = eventLines('certificate.revoked').filter((line) => line.id === 'police-bot');
    assert.deepEqual(revokedLines.map((line) => line.serial).sort(), [...serials].sort());
    assert.ok(revokedLines.every((line) => line.reason === 'keyCompromise' && line.msg === 'certificate.revoked'));
    assert.equal(await count('certificate.revoked', 'keyCompromise'), serials.length);
    assert.equal((await audit('certificate.revoke', 'police-bot')).length, serials.length);

    const [denied] = eventLines('denylist.changed');
    assert.equal(denied?.op, 'add');
    assert.equal(denied?.id, 'police-bot');
    assert.equal(await count('denylist.changed', 'add'), 1);
    const added = await audit('denylist.add', 'police-bot');
    assert.equal(added.length, 1);
    assert.equal(added[0]?.revision, denied?.revision);

    const lifted = await centops.api('/v1/denylist/police-bot', { method: 'DELETE' });
    assert.equal(lifted.status, 204, lifted.text);
    const removed = eventLines('denylist.changed').filter((line) => line.op === 'remove');
    assert.equal(removed.length, 1);
    assert.equal(removed[0]?.principal, 'client');
    assert.equal(await count('denylist.changed', 'remove'), 1);
    const entry = await audit('denylist.remove', 'police-bot');
    assert.equal(entry[0]?.revision, removed[0]?.revision);
    // Every one of those changes published a revision: one config.published each, never twice for one revision.
    const published = eventLines('config.published').map((line) => line.revision as number);
    assert.ok(published.includes(removed[0]?.revision as number));
    assert.equal(new Set(published).size, published.length);
  });

  it('policy changed: a new version that passed opa is a line, a counter and the policy.update entry', async () => {
    const current = (await centops.api('/v1/policy')).json as { version: number; files: Record<string, string> };
    const data = JSON.parse(current.files['dmr/data.json'] as string) as { grants: unknown[] };
    data.grants.push({ from: 'police', to: 'police' });
    const files = { ...current.files, 'dmr/data.json': `${JSON.stringify(data, null, 2)}\n` };
    const accepted = await centops.api('/v1/policy', { method: 'PUT', body: { files } });
    assert.equal(accepted.status, 200, accepted.text);
    const policy = (accepted.json as { policy: { version: number; digest: string; registryRevision: number } }).policy;
    const [line] = eventLines('policy.changed');
    assert.deepEqual(
      { version: line?.version, digest: line?.digest, revision: line?.revision },
      { version: policy.version, digest: policy.digest, revision: policy.registryRevision },
    );
    assert.equal(await count('policy.changed', 'none'), 1);
    const entries = (await centops.store.listAudit({ action: 'policy.update', limit: 100 })).items;
    assert.equal(entries.at(-1)?.revision, policy.registryRevision);
    const refused = await centops.api('/v1/policy', {
      method: 'PUT',
      body: { files: { ...files, 'dmr/authz/broken.rego': 'package dmr.authz\nbroken if {' } },
    });
    assert.equal(refused.status, 422, 'a refused policy is no change');
    assert.equal(await count('policy.changed', 'none'), 1);
  });

  it("a node's report: appended to the audit log with the node as actor, logged and counted", async () => {
    const at = new Date().toISOString();
    const answer = await centops.api('/v1/nodes/dmr-tallinn/events', {
      method: 'POST',
      credentials: nodeCredentials,
      body: { kind: 'config.refused', at, fields: { node: 'dmr-tallinn', revision: 3, code: 'CONFIG_INVALID' } },
    });
    assert.equal(answer.status, 204, answer.text);
    const [entry] = await audit('node.event', 'dmr-tallinn');
    assert.equal(entry?.actor, 'spiffe://dmr.test/node/dmr-tallinn');
    assert.equal(entry?.kind, 'Node');
    assert.deepEqual(entry?.detail, {
      event: 'config.refused',
      at,
      node: 'dmr-tallinn',
      revision: 3,
      code: 'CONFIG_INVALID',
    });
    const [line] = eventLines('config.refused');
    assert.equal(line?.msg, 'config.refused');
    assert.equal(line?.code, 'CONFIG_INVALID');
    assert.equal(await count('config.refused', 'CONFIG_INVALID'), 1);
  });

  it('takes reports only from the node itself, only node kinds, only catalogue fields', async () => {
    const body = { kind: 'config.applied', at: new Date().toISOString(), fields: { node: 'dmr-tartu', revision: 1 } };
    const post = (path: string, credentials: Credentials, payload: unknown) =>
      centops.api(path, { method: 'POST', credentials, body: payload });
    const before = (await audit('node.event', 'dmr-tartu')).length;
    assert.equal((await post('/v1/nodes/dmr-tartu/events', nodeCredentials, body)).status, 403, 'another node');
    assert.equal((await post('/v1/nodes/dmr-tartu/events', centops.admin, body)).status, 403, 'an operator');
    const own = { ...body, fields: { node: 'dmr-tartu', revision: 1 } };
    assert.equal((await post('/v1/nodes/dmr-tallinn/events', nodeCredentials, own)).status, 400, 'names another');
    for (const bad of [
      { ...body, kind: 'certificate.revoked' },
      { ...body, fields: { node: 'dmr-tallinn', revision: 1, payload: 'hello' } },
      { ...body, fields: { node: 'dmr-tallinn', revision: 'one' } },
      { ...body, at: 'yesterday', fields: { node: 'dmr-tallinn', revision: 1 } },
    ]) {
      const answer = await post('/v1/nodes/dmr-tallinn/events', nodeCredentials, bad);
      assert.ok(answer.status === 400 || answer.status === 422, `${JSON.stringify(bad)}: ${answer.status}`);
    }
    assert.equal((await audit('node.event', 'dmr-tartu')).length, before);
  });

  it('bounds how often one node reports: a burst, then 429 RATE_LIMITED with a retry time', async () => {
    const body = (revision: number) => ({
      kind: 'config.applied',
      at: new Date().toISOString(),
      fields: { node: 'dmr-tallinn', revision },
    });
    const statuses: number[] = [];
    let limited: { status: number; json: unknown } | undefined;
    for (let revision = 0; revision <= NODE_EVENTS_BURST + 1 && limited === undefined; revision += 1) {
      const answer = await centops.api('/v1/nodes/dmr-tallinn/events', {
        method: 'POST',
        credentials: nodeCredentials,
        body: body(revision),
      });
      statuses.push(answer.status);
      if (answer.status === 429) limited = answer;
    }
    assert.ok(limited !== undefined, `refused within the burst: ${statuses.join(',')}`);
    const error = (limited.json as { error: { code: string; details: { retryAfterSeconds: number } } }).error;
    assert.equal(error.code, 'RATE_LIMITED');
    assert.ok(error.details.retryAfterSeconds >= 1);
    // Counted before the answer: every accepted report once, the refused one not at all.
    assert.equal(await count('config.applied', 'none'), statuses.filter((status) => status === 204).length);
  });
});
