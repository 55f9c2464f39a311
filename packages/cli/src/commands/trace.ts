/**
 * `dmr trace <message-id>`: the path of one message from the audit records
 * (nodes, hops, the time at each, decisions and reasons), without Jaeger;
 * a Jaeger link when one is known. A thin layer over @dmr/node's
 * audit/trace.ts; docs/observability.md.
 *
 * Sources, one of: the local mesh (mesh.json of `dmr up`: every node's
 * `dmr.audit` stream, read with the node's certificate), a node's
 * run-config (`--config`, repeatable), or export files (`--from`,
 * repeatable). CentOps is not read: it holds checkpoints, not routing
 * records.
 */
import { basename } from 'node:path';
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { DmrError, parseDuration } from '@dmr/core';
import type * as NodeLibrary from '@dmr/node';
import type { MessageTrace, ScanResult } from '@dmr/node';
import { action } from '../action.js';
import { collect, positiveInt } from '../options.js';
import { printResult, progress, renderTable, reportError } from '../output.js';

/** Default bound of a read: entries per source (records and checkpoints). */
export const DEFAULT_TRACE_LIMIT = 1_000_000;

interface TraceCommandOptions {
  from: string[];
  config: string[];
  dir: string;
  limit: string;
  since?: string;
  idleMs: string;
  jaeger?: string;
  json: boolean;
}

function renderTrace(trace: MessageTrace): string {
  const table = renderTable(
    ['HOP', 'NODE', 'AT', '+MS', 'DECISION', 'NEXT', 'REASON', 'POLICY'],
    trace.steps.map((step) => [
      step.hop === null ? 'report' : String(step.hop),
      step.node,
      step.at,
      `+${step.afterMs}`,
      step.result,
      step.nextHop ?? (step.result === 'routed' ? (step.recipient ?? '') : ''),
      step.reason ?? '',
      [step.policyRevision ?? '', ...step.policyReasons].filter((part) => part !== '').join(' '),
    ]),
  );
  const first = trace.steps[0];
  const lines = [
    `message ${trace.messageId}: ${first?.sender ?? '?'} → ${first?.recipient ?? '?'}`,
    `path ${trace.nodes.join(' → ')}: ${trace.outcome} after ${trace.elapsedMs} ms (${trace.steps.length} records)`,
    table,
    trace.traceIds.length === 0 ? 'trace: none recorded' : `trace: ${trace.traceIds.join(', ')}`,
    ...trace.jaeger.map((url) => `jaeger: ${url}`),
    `read: ${trace.sources
      .map((source) => `${source.source} ${source.read}${source.truncated ? ' (stopped at --limit)' : ''}`)
      .join(', ')}`,
  ];
  return lines.join('\n');
}

async function nodeModule(): Promise<typeof NodeLibrary> {
  return import('@dmr/node');
}

export function traceCommand(): Command {
  return new Command('trace')
    .description(
      "print a message's path from the audit records: nodes, hops, the time at each, decisions and reasons; links Jaeger when known",
    )
    .argument('<message-id>', 'the message id (UUID)')
    .option('--from <file>', 'an export file (`dmr audit export`); repeat for each node', collect, [])
    .option(
      '--config <file>',
      "a node's run-config: read its dmr.audit stream with its certificate; repeatable",
      collect,
      [],
    )
    .option(
      '--dir <dir>',
      'the local mesh (`dmr up`) whose nodes to read when no --from/--config is given',
      '.dmr/mesh',
    )
    .option('--limit <n>', 'read at most this many audit entries per node or file', String(DEFAULT_TRACE_LIMIT))
    .option('--since <duration>', 'read the streams from this long ago only (e.g. 15m, 24h); default all')
    .option(
      '--idle-ms <ms>',
      'stream read: on a quiet stream, stop once nothing new arrived for this long (a busy one stops at its end as of the start)',
      '1000',
    )
    .option('--jaeger <url>', 'the Jaeger UI (e.g. http://127.0.0.1:16686) to link the trace to; default the mesh’s')
    .option('--json', 'print JSON (same as -o json)', false)
    .addHelpText(
      'after',
      `
Examples:
  dmr trace 3f0c…                                   # every node of the local mesh (.dmr/mesh/mesh.json)
  dmr trace 3f0c… --from node-1.audit.jsonl --from node-2.audit.jsonl
  dmr trace 3f0c… --config /etc/dmr/node.yaml --since 1h --json

Exit codes: 0 found; 3 MESSAGE_NOT_FOUND (no record names the message in what was read); 2 bad arguments.`,
    )
    .action(
      action<[string, TraceCommandOptions]>(async (context, rawId, options) => {
        const format = options.json ? 'json' : context.format;
        try {
          const node = await nodeModule();
          const messageId = node.traceMessageId(rawId);
          const limit = positiveInt(options.limit, '--limit', 100_000_000) ?? DEFAULT_TRACE_LIMIT;
          const idleMs = positiveInt(options.idleMs, '--idle-ms', 600_000) ?? 1000;
          const since = options.since === undefined ? undefined : new Date(Date.now() - parseDuration(options.since));
          let jaeger = options.jaeger;
          if (jaeger !== undefined) node.jaegerTraceUrl(jaeger, '0'.repeat(32)); // refuse a bad URL before reading
          const scans: ScanResult[] = [];
          if (options.from.length > 0) {
            if (options.config.length > 0) {
              throw new DmrError('INVALID_ARGUMENT', 'give --from files or --config run-configs, not both', {
                hint: 'export the streams first (`dmr audit export`) and pass every file with --from',
              });
            }
            for (const file of options.from) {
              let text: string;
              try {
                text = await readFile(file, 'utf8');
              } catch (error) {
                throw new DmrError('NOT_FOUND', `the export ${file} cannot be read`, {
                  cause: error,
                  hint: 'check the path',
                });
              }
              scans.push(node.scanExport(node.parseExport(text), messageId, basename(file), limit));
            }
          } else {
            let configs = options.config;
            if (configs.length === 0) {
              const { readMeshState } = await import('@dmr/mesh');
              const state = await readMeshState(options.dir);
              configs = state.nodes.map((entry) => entry.config);
              jaeger ??= state.jaeger?.url;
            }
            const results = await Promise.all(
              configs.map(async (file) => {
                const config = await node.loadRunConfig(file);
                return node.scanNode(config, {
                  messageId,
                  limit,
                  since,
                  idleMs,
                  onProgress: (read) => progress(`${config.node}: read ${read} audit entries`),
                });
              }),
            );
            scans.push(...results);
          }
          const trace = node.traceMessage(messageId, scans, { jaeger });
          printResult(format, trace, renderTrace);
        } catch (error) {
          if (!options.json) throw error;
          process.exitCode = reportError(error, 'json');
        }
      }),
    );
}
