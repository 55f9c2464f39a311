import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Load, RowId } from './options.js';
import {
  ROW_LABELS,
  computeRatios,
  cpuMicrosPerMessage,
  evaluateGoals,
  renderReport,
  type BenchReport,
  type PointResult,
  type RowResult,
} from './report.js';
import { summarize } from '@dmr/core';

function pointAt(load: Load, achieved: number, p99: number): PointResult {
  return {
    load,
    offered: load === 'max' ? null : load,
    sent: Math.round(achieved * 5),
    received: Math.round(achieved * 5),
    achieved,
    latencyMs: { ...summarize([p99 / 2, p99]), p99 },
    nacked: 0,
    missing: 0,
    skipped: 0,
    measuredMs: 5000,
  };
}

function row(id: RowId, points: PointResult[]): RowResult {
  return { row: id, label: ROW_LABELS[id], points };
}

const measured: RowResult[] = [
  row('a', [pointAt(1000, 1000, 2), pointAt('max', 18000, 40)]),
  row('b', [pointAt(1000, 1000, 6), { ...pointAt('max', 7000, 80), cpu: { broker: 90, worker: 10, bench: 30 } }]),
  row('c', [pointAt(1000, 1000, 8), pointAt('max', 5600, 90)]),
  row('d', [pointAt(1000, 1000, 7), pointAt('max', 6000, 85)]),
];

describe('evaluateGoals', () => {
  it('passes at exactly the goals: 75 % of b, 1.5 × b p99, 90 % of d', () => {
    const rows = [
      row('b', [pointAt(1000, 1000, 6), pointAt('max', 8000, 80)]),
      row('c', [pointAt(1000, 1000, 9), pointAt('max', 6000, 90)]),
      row('d', [pointAt('max', 6000 / 0.9, 85)]),
    ];
    assert.deepEqual(
      evaluateGoals(rows).map((goal) => goal.verdict),
      ['PASS', 'PASS', 'PASS'],
    );
  });

  it('misses just below the goals', () => {
    const rows = [
      row('b', [pointAt(1000, 1000, 6), pointAt('max', 8000, 80)]),
      row('c', [pointAt(1000, 1000, 9.01), pointAt('max', 5999, 90)]),
      row('d', [pointAt('max', 6000 / 0.89, 85)]),
    ];
    assert.deepEqual(
      evaluateGoals(rows).map((goal) => goal.verdict),
      ['MISS', 'MISS', 'MISS'],
    );
  });

  it('is n/a, never PASS, when a row is unavailable or a point was not run', () => {
    const rows: RowResult[] = [
      row('b', [pointAt('max', 7000, 80)]),
      { row: 'c', label: ROW_LABELS.c, unavailable: 'no router', points: [] },
      row('d', [pointAt('max', 6000, 85)]),
    ];
    const goals = evaluateGoals(rows);
    assert.deepEqual(
      goals.map((goal) => goal.verdict),
      ['n/a', 'n/a', 'n/a'],
    );
    assert.match(goals[1]?.detail ?? '', /c@1000, b@1000/);
  });

  it('is n/a when a point delivered nothing (no latency samples)', () => {
    const empty = { ...pointAt('max', 0, 0), latencyMs: summarize([]) };
    const goals = evaluateGoals([row('b', [pointAt('max', 7000, 80)]), row('c', [empty])]);
    assert.equal(goals[0]?.verdict, 'n/a');
  });
});

describe('evaluateGoals: the mesh rows', () => {
  it('judges e against the raw shovel s: 75 % of its throughput, 1.5 × its p99', () => {
    const rows = [
      row('s', [pointAt(1000, 1000, 20), pointAt('max', 3000, 300)]),
      row('e', [pointAt(1000, 1000, 30), pointAt('max', 2250, 400)]),
      row('f', [pointAt(1000, 1000, 50), pointAt('max', 1500, 600)]),
    ];
    const goals = evaluateGoals(rows);
    assert.deepEqual(
      goals.map((goal) => [goal.name, goal.verdict]),
      [
        ["e throughput ≥ 75 % of s's (max)", 'PASS'],
        ["e p99 at 1000 msg/s ≤ 1.5 × s's", 'PASS'],
      ],
    );
    const slower = [rows[0] as RowResult, row('e', [pointAt(1000, 1000, 30.1), pointAt('max', 2249, 400)])];
    assert.deepEqual(
      evaluateGoals(slower).map((goal) => goal.verdict),
      ['MISS', 'MISS'],
    );
  });

  it('is n/a while the mesh rows are not available, and leaves out goals of rows not in the run', () => {
    const rows: RowResult[] = [
      row('s', [pointAt(1000, 1000, 20), pointAt('max', 3000, 300)]),
      { row: 'e', label: ROW_LABELS.e, unavailable: 'no mesh yet', points: [] },
    ];
    assert.deepEqual(
      evaluateGoals(rows).map((goal) => goal.verdict),
      ['n/a', 'n/a'],
    );
    const ratios = computeRatios(rows, ['max']);
    assert.deepEqual(
      ratios.map((r) => r.name),
      ['e/s', 'f/s', 'f/e'],
    );
  });
});

describe('computeRatios', () => {
  it('divides c by b, a and d per load, throughput and p99', () => {
    const ratios = computeRatios(measured, [1000, 'max']);
    const cb = ratios.find((r) => r.name === 'c/b' && r.load === 'max');
    assert.equal(cb?.throughput, 0.8);
    assert.equal(cb?.p99, 90 / 80);
    const cd = ratios.find((r) => r.name === 'c/d' && r.load === 1000);
    assert.equal(cd?.p99, 8 / 7);
  });

  it('is null where either side is missing', () => {
    const ratios = computeRatios([row('a', [pointAt(1000, 1000, 2)])], [1000]);
    assert.ok(ratios.every((r) => r.throughput === null && r.p99 === null));
  });
});

describe('cpuMicrosPerMessage', () => {
  it('divides a share of one core by the throughput', () => {
    // 54 % of a core at 1,985 msg/s (the 16:57 run's router at c max): 272 µs per message.
    assert.equal(Math.round(cpuMicrosPerMessage(54, 1985) ?? NaN), 272);
    assert.equal(cpuMicrosPerMessage(100, 1000), 1000);
  });

  it('is null without a share or without deliveries', () => {
    assert.equal(cpuMicrosPerMessage(null, 1000), null);
    assert.equal(cpuMicrosPerMessage(undefined, 1000), null);
    assert.equal(cpuMicrosPerMessage(50, 0), null);
  });
});

describe('renderReport', () => {
  it('prints every row, the unavailable reason, ratios and verdicts', () => {
    const rows: RowResult[] = [
      ...measured.slice(0, 3),
      { row: 'd', label: ROW_LABELS.d, unavailable: 'skipped', points: [] },
    ];
    const report: BenchReport = {
      info: {
        startedAt: '2026-01-01T00:00:00.000Z',
        node: 'v20',
        rabbitmq: '3.10.8',
        cpus: 2,
        loadAverage: [1, 2, 3],
        loadAverageEnd: [3, 2, 1],
        durationS: 5,
        warmupS: 1,
        sizeBytes: 1024,
        window: 1000,
        settings: 'TLS',
      },
      rows,
      ratios: computeRatios(rows, [1000, 'max']),
      goals: evaluateGoals(rows),
    };
    const text = renderReport(report);
    assert.match(text, /^a\s+raw one hop\s+1000\s+1000\s+1\.00\s+2\.00/m);
    assert.match(text, /^b\s+raw relay \(2 hops\)\s+max\s+7000\s.*\s90\/10\/30\s+129\/14$/m);
    assert.match(text, /^d\s+DMR path, allow-all policy\s+-\s+not available\s+skipped$/m);
    assert.match(text, /^c\/b\s+max\s+0\.80\s+1\.13$/m);
    assert.match(text, /^PASS\s+c throughput ≥ 75 % of b's \(max\)\s+c 5600 \/ b 7000 msg\/s = 80 %$/m);
    assert.match(text, /^n\/a\s+with policy ≥ 90 %/m);
  });
});
