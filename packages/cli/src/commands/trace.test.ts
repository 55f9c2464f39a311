/**
 * `dmr trace` over export files, as a user runs it: the path in text and
 * JSON, MESSAGE_NOT_FOUND with its exit code, bad arguments refused before
 * anything is read. Reading live streams is tested on three real nodes in
 * packages/node/src/router/mesh-reroute.integration.test.ts. In process
 * (runDmrInProcess, docs/decisions/0038-ci-time.md) except the text
 * MESSAGE_NOT_FOUND and the help, which a real `dmr` child runs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canonicalJson } from '@dmr/core';
import { dmrCli, runDmrInProcess } from '../test-support.js';

const ID = '0b6f1d2e-3c4a-4b5c-8d6e-7f8091a2b3c4';
const TRACE = '0af7651916cd43dd8448eb211c80319c';

let cwd = '';
const { dmr, ok } = dmrCli(() => ({ cwd }), runDmrInProcess);
const spawned = dmrCli(() => ({ cwd }));

function exportOf(node: string, records: Array<Record<string, unknown>>): string {
  const header = {
    format: 'dmr-audit-export',
    version: 1,
    source: 'stream',
    trustDomain: 'dmr.test',
    exportedAt: '2026-12-05T10:00:01.000Z',
  };
  const lines = records.map((fields, index) => ({
    origin: `dmr.test/audit/${node}/router-0`,
    record: canonicalJson({
      kind: 'route',
      node,
      messageId: ID,
      sender: 'ria-bot',
      recipient: 'rik-bot',
      reason: null,
      policyRevision: 'p1',
      policyReasons: [],
      configRevision: 3,
      traceId: TRACE,
      v: 2,
      writer: `${node}/router-0`,
      seq: index + 1,
      prev: null,
      run: 'r',
      ...fields,
    }),
  }));
  return [header, ...lines].map((line) => JSON.stringify(line)).join('\n') + '\n';
}

describe('dmr trace', () => {
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-trace-'));
    await writeFile(
      join(cwd, 'a.jsonl'),
      exportOf('node-1', [{ result: 'forwarded', nextHop: 'node-2', at: '2026-12-05T10:00:00.100Z' }]),
    );
    await writeFile(
      join(cwd, 'b.jsonl'),
      exportOf('node-2', [
        { result: 'routed', at: '2026-12-05T10:00:00.130Z', hops: ['node-1'] },
        { result: 'routed', at: '2026-12-05T10:00:00.140Z', messageId: '11111111-2222-4333-8444-555555555555' },
      ]),
    );
  });
  after(() => rm(cwd, { recursive: true, force: true }));

  it('prints the path from export files: nodes, hops, time, decisions, the Jaeger link', async () => {
    const run = await ok(
      'trace',
      ID.toUpperCase(),
      '--from',
      'a.jsonl',
      '--from',
      'b.jsonl',
      '--jaeger',
      'http://127.0.0.1:16686',
    );
    assert.match(run.stdout, /path node-1 → node-2: routed after 30 ms \(2 records\)/);
    assert.match(run.stdout, /^0 +node-1 .* \+0 +forwarded +node-2/m);
    assert.match(run.stdout, /^1 +node-2 .* \+30 +routed +rik-bot/m);
    assert.match(run.stdout, new RegExp(`jaeger: http://127.0.0.1:16686/trace/${TRACE}`));
    const json = JSON.parse((await ok('trace', ID, '--from', 'b.jsonl', '--from', 'a.jsonl', '--json')).stdout) as {
      nodes: string[];
      traceIds: string[];
      sources: Array<{ source: string; read: number }>;
    };
    assert.deepEqual(json.nodes, ['node-1', 'node-2']);
    assert.deepEqual(json.traceIds, [TRACE]);
    assert.deepEqual(
      json.sources.map((source) => [source.source, source.read]),
      [
        ['b.jsonl', 2],
        ['a.jsonl', 1],
      ],
    );
  });

  it('MESSAGE_NOT_FOUND (exit 3) when no record names the message, in text and --json', async () => {
    const unknown = '99999999-2222-4333-8444-555555555555';
    const text = await spawned.dmr('trace', unknown, '--from', 'a.jsonl');
    assert.equal(text.status, 3, text.stderr);
    assert.match(text.stderr, /^error\[MESSAGE_NOT_FOUND\]: /);
    const json = await dmr('trace', unknown, '--from', 'a.jsonl', '--json');
    assert.equal(json.status, 3);
    assert.equal((JSON.parse(json.stderr) as { error: { code: string } }).error.code, 'MESSAGE_NOT_FOUND');
  });

  it('refuses a bad message id, limit or Jaeger URL, and a missing file, before reading anything else', async () => {
    for (const [args, code] of [
      [['not-a-uuid', '--from', 'a.jsonl'], 'MESSAGE_ID_INVALID'],
      [[ID, '--from', 'a.jsonl', '--limit', '0'], 'INVALID_ARGUMENT'],
      [[ID, '--from', 'a.jsonl', '--jaeger', 'ftp://x'], 'INVALID_ARGUMENT'],
      [[ID, '--from', 'missing.jsonl'], 'NOT_FOUND'],
      [[ID, '--dir', 'no-mesh-here'], 'NOT_FOUND'],
    ] as const) {
      const run = await dmr('trace', ...args);
      assert.notEqual(run.status, 0, args.join(' '));
      assert.match(run.stderr, new RegExp(`^error\\[${code}\\]: `), `${args.join(' ')}: ${run.stderr}`);
    }
    const help = await spawned.ok('trace', '--help');
    for (const option of ['--from', '--config', '--limit', '--since', '--jaeger', '--json']) {
      assert.ok(help.stdout.includes(option), option);
    }
  });
});
