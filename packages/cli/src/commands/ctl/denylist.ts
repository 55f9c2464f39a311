/**
 * `dmr ctl denylist list | add | lift`: the ids nodes refuse, over the
 * existing routes (GET, POST /v1/denylist; DELETE /v1/denylist/{id}).
 * Adding revokes every unexpired certificate of the id and moves its
 * not-before to now; lifting does neither back, so the id enrols again.
 */
import { Command, Option } from 'commander';
import { action } from '../../action.js';
import { printResult, renderFields } from '../../output.js';
import { apiClient, required } from './common.js';
import { renderTable } from '../../output.js';

const DENY_KINDS = ['client', 'node', 'operator'] as const;

interface DenylistEntry {
  id: string;
  kind: string;
  reason: string;
  since: string;
  addedBy: string;
}

interface Denied {
  id: string;
  kind: string;
  notBefore: string;
  serials: string[];
  denylisted: boolean;
}

function listCommand(): Command {
  return new Command('list').description('the denylisted ids, ordered by id').action(
    action<[]>(async ({ format, command }) => {
      const list = await (await apiClient(command)).get<{ items: DenylistEntry[] }>('/v1/denylist');
      printResult(format, list, (value) =>
        value.items.length === 0
          ? 'the denylist is empty'
          : renderTable(
              ['ID', 'KIND', 'SINCE', 'BY', 'REASON'],
              value.items.map((entry) => [entry.id, entry.kind, entry.since, entry.addedBy, entry.reason]),
            ),
      );
    }),
  );
}

function addCommand(): Command {
  return new Command('add')
    .description(
      'deny an id: every unexpired certificate of it is revoked, nodes refuse it from the next revision ' +
        '(operators: admins only; CentOps refuses the operator, nodes never see operators)',
    )
    .argument('<id>', 'the client, node or operator id')
    .addOption(new Option('--kind <kind>', 'what the id is (required)').choices([...DENY_KINDS]))
    .option('--reason <text>', 'why, kept with the entry and in the audit log (required)')
    .action(
      action<[string, { kind?: string; reason?: string }]>(async ({ format, command }, id, options) => {
        const kind = required(options.kind, '--kind', 'client');
        const reason = required(options.reason, '--reason', '"key leaked"');
        const denied = await (await apiClient(command)).post<Denied>('/v1/denylist', { id, kind, reason });
        printResult(format, denied, (value) =>
          renderFields([
            ['denied', `${value.kind} ${value.id}`],
            ['not before', `${value.notBefore} (certificates issued earlier are refused)`],
            ['revoked', value.serials.length === 0 ? 'no certificates' : value.serials.join(', ')],
            ['denylisted', value.denylisted ? 'yes (nodes refuse it from the next revision)' : 'no (an operator)'],
          ]),
        );
      }),
    );
}

function liftCommand(): Command {
  return new Command('lift')
    .description('lift a denylist entry (a new revision); revoked certificates stay revoked, the id enrols again')
    .argument('<id>', 'the denylisted id')
    .action(
      action<[string]>(async ({ format, command }, id) => {
        await (await apiClient(command)).request('DELETE', `/v1/denylist/${encodeURIComponent(id)}`);
        printResult(format, { id, lifted: true }, (value) =>
          renderFields([
            ['lifted', value.id],
            ['next', `it may enrol again with a new token: dmr ctl token create --id ${value.id}`],
          ]),
        );
      }),
    );
}

export function denylistCommand(): Command {
  return new Command('denylist')
    .description('ids nodes refuse: list, add (revokes the id’s certificates), lift')
    .addCommand(listCommand())
    .addCommand(addCommand())
    .addCommand(liftCommand());
}
