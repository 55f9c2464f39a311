/**
 * Text renderings for `dmr ctl`: aligned tables, `describe`, and the apply
 * diff. JSON and YAML go through output.ts's printResult unchanged, so
 * scripts see the API's own shapes.
 */
import type { ApplyResult, DiffEntry, ResourceKind, Stored } from '@dmr/centops';
import { renderFields, renderTable, yamlOf } from '../../output.js';
import type { KindInfo } from './resources.js';

export function renderResources(info: KindInfo, items: ReadonlyArray<Stored<ResourceKind>>): string {
  if (items.length === 0) return `no ${info.path}`;
  const headers = ['ID', ...info.columns.map(([header]) => header), 'VERSION'];
  const rows = items.map((item) => [
    item.spec.id,
    ...info.columns.map(([, read]) => (read as (spec: unknown) => string)(item.spec)),
    String(item.version),
  ]);
  return renderTable(headers, rows);
}

export function renderDescribe(resource: Stored<ResourceKind>): string {
  const head = renderFields([
    ['kind', resource.kind],
    ['id', resource.spec.id],
    ['version', resource.version],
    ['revision', resource.revision],
    ['created', resource.createdAt],
    ['updated', resource.updatedAt],
  ]);
  const spec = yamlOf(resource.spec)
    .trimEnd()
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
  return `${head}\nspec:\n${spec}`;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Leaves of a spec by path (`certificateProfile.lifetime`). Arrays of plain
 * values are one leaf (`roles: ["a","b"]` reads better whole than by index);
 * arrays holding objects are walked by index.
 */
function leaves(value: Json, prefix: string, out: Map<string, string>): void {
  if (Array.isArray(value) && value.some((item) => typeof item === 'object' && item !== null)) {
    value.forEach((item, index) => leaves(item, `${prefix}[${index}]`, out));
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 0) out.set(prefix, '{}');
    for (const key of keys.sort()) leaves(value[key] ?? null, prefix === '' ? key : `${prefix}.${key}`, out);
  } else {
    out.set(prefix, JSON.stringify(value));
  }
}

/** Field-level changes between two specs: `path: before → after`, with (absent) for a side that lacks it. */
export function fieldDiff(before: unknown, after: unknown): string[] {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  leaves(JSON.parse(JSON.stringify(before ?? {})) as Json, '', a);
  leaves(JSON.parse(JSON.stringify(after ?? {})) as Json, '', b);
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  return paths
    .filter((path) => a.get(path) !== b.get(path))
    .map((path) => `${path}: ${a.get(path) ?? '(absent)'} → ${b.get(path) ?? '(absent)'}`);
}

const MARK: Record<DiffEntry['action'], string> = { created: '+', updated: '~', unchanged: '=', deleted: '-' };

export function diffCounts(diff: readonly DiffEntry[]): Record<DiffEntry['action'], number> {
  const counts = { created: 0, updated: 0, unchanged: 0, deleted: 0 };
  for (const entry of diff) counts[entry.action] += 1;
  return counts;
}

export function renderApply(result: ApplyResult): string {
  const lines: string[] = [];
  for (const entry of result.diff) {
    lines.push(`${MARK[entry.action]} ${entry.action.padEnd(9)} ${entry.kind}/${entry.id}`);
    if (entry.action === 'updated') {
      for (const change of fieldDiff(entry.before?.spec, entry.after?.spec)) lines.push(`      ${change}`);
    }
  }
  const counts = diffCounts(result.diff);
  const summary = `${counts.created} created, ${counts.updated} updated, ${counts.unchanged} unchanged, ${counts.deleted} deleted`;
  if (result.dryRun) {
    const next =
      result.revision === result.previousRevision ? 'no new revision' : `would be revision ${result.revision}`;
    lines.push(`dry run: ${summary}; ${next} (now ${result.previousRevision}); nothing was written`);
  } else {
    const next =
      result.revision === result.previousRevision
        ? `nothing changed (revision ${result.revision})`
        : `revision ${result.previousRevision} → ${result.revision}`;
    lines.push(`applied: ${summary}; ${next}`);
  }
  return lines.join('\n');
}
