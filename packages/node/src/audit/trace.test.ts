import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, DmrError } from '@dmr/core';
import type { AuditRecord } from '../router/audit.js';
import { formatExport, parseExport } from './export-file.js';
import { jaegerTraceUrl, scanExport, traceMessage, traceMessageId, type ScanResult } from './trace.js';

const ID = '7d7c5f8e-2f61-4a4e-9d4c-0a1b2c3d4e5f';
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

function record(fields: Partial<AuditRecord> & Pick<AuditRecord, 'node' | 'result' | 'at'>): string {
  const value: AuditRecord = {
    kind: 'route',
    messageId: ID,
    sender: 'ria-bot',
    recipient: 'rik-bot',
    reason: null,
    policyRevision: 'p1',
    policyReasons: [],
    configRevision: 7,
    traceId: TRACE,
    v: 2,
    writer: `${fields.node}/router-0`,
    seq: 1,
    prev: null,
    run: 'run-1',
    ...fields,
  };
  return canonicalJson(value);
}

function scan(source: string, records: string[]): ScanResult {
  return { summary: { source, read: records.length, matched: records.length, invalid: 0, truncated: false }, records };
}

describe('traceMessage', () => {
  it('orders the path by the hop chain, not by the clocks of the nodes', () => {
    // node-c's clock is behind node-a's: its record has the earliest time, yet it is the last hop.
    const scans = [
      scan('node-c', [
        record({ node: 'node-c', result: 'routed', at: '2026-12-05T10:00:00.000Z', hops: ['node-a', 'node-b'] }),
      ]),
      scan('node-a', [
        record({ node: 'node-a', result: 'forwarded', nextHop: 'node-b', at: '2026-12-05T10:00:00.500Z' }),
      ]),
      scan('node-b', [
        record({
          node: 'node-b',
          result: 'forwarded',
          nextHop: 'node-c',
          at: '2026-12-05T10:00:00.520Z',
          hops: ['node-a'],
        }),
      ]),
    ];
    const trace = traceMessage(ID, scans, { jaeger: 'http://127.0.0.1:16686/' });
    assert.deepEqual(trace.nodes, ['node-a', 'node-b', 'node-c']);
    assert.deepEqual(
      trace.steps.map((step) => [step.hop, step.result, step.nextHop]),
      [
        [0, 'forwarded', 'node-b'],
        [1, 'forwarded', 'node-c'],
        [2, 'routed', null],
      ],
    );
    assert.equal(trace.outcome, 'routed');
    assert.equal(trace.elapsedMs, 520);
    assert.deepEqual(trace.traceIds, [TRACE]);
    assert.deepEqual(trace.jaeger, [`http://127.0.0.1:16686/trace/${TRACE}`]);
  });

  it('keeps every decision on a node in time order, a record read twice once, and reports after the route', () => {
    const held = record({
      node: 'node-a',
      result: 'forwarded',
      nextHop: 'node-b',
      at: '2026-12-05T10:00:01.000Z',
      seq: 4,
    });
    const refused = record({
      node: 'node-a',
      result: 'rejected',
      reason: 'RECIPIENT_UNREACHABLE',
      at: '2026-12-05T10:00:02.000Z',
      seq: 9,
    });
    const report = record({
      kind: 'dead-letter',
      node: 'node-a',
      result: 'reported',
      reason: 'MESSAGE_EXPIRED',
      at: '2026-12-05T10:00:00.000Z',
      seq: 2,
    });
    const trace = traceMessage(ID, [scan('node-a', [report, refused, held]), scan('node-a.jsonl', [held])]);
    assert.deepEqual(
      trace.steps.map((step) => [step.hop, step.result, step.reason]),
      [
        [0, 'forwarded', null],
        [0, 'rejected', 'RECIPIENT_UNREACHABLE'],
        [null, 'reported', 'MESSAGE_EXPIRED'],
      ],
    );
    assert.equal(trace.outcome, 'rejected');
  });

  it('skips records that are not valid routing records, and counts them', () => {
    const forged = JSON.stringify({ messageId: ID, node: 'node-a', result: 'routed', at: 'yesterday' });
    const good = record({ node: 'node-a', result: 'routed', at: '2026-12-05T10:00:00.000Z' });
    const trace = traceMessage(ID, [scan('node-a', ['{not json', forged, good])]);
    assert.equal(trace.steps.length, 1);
    assert.equal(trace.sources[0]?.invalid, 2);
  });

  it('MESSAGE_NOT_FOUND when nothing names the message, with a hint to raise the limit when a read was cut', () => {
    const other = record({ node: 'node-a', result: 'routed', at: '2026-12-05T10:00:00.000Z', messageId: 'x' });
    assert.throws(
      () => traceMessage(ID, [scan('node-a', [other])]),
      (error) => error instanceof DmrError && error.code === 'MESSAGE_NOT_FOUND' && /every node/.test(error.hint ?? ''),
    );
    const cut: ScanResult = {
      summary: { source: 'node-a', read: 10, matched: 0, invalid: 0, truncated: true },
      records: [],
    };
    assert.throws(
      () => traceMessage(ID, [cut]),
      (error) => error instanceof DmrError && error.code === 'MESSAGE_NOT_FOUND' && /--limit/.test(error.hint ?? ''),
    );
  });
});

describe('trace inputs', () => {
  it('a message id must be a UUID; upper case is folded as the router folds it', () => {
    assert.equal(traceMessageId(ID.toUpperCase()), ID);
    assert.throws(
      () => traceMessageId('not-a-uuid'),
      (error) => error instanceof DmrError && error.code === 'MESSAGE_ID_INVALID',
    );
  });

  it('a Jaeger URL must be http(s) without credentials', () => {
    assert.equal(jaegerTraceUrl('https://jaeger.example.ee/ui', TRACE), `https://jaeger.example.ee/ui/trace/${TRACE}`);
    for (const bad of ['file:///etc/passwd', 'http://user:pw@jaeger', 'jaeger:16686x']) {
      assert.throws(
        () => jaegerTraceUrl(bad, TRACE),
        (error) => error instanceof DmrError && error.code === 'INVALID_ARGUMENT',
        bad,
      );
    }
  });

  it('scanExport stops at the limit and says so', () => {
    const header = {
      format: 'dmr-audit-export' as const,
      version: 1 as const,
      source: 'stream' as const,
      trustDomain: 'dmr.test',
      exportedAt: '2026-12-05T10:00:00.000Z',
    };
    const lines = [1, 2, 3].map((seq) => ({
      origin: 'dmr.test/audit/node-a/router-0',
      record: record({ node: 'node-a', result: 'routed', at: '2026-12-05T10:00:00.000Z', seq }),
    }));
    const file = parseExport(formatExport(header, lines));
    assert.deepEqual(scanExport(file, ID, 'a.jsonl', 2).summary, {
      source: 'a.jsonl',
      read: 2,
      matched: 2,
      invalid: 0,
      truncated: true,
    });
    assert.equal(scanExport(file, ID, 'a.jsonl', 3).summary.truncated, false);
  });
});
