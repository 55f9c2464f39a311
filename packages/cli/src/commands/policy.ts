/**
 * `dmr policy`: the policy author's loop on local files — check, test,
 * evaluate an input the way a node would (the Wasm build, after the same
 * input validation), and build a signed bundle for CentOps or a stock OPA.
 * With `--centops`, check/test run on the policy set CentOps holds and eval
 * on its signed bundle (verified as a node would), via the CLI config.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { DmrError } from '@dmr/core';
import { assertCanCreate } from '@dmr/pki';
import {
  BundleSigner,
  PolicyEngine,
  buildBundle,
  isRevision,
  opaCheck,
  opaTest,
  policyInputProblems,
  type PolicyDecision,
  type PolicyEngineOptions,
} from '@dmr/policy';
import { action } from '../action.js';
import { printResult, progress, renderFields } from '../output.js';
import { centopsClient, fetchBundle, fetchPolicy, withPolicyFiles } from './policy-centops.js';

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const missing = error instanceof Error && 'code' in error && error.code === 'ENOENT';
    throw new DmrError(missing ? 'NOT_FOUND' : 'INVALID_ARGUMENT', `cannot read ${what} ${path}`, {
      details: { path },
      cause: error,
    });
  }
}

function requireDir(dir: string | undefined): string {
  if (dir === undefined || dir === '') {
    throw new DmrError('INVALID_ARGUMENT', '--dir is required', { hint: 'e.g. --dir packages/policy/rego' });
  }
  return dir;
}

interface SourceOptions {
  dir?: string;
  centops?: boolean;
  config?: string;
}

/**
 * Runs `work` on a policy directory: --dir, or (--centops) the current policy
 * set fetched from CentOps into a temporary directory. Says which it used.
 */
async function onPolicySource<T>(
  options: SourceOptions,
  work: (dir: string, source: { dir?: string; centops?: { version: number; digest: string } }) => Promise<T>,
): Promise<T> {
  if (options.centops === true) {
    if (options.dir !== undefined) throw new DmrError('INVALID_ARGUMENT', 'give --dir DIR or --centops, not both');
    const { client } = await centopsClient(options.config);
    const policy = await fetchPolicy(client);
    return withPolicyFiles(policy.files, (dir) =>
      work(dir, { centops: { version: policy.version, digest: policy.digest } }),
    );
  }
  const dir = requireDir(options.dir);
  return work(dir, { dir });
}

interface EvalOptions {
  input?: string;
  dir?: string;
  bundle?: string;
  trustBundle?: string;
  signer?: string;
  centops?: boolean;
  config?: string;
}

/** The engine a node would run: from a directory (built now, unsigned) or a bundle (verified when trust is given). */
async function engineFor(options: EvalOptions): Promise<PolicyEngine> {
  const sources = [options.dir, options.bundle, options.centops === true ? true : undefined];
  if (sources.filter((source) => source !== undefined).length !== 1) {
    throw new DmrError('INVALID_ARGUMENT', 'give exactly one of --dir DIR, --bundle FILE or --centops');
  }
  if (options.centops === true) {
    // The bundle nodes get, verified as they verify it.
    const { archive, verification } = await fetchBundle(options.config);
    return PolicyEngine.load(archive, { verification });
  }
  if (options.dir !== undefined) {
    const built = await buildBundle({ dir: options.dir, revision: '0' });
    return PolicyEngine.load(built.archive, { verification: 'unverified' });
  }
  const archive = await readFile(options.bundle as string).catch((error: unknown) => {
    throw new DmrError('NOT_FOUND', `cannot read bundle ${options.bundle}`, { cause: error });
  });
  let verification: PolicyEngineOptions['verification'] = 'unverified';
  if (options.trustBundle !== undefined) {
    if (options.signer === undefined) {
      throw new DmrError('INVALID_ARGUMENT', '--trust-bundle needs --signer', {
        hint: 'e.g. --signer spiffe://dmr.example/centops/policy-signer',
      });
    }
    verification = {
      trustBundlePem: await readText(options.trustBundle, 'trust bundle'),
      expectedSigner: options.signer,
    };
  } else {
    progress('the bundle signature is not verified (give --trust-bundle and --signer to verify it)');
  }
  return PolicyEngine.load(archive, { verification });
}

function renderDecision(decision: PolicyDecision & { problems: Array<{ path: string; message: string }> }): string {
  const lines = [
    renderFields([
      ['decision', decision.allow ? 'allow' : 'deny'],
      ['reasons', decision.reasons.join(', ') || '-'],
      ['revision', decision.revision],
    ]),
  ];
  for (const problem of decision.problems) lines.push(`  - ${problem.path || '/'}: ${problem.message}`);
  return lines.join('\n');
}

export function policyCommand(): Command {
  const policy = new Command('policy').description('check, test, evaluate and build Rego policy bundles');

  policy
    .command('check')
    .description('opa check --strict, the shipped Rego also limited to built-ins nodes can run (opa-wasm)')
    .option('--dir <dir>', 'policy directory (Rego, data.json, *_test.rego)')
    .option('--centops', 'check the policy set CentOps holds (CLI config: --config, $DMR_CONFIG)')
    .option('--config <file>', 'CLI config for --centops (default $DMR_CONFIG or ~/.dmr/config.yaml)')
    .action(
      action<[SourceOptions]>(async ({ format }, options) => {
        const result = await onPolicySource(options, async (dir, source) => {
          await opaCheck(dir);
          return { ...source, ok: true };
        });
        const what = result.dir ?? `CentOps policy version ${result.centops?.version ?? '?'}`;
        printResult(format, result, () => `ok: ${what} passes opa check --strict`);
      }),
    );

  policy
    .command('test')
    .description("opa test: every *_test.rego; on failure prints OPA's output verbatim")
    .option('--dir <dir>', 'policy directory')
    .option('--centops', 'test the policy set CentOps holds (CLI config: --config, $DMR_CONFIG)')
    .option('--config <file>', 'CLI config for --centops (default $DMR_CONFIG or ~/.dmr/config.yaml)')
    .action(
      action<[SourceOptions]>(async ({ format }, options) => {
        const report = await onPolicySource(options, async (dir, source) => ({ ...(await opaTest(dir)), ...source }));
        printResult(format, report, (value) => `PASS: ${value.passed}/${value.tests.length}`);
      }),
    );

  policy
    .command('eval')
    .description('decide an input document as a node would (input validation, then the Wasm build)')
    .option('--input <file>', 'the decision input (JSON; see packages/policy/docs/policy-input.md)')
    .option('--dir <dir>', 'evaluate the policy in this directory (built now)')
    .option('--bundle <file>', 'evaluate this bundle (.tar.gz)')
    .option('--trust-bundle <pem>', 'verify the bundle signature against these roots')
    .option('--signer <uri>', 'the URI SAN the bundle signer must carry (with --trust-bundle)')
    .option('--centops', "evaluate CentOps' current bundle, verified as a node verifies it")
    .option('--config <file>', 'CLI config for --centops (default $DMR_CONFIG or ~/.dmr/config.yaml)')
    .action(
      action<[EvalOptions]>(async ({ format }, options) => {
        if (options.input === undefined)
          throw new DmrError('INVALID_ARGUMENT', '--input is required', { hint: 'e.g. --input message.json' });
        const text = await readText(options.input, 'input');
        let input: unknown;
        try {
          input = JSON.parse(text);
        } catch (error) {
          throw new DmrError('INVALID_ARGUMENT', `${options.input} is not JSON`, { cause: error });
        }
        const engine = await engineFor(options);
        const decision = engine.evaluate(input);
        // Why an input is INPUT_INVALID is what its author needs next; the node itself only logs the code.
        printResult(format, { ...decision, problems: policyInputProblems(input) }, renderDecision);
      }),
    );

  policy
    .command('build')
    .description('build a bundle (Rego, data, policy.wasm, .manifest), signed with --signing-key/--signing-cert')
    .option('--dir <dir>', 'policy directory')
    .option('--out <file>', 'the bundle file to write (.tar.gz)')
    .option('--revision <n>', 'bundle revision, a decimal integer (default: seconds since the epoch)')
    .option('--signing-key <pem>', 'the policy signer private key (ES256/ES384)')
    .option('--signing-cert <pem>', 'the policy signer certificate chain (leaf first)')
    .option('--force', 'overwrite --out')
    .action(
      action<
        [{ dir?: string; out?: string; revision?: string; signingKey?: string; signingCert?: string; force?: boolean }]
      >(async ({ format }, options) => {
        const dir = requireDir(options.dir);
        if (options.out === undefined)
          throw new DmrError('INVALID_ARGUMENT', '--out is required', { hint: 'e.g. --out bundle.tar.gz' });
        const revision = options.revision ?? String(Math.floor(Date.now() / 1000));
        if (!isRevision(revision))
          throw new DmrError('INVALID_ARGUMENT', `--revision ${revision} is not a decimal integer`);
        if ((options.signingKey === undefined) !== (options.signingCert === undefined)) {
          throw new DmrError('INVALID_ARGUMENT', '--signing-key and --signing-cert go together');
        }
        await assertCanCreate(options.out, options.force === true);
        const signer =
          options.signingKey === undefined
            ? undefined
            : new BundleSigner({
                privateKeyPem: await readText(options.signingKey, 'signing key'),
                certificateChainPem: await readText(options.signingCert as string, 'signing certificate'),
              });
        await opaCheck(dir);
        await opaTest(dir);
        const built = await buildBundle({ dir, revision, ...(signer === undefined ? {} : { signer }) });
        await writeFile(options.out, built.archive);
        const result = { out: options.out, revision, signed: signer !== undefined, files: [...built.files.keys()] };
        printResult(format, result, (value) =>
          renderFields([
            ['bundle', value.out],
            ['revision', value.revision],
            ['signed', value.signed ? `yes (${signer?.keyId ?? ''})` : 'no'],
            ['files', value.files.join(' ')],
          ]),
        );
      }),
    );

  return policy;
}
