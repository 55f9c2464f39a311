/** `dmr centops init | serve | operator add | rotate-signer`: a thin layer over @dmr/centops' server module. */
import { Command } from 'commander';
import { DmrError } from '@dmr/core';
import {
  addOperator,
  initCentOps,
  rotateSigner,
  serve,
  type AddOperatorResult,
  type InitCentOpsResult,
  type SignerName,
} from '@dmr/centops';
import { action } from '../action.js';
import { printResult, renderFields } from '../output.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface InitOptions {
  dir?: string;
  pki?: string;
  dev?: boolean;
  database?: string;
  trustDomain?: string;
  listen: string;
  enrolListen?: string;
  admin: string;
  adminDir?: string;
  dns: string[];
  ip: string[];
}

function renderInit(result: InitCentOpsResult): string {
  return [
    renderFields([
      ['created CentOps', result.dir],
      ['trust domain', result.trustDomain],
      ['root', result.root === 'dev' ? 'fresh development root (dev-root/, not for production)' : result.root],
      ['CA', `${result.caDir} (intermediate; the root key is not in it)`],
      ['database', result.database],
      ['API (mTLS)', `https://${result.listen}`],
      ['enrolment', `https://${result.enrolListen}`],
      ['admin', `${result.admin.id}: ${result.admin.certificate} (valid until ${result.admin.notAfter})`],
      ['CLI config', result.adminConfig],
    ]),
    '',
    'next steps:',
    `  dmr centops serve --dir ${result.dir}`,
    `  hand ${result.admin.dir}/ to the first admin and delete it from this host:`,
    `  it holds their key, and serve refuses to start while a key not CentOps' own lies in ${result.dir}`,
    ...(result.root === 'dev' ? [] : [`  move the root key (${result.root}/root.key) offline again`]),
  ].join('\n');
}

function renderOperator(result: AddOperatorResult): string {
  return [
    renderFields([
      ['operator', `${result.id} (${result.role})`],
      ['serial', result.serial],
      ['valid until', result.notAfter],
      ['certificate', result.certificate],
      ['key', result.key],
      ['CLI config', result.config],
    ]),
    '',
    `hand ${result.key} and the files beside it to ${result.id} over a private channel, then delete them here`,
  ].join('\n');
}

interface OperatorAddOptions {
  dir?: string;
  id?: string;
  role?: string;
  outDir?: string;
  ttl?: string;
}

function required(value: string | undefined, flag: string, example: string): string {
  if (value === undefined || value.trim() === '') {
    throw new DmrError('INVALID_ARGUMENT', `${flag} is required`, { hint: `e.g. ${flag} ${example}` });
  }
  return value;
}

/** Offline and bootstrap only: online, an admin uses POST /v1/operators/certificates with the operator's CSR. */
function operatorCommand(): Command {
  const command = new Command('operator').description('operator certificates made on the CentOps host (offline)');
  command.addCommand(
    new Command('add')
      .description('issue an operator certificate with a role; writes key, certificate, trust bundle and CLI config')
      .option('--dir <dir>', 'the CentOps directory (made by `dmr centops init`)')
      .option('--id <id>', 'the operator id (the person)')
      .option('--role <role>', 'viewer | operator | admin')
      .option('--out-dir <dir>', 'where to write <id>.key, <id>.crt, <id>.yaml and trust-bundle.pem')
      .option('--ttl <duration>', 'certificate lifetime (1m to 365d)', '90d')
      .action(
        action<[OperatorAddOptions]>(async ({ format }, options) => {
          const result = await addOperator({
            dir: required(options.dir, '--dir', '.dmr/centops'),
            id: required(options.id, '--id', 'alice'),
            role: required(options.role, '--role', 'operator'),
            outDir: required(options.outDir, '--out-dir', './alice'),
            ttl: options.ttl,
          });
          printResult(format, result, renderOperator);
        }),
      ),
  );
  return command;
}

export function centopsCommand(): Command {
  const command = new Command('centops').description('the CentOps control plane: prepare and run the server');
  command.addCommand(
    new Command('init')
      .description('create a CentOps directory: database, intermediate CA, server and signing keys, first admin')
      .option('--dir <dir>', 'new directory for everything (required; must be empty or missing)')
      .option('--pki <rootdir>', 'a `dmr pki` CA directory whose root signs the CentOps intermediate')
      .option('--dev', 'make a fresh root for development instead of --pki')
      .option('--database <url>', 'SQLite path (relative to --dir) or postgres:// URL', 'centops.db')
      .option('--trust-domain <name>', 'trust domain (with --dev; taken from the root with --pki)')
      .option('--listen <host:port>', 'API listener (mutual TLS)', '127.0.0.1:8443')
      .option('--enrol-listen <host:port>', 'enrolment listener (default: the API port + 1)')
      .option('--admin <id>', 'id of the first admin operator', 'admin')
      .option('--admin-dir <dir>', "where the first admin's key and CLI config go, outside --dir (default: DIR-admin)")
      .option('--dns <name>', 'extra DNS name for the server certificate (repeatable)', collect, [])
      .option('--ip <address>', 'extra IP address for the server certificate (repeatable)', collect, [])
      .action(
        action<[InitOptions]>(async ({ format }, options) => {
          if (options.dir === undefined || options.dir.trim() === '') {
            throw new DmrError('INVALID_ARGUMENT', '--dir is required', { hint: 'e.g. --dir .dmr/centops' });
          }
          const result = await initCentOps({
            dir: options.dir,
            pkiDir: options.pki,
            dev: options.dev,
            database: options.database,
            trustDomain: options.trustDomain,
            listen: options.listen,
            enrolListen: options.enrolListen,
            admin: options.admin,
            adminDir: options.adminDir,
            dns: options.dns,
            ips: options.ip,
          });
          printResult(format, result, renderInit);
        }),
      ),
  );
  command.addCommand(
    new Command('serve')
      .description('run CentOps (HTTPS with mutual TLS) until SIGINT/SIGTERM')
      .option('--dir <dir>', 'a directory made by `dmr centops init`', '.')
      .option('--config <file>', 'the server config file (default DIR/centops.yaml)')
      .option(
        '--metrics-listen <host:port>',
        "serve GET /metrics and /healthz in plain HTTP here (over the file's metricsListen); bind to loopback or a monitoring network",
      )
      .action(
        action<[{ dir: string; config?: string; metricsListen?: string }]>(async (_context, options) => {
          await serve({
            dir: options.dir,
            config: options.config,
            ...(options.metricsListen === undefined ? {} : { metricsListen: options.metricsListen }),
          });
        }),
      ),
  );
  command.addCommand(operatorCommand());
  command.addCommand(
    new Command('rotate-signer')
      .description(
        'a new key and certificate for the config or policy signer; the old one is revoked (stop CentOps first)',
      )
      .option('--dir <dir>', 'a directory made by `dmr centops init`', '.')
      .requiredOption('--signer <name>', 'config or policy')
      .action(
        action<[{ dir: string; signer: string }]>(async ({ format }, options) => {
          const result = await rotateSigner({ dir: options.dir, signer: options.signer as SignerName });
          printResult(format, result, (rotated) =>
            renderFields([
              ['signer', rotated.signer],
              ['new serial', `${rotated.serial} (valid until ${rotated.notAfter})`],
              ['revoked', `${rotated.previousSerial} (superseded)`],
              ...(rotated.policyVersion === undefined
                ? []
                : [['policy set', `re-signed as version ${rotated.policyVersion}`] as [string, string]]),
              ['next', 'start CentOps again: nodes take the new signer and refuse the old one'],
            ]),
          );
        }),
      ),
  );
  return command;
}
