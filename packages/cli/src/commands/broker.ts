import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { DmrError, assertValidTrustDomain, isDmrError, parseDuration, spiffeId } from '@dmr/core';
import { CertificateAuthority } from '@dmr/pki';
import {
  brokerStatus,
  harnessPaths,
  installCrlInDir,
  startBrokers,
  stopBrokers,
  type BrokerHarness,
  type BrokerNode,
  type BrokerStatus,
  type HarnessProgress,
  type NodeExitEvent,
  type StopReport,
} from '@dmr/broker-harness';
import { action } from '../action.js';
import { printResult, progress, renderFields, reportError, type OutputFormat } from '../output.js';

const DEFAULT_PKI_DIR = '.dmr/pki';
const DEFAULT_TRUST_DOMAIN = 'dmr.local';
const DEMO_CLIENT_ID = 'demo-client';
const DETACHED_CRL_VALIDITY = '7d';
const FOREGROUND_CRL_VALIDITY = '1h';

interface StartOptions {
  dir: string;
  pki: string;
  nodes: string;
  initPki?: boolean;
  trustDomain?: string;
  foreground?: boolean;
  prefix: string;
  crlValidity?: string;
}

interface StartResult {
  dir: string;
  mode: 'detached' | 'foreground';
  trustDomain: string;
  trustBundleFile: string;
  adminUsername: string;
  adminPasswordFile: string;
  crl: { file: string | null; nextUpdate: string | null };
  nodes: Array<
    Pick<
      BrokerNode,
      'name' | 'nodename' | 'amqpsUrl' | 'amqpsPort' | 'managementUrl' | 'prometheusUrl' | 'bootMs' | 'pid'
    >
  >;
  demoClient?: { id: string; certificateFile: string; keyFile: string };
}

async function openOrInitCa(
  pkiDir: string,
  initPki: boolean,
  trustDomain: string | undefined,
): Promise<CertificateAuthority> {
  try {
    const ca = await CertificateAuthority.open(pkiDir);
    if (trustDomain !== undefined && trustDomain !== ca.trustDomain) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the CA in ${pkiDir} serves trust domain "${ca.trustDomain}", not "${trustDomain}"`,
        { hint: 'drop --trust-domain, or point --pki at another directory' },
      );
    }
    return ca;
  } catch (error) {
    if (!(isDmrError(error) && error.code === 'NOT_FOUND')) throw error;
    if (!initPki) {
      throw new DmrError('NOT_FOUND', `no CA in ${pkiDir}`, {
        hint: `create a development CA with --init-pki, or with: dmr pki init --dir ${pkiDir}`,
        details: { dir: pkiDir },
      });
    }
    const domain = trustDomain ?? DEFAULT_TRUST_DOMAIN;
    assertValidTrustDomain(domain);
    progress(`creating a development CA in ${pkiDir} (trust domain ${domain})`);
    return CertificateAuthority.init(pkiDir, { trustDomain: domain });
  }
}

function parseNodeCount(text: string): number {
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1 || count > 16) {
    throw new DmrError('INVALID_ARGUMENT', `--nodes must be a whole number from 1 to 16, not "${text}"`);
  }
  return count;
}

function showProgress(event: HarnessProgress): void {
  const seconds = event.ms === undefined ? '' : ` [${(event.ms / 1000).toFixed(1)} s]`;
  progress(`${event.node ? `${event.node}: ` : ''}${event.message}${seconds}`);
}

function startResult(harness: BrokerHarness, trustDomain: string, mode: StartResult['mode']): StartResult {
  const paths = harnessPaths(harness.dir);
  return {
    dir: harness.dir,
    mode,
    trustDomain,
    trustBundleFile: paths.trustBundleFile,
    adminUsername: harness.adminUsername,
    adminPasswordFile: paths.adminPasswordFile,
    crl: { file: harness.state.crl.file, nextUpdate: harness.state.crl.nextUpdate },
    nodes: harness.nodes.map(({ name, nodename, amqpsUrl, amqpsPort, managementUrl, prometheusUrl, bootMs, pid }) => ({
      name,
      nodename,
      amqpsUrl,
      amqpsPort,
      managementUrl,
      prometheusUrl,
      bootMs,
      pid,
    })),
  };
}

function renderStart(result: StartResult): string {
  const lines = result.nodes.map((node) =>
    renderFields([
      ['node', `${node.name} (${node.nodename}, pid ${node.pid ?? '?'})`],
      ['amqps', `${node.amqpsUrl}  (TLS only, client certificate + EXTERNAL)`],
      ['management', `${node.managementUrl}  (127.0.0.1 only)`],
      ['prometheus', node.prometheusUrl],
      ['boot', node.bootMs === null ? undefined : `${(node.bootMs / 1000).toFixed(1)} s`],
    ]),
  );
  lines.push(
    renderFields([
      ['trust bundle', result.trustBundleFile],
      ['admin', `${result.adminUsername} (password in ${result.adminPasswordFile}; management API only)`],
      ['crl', `${result.crl.file ?? 'none'} (next update ${result.crl.nextUpdate ?? 'none'})`],
    ]),
  );
  if (result.mode === 'detached') {
    lines.push(
      `The nodes keep running. Stop them with: dmr broker stop --dir ${result.dir}\n` +
        `Nothing refreshes the CRL while detached; after a revocation or before ${result.crl.nextUpdate ?? 'it expires'} run: dmr broker crl --dir ${result.dir} --pki <PKIDIR>`,
    );
  }
  return lines.join('\n\n');
}

function renderDemo(result: StartResult): string {
  const demo = result.demoClient;
  const node = result.nodes[0];
  if (!demo || !node) return '';
  return `
Demo client "${demo.id}" (user exists on every node, full rights on vhost /):
  certificate: ${demo.certificateFile}
  key:         ${demo.keyFile}
Handshake check:
  openssl s_client -connect 127.0.0.1:${node.amqpsPort} -servername localhost -CAfile ${result.trustBundleFile} -cert ${demo.certificateFile} -key ${demo.keyFile} </dev/null
From TypeScript (amqplib underneath, SASL EXTERNAL):
  import { readFileSync } from 'node:fs';
  import { connectWithCertificate } from '@dmr/broker';
  const connection = await connectWithCertificate({
    port: ${node.amqpsPort},
    caPem: readFileSync('${result.trustBundleFile}', 'utf8'),
    certificatePem: readFileSync('${demo.certificateFile}', 'utf8'),
    privateKeyPem: readFileSync('${demo.keyFile}', 'utf8'),
  });

Running in the foreground; the CRL is refreshed automatically. Ctrl-C stops every node.`;
}

async function issueDemoClient(
  harness: BrokerHarness,
  ca: CertificateAuthority,
): Promise<NonNullable<StartResult['demoClient']>> {
  const issued = await ca.issueWithKey({ kind: 'client', id: DEMO_CLIENT_ID });
  const dir = harnessPaths(harness.dir).clientsDir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certificateFile = join(dir, `${DEMO_CLIENT_ID}.pem`);
  const keyFile = join(dir, `${DEMO_CLIENT_ID}.key`);
  await writeFile(certificateFile, issued.chainPem);
  await writeFile(keyFile, issued.privateKeyPem, { mode: 0o600 });
  // The broker logs the certificate in as its SPIFFE id.
  const user = spiffeId(ca.trustDomain, 'client', DEMO_CLIENT_ID);
  for (let index = 0; index < harness.nodes.length; index++) {
    const management = harness.management(index);
    await management.createCertificateUser(user);
    await management.setPermissions('/', user, { configure: '.*', write: '.*', read: '.*' });
  }
  return { id: DEMO_CLIENT_ID, certificateFile, keyFile };
}

/** Runs until a signal or a node dies; resolves with the exit code. */
function runForeground(harness: BrokerHarness, format: OutputFormat, nodeExits: EventTarget): Promise<number> {
  return new Promise((resolvePromise) => {
    // Signal listeners and unref'd children do not keep Node alive; this does.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    let stopping = false;
    const finish = async (reason: string, exitCode: number): Promise<void> => {
      if (stopping) return;
      stopping = true;
      progress(`${reason}: stopping the nodes (Ctrl-C again to kill them at once)`);
      try {
        await harness.stop();
      } catch (error) {
        exitCode = reportError(error, format);
      }
      clearInterval(keepAlive);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onSignal);
      resolvePromise(exitCode);
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        harness.killNowSync(`second ${signal}`);
        process.exit(130);
      }
      void finish(signal, 0);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    nodeExits.addEventListener('exit', (event) => {
      const detail = (event as CustomEvent<NodeExitEvent>).detail;
      if (detail.expected) {
        void finish(`${detail.node} was stopped from another process`, 0);
      } else {
        reportError(
          new DmrError(
            'BROKER_NOT_RUNNING',
            `${detail.node} exited unexpectedly (${detail.signal ?? `code ${detail.code}`})`,
            {
              hint: `see the node log under ${harnessPaths(harness.dir).nodesDir}/${detail.node}/log`,
            },
          ),
          format,
        );
        void finish('a node died', 7);
      }
    });
  });
}

function brokerStart(): Command {
  return new Command('start')
    .description('start TLS-only RabbitMQ nodes (fresh data each time) with server certificates from a CA')
    .requiredOption('--dir <dir>', 'harness directory (created; wiped of previous broker data)')
    .option('--pki <dir>', 'CA directory that issues the server certificates and the CRL', DEFAULT_PKI_DIR)
    .option('--nodes <n>', 'number of independent nodes', '1')
    .option('--init-pki', 'create a development CA in --pki if there is none')
    .option('--trust-domain <name>', `trust domain for --init-pki (default ${DEFAULT_TRUST_DOMAIN})`)
    .option('--foreground', 'stay attached: refresh the CRL, stop everything on Ctrl-C/SIGTERM, issue a demo client')
    .option('--prefix <prefix>', 'node names are <prefix>-broker-<n>', 'dmr')
    .addOption(
      new Option(
        '--crl-validity <duration>',
        `validity of the CRLs installed (default ${FOREGROUND_CRL_VALIDITY} in the foreground, ${DETACHED_CRL_VALIDITY} detached)`,
      ),
    )
    .action(
      action(async ({ format }, options: StartOptions) => {
        const foreground = options.foreground === true;
        const nodes = parseNodeCount(options.nodes);
        const crlValidityMs = parseDuration(
          options.crlValidity ?? (foreground ? FOREGROUND_CRL_VALIDITY : DETACHED_CRL_VALIDITY),
        );
        const pkiDir = resolve(options.pki);
        const ca = await openOrInitCa(pkiDir, options.initPki === true, options.trustDomain);
        const nodeExits = new EventTarget();
        const harness = await startBrokers({
          dir: options.dir,
          nodes,
          ca,
          namePrefix: options.prefix,
          crlValidityMs,
          lifetime: foreground ? 'process' : 'detached',
          // The command handles signals itself, to report progress and exit cleanly.
          handleSignals: false,
          watchdog: foreground,
          onProgress: showProgress,
          onNodeExit: (event) => nodeExits.dispatchEvent(new CustomEvent('exit', { detail: event })),
        });
        const result = startResult(harness, ca.trustDomain, foreground ? 'foreground' : 'detached');
        if (!foreground) {
          harness.release();
          printResult(format, result, renderStart);
          return;
        }
        try {
          result.demoClient = await issueDemoClient(harness, ca);
        } catch (error) {
          await harness.stop();
          throw error;
        }
        printResult(format, result, (value) => `${renderStart(value)}\n${renderDemo(value)}`);
        process.exitCode = await runForeground(harness, format, nodeExits);
      }),
    );
}

function renderStatus(status: BrokerStatus): string {
  const header = renderFields([
    ['dir', status.dir],
    ['state', status.running ? 'running' : `not running (last recorded: ${status.recordedStatus})`],
    ['mode', status.lifetime === 'process' ? 'tied to the starting process' : 'detached'],
    ['rabbitmq', status.rabbitmqVersion],
    ['epmd', `127.0.0.1:${status.epmd.port} ${status.epmd.running ? 'running' : 'stopped'}`],
    [
      'crl',
      status.crl.file === null
        ? 'none'
        : `${status.crl.file} (next update ${status.crl.nextUpdate ?? 'none'}${status.crl.expired ? ', EXPIRED: every client is refused; run dmr broker crl' : ''})`,
    ],
    ['error', status.error ?? undefined],
  ]);
  const nodes = status.nodes.map(
    (node) =>
      `  ${node.name.padEnd(20)} ${(node.running ? (node.listening ? 'running' : 'running (amqps not answering)') : 'stopped').padEnd(30)} ${node.amqpsUrl}  ${node.managementUrl}${node.pid !== null && node.running ? `  pid ${node.pid}` : ''}`,
  );
  return `${header}\nnodes:\n${nodes.join('\n')}`;
}

function renderStop(report: StopReport): string {
  if (report.nodes.every((node) => !node.wasRunning)) return `nothing was running in ${report.dir}`;
  const lines = report.nodes.map(
    (node) =>
      `  ${node.name.padEnd(20)} ${node.wasRunning ? (node.graceful ? 'stopped' : 'killed (graceful stop failed)') : 'was not running'}${node.wasRunning ? ` in ${(node.ms / 1000).toFixed(1)} s` : ''}${node.error ? ` — ${node.error}` : ''}`,
  );
  return `stopped ${report.dir} in ${(report.ms / 1000).toFixed(1)} s\n${lines.join('\n')}`;
}

export function brokerCommand(): Command {
  const broker = new Command('broker').description(
    'start, stop and inspect TLS-only RabbitMQ nodes for tests and the local mesh',
  );
  broker.addCommand(brokerStart());

  broker.addCommand(
    new Command('stop')
      .description('stop the nodes of a harness directory (rabbitmqctl stop, then its epmd)')
      .requiredOption('--dir <dir>', 'harness directory')
      .action(
        action(async ({ format }, options: { dir: string }) => {
          progress(`stopping the brokers of ${resolve(options.dir)}`);
          printResult(format, await stopBrokers(options.dir), renderStop);
        }),
      ),
  );

  broker.addCommand(
    new Command('status')
      .description('whether the nodes of a harness directory are running, with their endpoints')
      .requiredOption('--dir <dir>', 'harness directory')
      .action(
        action(async ({ format }, options: { dir: string }) => {
          printResult(format, await brokerStatus(options.dir), renderStatus);
        }),
      ),
  );

  broker.addCommand(
    new Command('crl')
      .description("re-issue the CA's CRL and install it in the running nodes now (e.g. after dmr pki revoke)")
      .requiredOption('--dir <dir>', 'harness directory')
      .option('--pki <dir>', 'CA directory', DEFAULT_PKI_DIR)
      .option('--validity <duration>', 'how long the new CRL is valid', DETACHED_CRL_VALIDITY)
      .action(
        action(async ({ format }, options: { dir: string; pki: string; validity: string }) => {
          const validityMs = parseDuration(options.validity);
          // Fail on a bad harness dir before the CA spends a CRL number.
          await brokerStatus(options.dir);
          const ca = await CertificateAuthority.open(resolve(options.pki));
          const installed = await installCrlInDir(options.dir, await ca.createCrl({ nextUpdateMs: validityMs }));
          const result = {
            file: installed.path,
            thisUpdate: installed.thisUpdate.toISOString(),
            nextUpdate: installed.nextUpdate?.toISOString() ?? null,
            revokedCount: installed.revokedCount,
          };
          printResult(format, result, (value) =>
            renderFields([
              ['installed', value.file],
              ['revoked', value.revokedCount],
              ['next update', value.nextUpdate ?? 'none'],
              ['note', 'new handshakes see it at once; close live connections of revoked clients separately'],
            ]),
          );
        }),
      ),
  );
  return broker;
}
