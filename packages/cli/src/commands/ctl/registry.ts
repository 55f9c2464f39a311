/** `dmr ctl get | describe | create | delete`: one resource kind at a time, straight onto the REST routes. */
import { Command } from 'commander';
import { DmrError } from '@dmr/core';
import type { ResourceKind, Stored } from '@dmr/centops';
import { action } from '../../action.js';
import { printResult, renderFields } from '../../output.js';
import type { CentOpsClient } from './client.js';
import { apiClient, collect, positiveInt, readInput, required } from './common.js';
import { parseDocuments } from './documents.js';
import { renderDescribe, renderResources } from './render.js';
import { KINDS, itemPath, kindInfo, type KindInfo } from './resources.js';

interface Page {
  items: Array<Stored<ResourceKind>>;
  next: string | null;
}

const MAX_PAGE = 1000;

/** One page, or every page when `all` (following `next` until the server says there is none). */
export async function listResources(
  client: CentOpsClient,
  info: KindInfo,
  options: { limit?: number; all?: boolean; cursor?: string } = {},
): Promise<Page> {
  const items: Array<Stored<ResourceKind>> = [];
  let cursor = options.cursor;
  for (;;) {
    const page = await client.get<Page>(`/v1/${info.path}`, {
      limit: options.limit ?? (options.all === true ? MAX_PAGE : undefined),
      cursor,
    });
    items.push(...page.items);
    if (options.all !== true || page.next === null) return { items, next: page.next };
    cursor = page.next;
  }
}

const KIND_HELP = `kind: ${KINDS.map((info) => info.path).join(', ')} (singular works too)`;

interface GetOptions {
  limit?: string;
  all?: boolean;
  cursor?: string;
}

function getCommand(): Command {
  return new Command('get')
    .description('list resources of a kind (one page, or --all), or show one by id')
    .argument('<kind>', KIND_HELP)
    .argument('[id]', 'one resource instead of a list')
    .option('--limit <n>', `page size, 1–${MAX_PAGE} (default 100)`)
    .option('--all', 'follow the pages to the end')
    .option('--cursor <cursor>', 'continue a listing from the `next` of an earlier page')
    .action(
      action<[string, string | undefined, GetOptions]>(async ({ format, command }, kind, id, options) => {
        const info = kindInfo(kind);
        const client = await apiClient(command);
        if (id !== undefined) {
          const resource = await client.get<Stored<ResourceKind>>(itemPath(info, id));
          printResult(format, resource, (value) => renderResources(info, [value]));
          return;
        }
        const page = await listResources(client, info, {
          limit: positiveInt(options.limit, '--limit', MAX_PAGE),
          all: options.all,
          cursor: options.cursor,
        });
        printResult(format, page, (value) => {
          const table = renderResources(info, value.items);
          // Say there is more rather than let a page pass for the whole list.
          return value.next === null ? table : `${table}\n(more: --all, or --cursor ${value.next})`;
        });
      }),
    );
}

function describeCommand(): Command {
  return new Command('describe')
    .description('show one resource: its spec, version (the ETag for --if-match) and revision')
    .argument('<kind>', KIND_HELP)
    .argument('<id>', 'resource id')
    .action(
      action<[string, string]>(async ({ format, command }, kind, id) => {
        const info = kindInfo(kind);
        const resource = await (await apiClient(command)).get<Stored<ResourceKind>>(itemPath(info, id));
        printResult(format, resource, renderDescribe);
      }),
    );
}

interface CreateOptions {
  file?: string;
  name?: string;
  label: string[];
  organisation?: string;
  homeNode?: string;
  role: string[];
  amqpsEndpoint?: string;
  managementEndpoint?: string;
  dns: string[];
  ip: string[];
  keyAlgorithm: string;
  lifetime: string;
  nodes?: string;
  cost?: string;
}

function parseLabels(values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf('=');
    if (at <= 0) throw new DmrError('INVALID_ARGUMENT', `--label "${value}" is not key=value`);
    labels[value.slice(0, at)] = value.slice(at + 1);
  }
  return labels;
}

/**
 * A spec from flags for the simple cases. Defaults are the ones an operator
 * would write by hand; the server validates the result like any other spec.
 */
function specFromFlags(info: KindInfo, id: string | undefined, options: CreateOptions): Record<string, unknown> {
  const labels = parseLabels(options.label);
  const profile = (dns: string[], ips: string[]) => ({
    keyAlgorithm: options.keyAlgorithm,
    lifetime: options.lifetime,
    extraDns: dns,
    extraIps: ips,
  });
  switch (info.kind) {
    case 'Organisation':
      return { id: required(id, '<id>', 'police'), name: options.name ?? id, labels };
    case 'Node':
      return {
        id: required(id, '<id>', 'dmr-tallinn'),
        amqpsEndpoint: required(options.amqpsEndpoint, '--amqps-endpoint', 'amqps://dmr-tallinn.example.ee:5671'),
        managementEndpoint: required(
          options.managementEndpoint,
          '--management-endpoint',
          'https://dmr-tallinn.example.ee:15671',
        ),
        labels,
        certificateProfile: profile(options.dns, options.ip),
      };
    case 'Client':
      return {
        id: required(id, '<id>', 'police-bot'),
        organisation: required(options.organisation, '--organisation', 'police'),
        homeNode: required(options.homeNode, '--home-node', 'dmr-tallinn'),
        roles: options.role,
        labels,
        status: 'active',
        certificateProfile: profile([], []),
      };
    case 'Link': {
      const nodes = required(options.nodes, '--nodes', 'dmr-tallinn,dmr-tartu').split(',');
      if (nodes.length !== 2) throw new DmrError('INVALID_ARGUMENT', '--nodes takes exactly two node ids, a,b');
      const [a, b] = nodes.map((node) => node.trim()).sort() as [string, string];
      const cost = positiveInt(options.cost ?? '10', '--cost', 1_000_000);
      return { id: id ?? `${a}--${b}`, nodes: [a, b], cost };
    }
  }
}

function createCommand(): Command {
  return new Command('create')
    .description('create one resource from -f FILE (kind + spec, like apply) or from flags; refuses an existing id')
    .argument('<kind>', KIND_HELP)
    .argument('[id]', 'resource id (with flags)')
    .option('-f, --file <file>', 'a YAML document with kind and spec (- for stdin)')
    .option('--name <name>', 'organisation: display name (default: the id)')
    .option('--label <key=value>', 'a label; repeat for several', collect, [])
    .option('--organisation <id>', 'client: its organisation')
    .option('--home-node <id>', 'client: its home node')
    .option('--role <role>', 'client: a role; repeat for several', collect, [])
    .option('--amqps-endpoint <url>', 'node: amqps://host:port for clients and peers')
    .option('--management-endpoint <url>', "node: https://host:port of the node's RabbitMQ management API")
    .option('--dns <name>', 'node: an extra DNS name for its certificate; repeat for several', collect, [])
    .option('--ip <address>', 'node: an extra IP address for its certificate; repeat for several', collect, [])
    .option('--key-algorithm <algorithm>', 'client/node certificate profile: key algorithm', 'ecdsa-p256')
    .option('--lifetime <duration>', 'client/node certificate profile: certificate lifetime', '7d')
    .option('--nodes <a,b>', 'link: the two node ids')
    .option('--cost <n>', 'link: routing cost, lower is preferred (default 10)')
    .action(
      action<[string, string | undefined, CreateOptions]>(async ({ format, command }, kind, id, options) => {
        const info = kindInfo(kind);
        let spec: Record<string, unknown>;
        if (options.file !== undefined) {
          const documents = parseDocuments(await readInput(options.file, 'resource file'), options.file);
          const [first] = documents;
          if (documents.length !== 1 || first === undefined || first.item.spec === undefined) {
            throw new DmrError('INVALID_ARGUMENT', `${options.file} must hold exactly one ${info.kind} document`, {
              hint: 'for several documents use `dmr ctl apply -f FILE`',
            });
          }
          if (first.item.kind !== info.kind) {
            throw new DmrError('INVALID_ARGUMENT', `${options.file} holds a ${first.item.kind}, not a ${info.kind}`);
          }
          spec = first.item.spec;
        } else {
          spec = specFromFlags(info, id, options);
        }
        const created = await (await apiClient(command)).post<Stored<ResourceKind>>(`/v1/${info.path}`, spec);
        printResult(format, created, (value) =>
          renderFields([
            ['created', `${value.kind}/${value.spec.id}`],
            ['version', value.version],
            ['revision', value.revision],
          ]),
        );
      }),
    );
}

function deleteCommand(): Command {
  return new Command('delete')
    .description('delete one resource (refused while others refer to it)')
    .argument('<kind>', KIND_HELP)
    .argument('<id>', 'resource id')
    .option('--if-match <version>', 'only if the resource is still at this version (from describe)')
    .action(
      action<[string, string, { ifMatch?: string }]>(async ({ format, command }, kind, id, options) => {
        const info = kindInfo(kind);
        const ifMatch = positiveInt(options.ifMatch, '--if-match', Number.MAX_SAFE_INTEGER);
        await (await apiClient(command)).request('DELETE', itemPath(info, id), { ifMatch });
        printResult(format, { deleted: { kind: info.kind, id } }, (value) =>
          renderFields([['deleted', `${value.deleted.kind}/${value.deleted.id}`]]),
        );
      }),
    );
}

export function registryCommands(): Command[] {
  return [getCommand(), describeCommand(), createCommand(), deleteCommand()];
}
