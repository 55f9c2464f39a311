/**
 * `dmr ctl policy get | apply | test | bundle`: the policy set CentOps
 * holds. `apply DIR` sends every .rego and data.json below DIR; CentOps
 * accepts it only if `opa check --strict` and `opa test` pass there (else
 * POLICY_INVALID with OPA's output), then builds and signs the bundle.
 */
import { writeFile } from 'node:fs/promises';
import { Command } from 'commander';
// The subpath, not '@dmr/centops': the package root loads the whole server (fastify, kysely, opa), ~1 s of CPU per `dmr ctl` run.
import { readPolicyDir } from '@dmr/centops/policy-files';
import { assertCanCreate } from '@dmr/pki';
import { action } from '../../action.js';
import { printResult, renderFields } from '../../output.js';
import { fetchPolicy, writePolicyFiles, type CentOpsPolicy } from '../policy-centops.js';
import { apiClient, positiveInt } from './common.js';

function renderPolicy(policy: Omit<CentOpsPolicy, 'files'> & { files?: Record<string, string> }): string {
  return renderFields([
    ['version', policy.version],
    ['digest', policy.digest],
    ['bundle', `revision ${policy.bundle.revision}, ${policy.bundle.digest}`],
    ['tests', policy.testsPassed],
    ['changed', `${policy.createdAt} by ${policy.createdBy}`],
    ['files', policy.files === undefined ? undefined : Object.keys(policy.files).join(' ')],
  ]);
}

interface ApplyResponse {
  changed: boolean;
  dryRun: boolean;
  policy?: Omit<CentOpsPolicy, 'files'>;
  tests?: { passed: number; failed: number };
}

export function policyCommands(): Command {
  const policy = new Command('policy').description('the policy set CentOps holds (Rego, data, tests) and its bundle');

  policy
    .command('get')
    .description('show the current (or --policy-version) policy set; --out-dir writes its files')
    .option('--policy-version <n>', 'an older version (--version is the CLI’s own)')
    .option('--out-dir <dir>', 'write the files under this directory')
    .option('--force', 'write into an existing --out-dir')
    .action(
      action<[{ policyVersion?: string; outDir?: string; force?: boolean }]>(async ({ format, command }, options) => {
        const client = await apiClient(command);
        const current = await fetchPolicy(client, positiveInt(options.policyVersion, '--policy-version', 2 ** 31));
        if (options.outDir !== undefined) {
          await assertCanCreate(options.outDir, options.force === true);
          await writePolicyFiles(options.outDir, current.files);
        }
        printResult(format, current, renderPolicy);
      }),
    );

  policy
    .command('apply')
    .description('replace the policy set with the .rego and data.json files under DIR (checked and tested)')
    .argument('<dir>', 'policy directory')
    .option('--dry-run', 'check and test on CentOps; store nothing')
    .option('--if-version <n>', 'refuse (412) unless the current version is this one')
    .action(
      action<[string, { dryRun?: boolean; ifVersion?: string }]>(async ({ format, command }, dir, options) => {
        const files = await readPolicyDir(dir);
        const client = await apiClient(command);
        const ifMatch = positiveInt(options.ifVersion, '--if-version', 2 ** 31);
        const response = await client.request<ApplyResponse>('PUT', '/v1/policy', {
          body: { files },
          query: { dryRun: options.dryRun === true ? true : undefined },
          ...(ifMatch === undefined ? {} : { ifMatch }),
        });
        printResult(format, response.body, (value) =>
          renderFields([
            [
              'result',
              value.dryRun
                ? 'dry run: checks and tests pass, nothing stored'
                : value.changed
                  ? 'applied'
                  : 'unchanged (same files as the current version)',
            ],
            ['version', value.policy?.version],
            ['bundle', value.policy === undefined ? undefined : value.policy.bundle.digest],
            ['tests', value.tests === undefined ? undefined : `${value.tests.passed} passed`],
          ]),
        );
      }),
    );

  policy
    .command('test')
    .description('run opa check --strict and opa test on CentOps for the files under DIR; stores nothing')
    .argument('<dir>', 'policy directory')
    .action(
      action<[string]>(async ({ format, command }, dir) => {
        const files = await readPolicyDir(dir);
        const client = await apiClient(command);
        const report = await client.post<{ passed: number; failed: number; tests: unknown[] }>('/v1/policy/test', {
          files,
        });
        printResult(format, report, (value) => `PASS: ${value.passed}/${value.tests.length}`);
      }),
    );

  policy
    .command('bundle')
    .description('download the current signed bundle (.tar.gz)')
    .requiredOption('--out <file>', 'where to write it')
    .option('--force', 'overwrite --out')
    .action(
      action<[{ out: string; force?: boolean }]>(async ({ format, command }, options) => {
        await assertCanCreate(options.out, options.force === true);
        const client = await apiClient(command);
        const response = await client.request<Buffer>('GET', '/v1/policy/bundle', { binary: true });
        await writeFile(options.out, response.body);
        const result = {
          out: options.out,
          revision: String(response.headers['x-dmr-policy-revision'] ?? ''),
          etag: String(response.headers.etag ?? ''),
          bytes: response.body.length,
        };
        printResult(format, result, (value) =>
          renderFields([
            ['bundle', value.out],
            ['revision', value.revision],
            ['etag', value.etag],
          ]),
        );
      }),
    );

  return policy;
}
