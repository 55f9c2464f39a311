/** `dmr ctl apply` (all or nothing, with a dry-run diff) and `dmr ctl export` (what apply reads back unchanged). */
import { Command } from 'commander';
import { isDmrError } from '@dmr/core';
import type { ApplyResult, ResourceKind, Stored } from '@dmr/centops';
import { action } from '../../action.js';
import { cliStreams, printResult } from '../../output.js';
import { apiClient, readInput, required } from './common.js';
import { locateProblems, parseDocuments, renderDocuments } from './documents.js';
import { listResources } from './registry.js';
import { renderApply } from './render.js';
import { KINDS } from './resources.js';

function applyCommand(): Command {
  return new Command('apply')
    .description('apply multi-document YAML (kind + spec each) as one all-or-nothing batch; --dry-run shows the diff')
    .option('-f, --file <file>', 'the documents (- for stdin); required')
    .option('--dry-run', 'validate and show what would change; write nothing')
    .action(
      action<[{ file?: string; dryRun?: boolean }]>(async ({ format, command }, options) => {
        const file = required(options.file, '-f', 'registry.yaml');
        const source = file === '-' ? 'stdin' : file;
        // The envelope is checked before connecting: a typo is reported even when CentOps is down.
        const documents = parseDocuments(await readInput(file, 'documents'), source);
        const client = await apiClient(command);
        let result: ApplyResult;
        try {
          result = await client.post<ApplyResult>(
            '/v1/apply',
            documents.map((document) => document.item),
            options.dryRun === true ? { dryRun: true } : undefined,
          );
        } catch (error) {
          throw isDmrError(error) ? locateProblems(error, documents, source) : error;
        }
        printResult(format, result, renderApply);
      }),
    );
}

function exportCommand(): Command {
  return new Command('export')
    .description('print the whole registry as apply-able multi-document YAML (-o json: the resources as JSON)')
    .action(
      action<[]>(async ({ format, command }) => {
        const client = await apiClient(command);
        const resources: Array<Stored<ResourceKind>> = [];
        for (const info of KINDS) resources.push(...(await listResources(client, info, { all: true })).items);
        if (format === 'json') {
          printResult(
            format,
            resources.map((resource) => ({ apiVersion: 'dmr/v1', kind: resource.kind, spec: resource.spec })),
            () => '',
          );
          return;
        }
        // YAML is the natural form here: it is what apply reads, so text and yaml print the same.
        cliStreams().stdout.write(renderDocuments(resources));
      }),
    );
}

export function applyCommands(): Command[] {
  return [applyCommand(), exportCommand()];
}
