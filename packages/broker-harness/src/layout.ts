/**
 * Where everything lives inside a harness directory. One place, so that the
 * process that started the nodes and a later `dmr broker stop` in another
 * process agree on every path.
 */
import { join } from 'node:path';
import type { BrokerTlsFiles } from '@dmr/broker';

export interface HarnessPaths {
  dir: string;
  stateFile: string;
  /** HOME of the nodes and of every CLI call: Erlang reads the cookie from `$HOME/.erlang.cookie`. */
  home: string;
  cookieFile: string;
  /** An empty RABBITMQ_CONF_ENV_FILE, so the machine's `/etc/rabbitmq/rabbitmq-env.conf` is not sourced. */
  envFile: string;
  adminPasswordFile: string;
  /** Trust anchors the nodes verify clients against: the CA's bundle plus its intermediate. */
  trustBundleFile: string;
  crlDir: string;
  epmdLog: string;
  watchdogLog: string;
  nodesDir: string;
  clientsDir: string;
}

export interface NodePaths {
  root: string;
  configFile: string;
  advancedConfigFile: string;
  enabledPluginsFile: string;
  certificateFile: string;
  keyFile: string;
  mnesiaBase: string;
  logBase: string;
  /** RabbitMQ's own log: `<RABBITMQ_LOG_BASE>/<node name>.log`. */
  logFile: string;
  /** stdout/stderr of the server script: early boot failures only show up here. */
  consoleLog: string;
  pidFile: string;
}

export function nodeTlsFiles(dir: string, paths: Pick<NodePaths, 'certificateFile' | 'keyFile'>): BrokerTlsFiles {
  const harness = harnessPaths(dir);
  return {
    certFile: paths.certificateFile,
    keyFile: paths.keyFile,
    caFile: harness.trustBundleFile,
    crlDir: harness.crlDir,
  };
}

export const STATE_FILE_NAME = 'harness.json';

export function harnessPaths(dir: string): HarnessPaths {
  const home = join(dir, 'home');
  return {
    dir,
    stateFile: join(dir, STATE_FILE_NAME),
    home,
    cookieFile: join(home, '.erlang.cookie'),
    envFile: join(dir, 'rabbitmq-env.conf'),
    adminPasswordFile: join(dir, 'admin-password'),
    trustBundleFile: join(dir, 'trust-bundle.pem'),
    crlDir: join(dir, 'crl'),
    epmdLog: join(dir, 'epmd.log'),
    watchdogLog: join(dir, 'watchdog.log'),
    nodesDir: join(dir, 'nodes'),
    clientsDir: join(dir, 'clients'),
  };
}

export function nodePaths(dir: string, name: string, nodename: string): NodePaths {
  const root = join(harnessPaths(dir).nodesDir, name);
  const logBase = join(root, 'log');
  return {
    root,
    configFile: join(root, 'rabbitmq.conf'),
    advancedConfigFile: join(root, 'advanced.config'),
    enabledPluginsFile: join(root, 'enabled_plugins'),
    certificateFile: join(root, 'tls', 'server-chain.pem'),
    keyFile: join(root, 'tls', 'server.key'),
    mnesiaBase: join(root, 'mnesia'),
    logBase,
    logFile: join(logBase, `${nodename}.log`),
    consoleLog: join(root, 'console.log'),
    pidFile: join(root, 'rabbitmq.pid'),
  };
}
