/**
 * `dmr audit export | verify | prove`: audit logs that prove themselves
 * (docs/audit.md). A thin layer over @dmr/node's audit/.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { CentOpsClient } from '@dmr/centops-client';
import { DmrError } from '@dmr/core';
import type * as NodeLibrary from '@dmr/node';
import type { InclusionStatement, VerifyReport } from '@dmr/node';
import { action } from '../action.js';
import { positiveInt } from '../options.js';
import { cliStreams, printResult, progress, renderFields, renderTable } from '../output.js';
import { ctlTrustDomain } from './ctl/client.js';
import { loadCtlConfig, readConfigFile } from './ctl/config.js';

/** Loaded on demand: the node library pulls in the policy engine and the broker client. */
async function nodeModule(): Promise<typeof NodeLibrary> {
  return import('@dmr/node');
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new DmrError('NOT_FOUND', `${what} ${file} cannot be read`, { cause: error, hint: 'check the path' });
  }
}

function renderReport(report: VerifyReport): string {
  const table = renderTable(
    ['LOG', 'RECORDS', 'PROVEN', 'UNPROVEN', 'CHECKPOINTS', 'RESULT'],
    report.logs.map((log) => [
      log.origin,
      String(log.records),
      String(log.provenSize),
      String(log.unproven),
      String(log.checkpoints),
      log.problem === undefined ? 'ok' : `${log.problem.kind} (line ${log.problem.line})`,
    ]),
  );
  return `${table}\n${report.ok ? 'every log proves itself' : `first problem: ${report.firstProblem?.message ?? ''}`}`;
}

function renderStatements(statements: InclusionStatement[]): string {
  return statements
    .map((statement) =>
      [
        renderFields([
          ['log', statement.origin],
          ['leaf index', statement.index],
          ['tree size', statement.treeSize],
          ['record', statement.record],
        ]),
        'inclusion proof (base64, leaf to root):',
        ...statement.proof.map((hash) => `  ${hash}`),
        'countersigned checkpoint:',
        statement.checkpoint.trimEnd(),
      ].join('\n'),
    )
    .join('\n\n');
}

export function auditCommand(): Command {
  const command = new Command('audit').description(
    'audit logs that prove themselves: export a node stream or CentOps, verify an export offline, prove a message',
  );
  command.addCommand(
    new Command('export')
      .description("write an export file of a node's dmr.audit stream (--config) or of CentOps (--centops)")
      .requiredOption('--out <file>', 'the export file to write (JSON Lines)')
      .option('--config <file>', "the node's run-config file: read its audit stream with the node's certificate")
      .option('--centops', "CentOps' own audit log and every checkpoint it witnessed (operator certificate)", false)
      .option('--ctl-config <file>', 'with --centops: the CLI config (default $DMR_CONFIG or ~/.dmr/config.yaml)')
      .option(
        '--idle-ms <ms>',
        'stream export: on a quiet stream, stop once nothing new arrived for this long (a busy one stops at its end as of the start)',
        '2000',
      )
      .action(
        action<[{ out: string; config?: string; centops: boolean; ctlConfig?: string; idleMs: string }]>(
          async (context, options) => {
            if ((options.config === undefined) === !options.centops) {
              throw new DmrError('INVALID_ARGUMENT', 'give exactly one of --config <run-config> and --centops', {
                hint: 'a node exports its stream where it runs; an operator exports CentOps',
              });
            }
            const node = await nodeModule();
            const onProgress = (read: number) => progress(`read ${read} audit entries`);
            let text: string;
            if (options.config !== undefined) {
              const config = await node.loadRunConfig(options.config);
              const idleMs = positiveInt(options.idleMs, '--idle-ms', 600_000) ?? 2000;
              text = await node.exportFromNode(config, { idleMs, onProgress });
            } else {
              const config = await loadCtlConfig(options.ctlConfig);
              const ca = await readConfigFile(config, 'caBundle');
              const cert = await readConfigFile(config, 'clientCertificate');
              const key = await readConfigFile(config, 'clientKey');
              const trustDomain = ctlTrustDomain(config, ca, cert);
              const client = new CentOpsClient({
                apiUrl: config.endpoint,
                caPem: ca,
                trustDomain,
                identity: { certPem: cert, keyPem: key },
              });
              text = await node.exportFromCentOps(client, trustDomain, onProgress);
            }
            await writeFile(options.out, text, { mode: 0o644 });
            const lines = text.split('\n').length - 2;
            printResult(context.format, { file: options.out, entries: lines }, (value) =>
              renderFields([
                ['written', value.file],
                ['entries', value.entries],
              ]),
            );
          },
        ),
      ),
  );
  command.addCommand(
    new Command('verify')
      .description(
        'check an export offline against the trust bundle; names the first edited, deleted or reordered record, a cut tail, a fork or an unknown writer',
      )
      .argument('<file>', 'an export written by `dmr audit export`')
      .requiredOption('--trust-bundle <pem>', "the mesh's root certificate(s), PEM")
      .action(
        action<[string, { trustBundle: string }]>(async (context, file, options) => {
          const node = await nodeModule();
          const exported = await node.readExportFile(file);
          const report = await node.verifyExport(exported, {
            trustBundlePem: await readText(options.trustBundle, 'the trust bundle'),
          });
          if (!report.ok) {
            if (context.format === 'text') cliStreams().stderr.write(`${renderReport(report)}\n`);
            throw node.brokenLogError(report);
          }
          printResult(context.format, report, renderReport);
        }),
      ),
  );
  command.addCommand(
    new Command('prove')
      .description("print a message's audit record and its inclusion proof to a countersigned checkpoint")
      .argument('<message-id>', 'the message id')
      .requiredOption('--file <export>', 'an export holding the record (`dmr audit export`)')
      .requiredOption('--trust-bundle <pem>', "the mesh's root certificate(s), PEM")
      .action(
        action<[string, { file: string; trustBundle: string }]>(async (context, messageId, options) => {
          const node = await nodeModule();
          const exported = await node.readExportFile(options.file);
          const statements = await node.proveMessage(exported, messageId, {
            trustBundlePem: await readText(options.trustBundle, 'the trust bundle'),
          });
          printResult(context.format, statements, renderStatements);
        }),
      ),
  );
  return command;
}
