/**
 * What a harness node is told: rabbitmq.conf, advanced.config, the plugin
 * list and the environment of the server script and of every CLI call.
 * Pure functions so the security-relevant settings are unit-tested.
 */
import { LOOPBACK } from '@dmr/broker';
import type { NodePaths, HarnessPaths } from './layout.js';
import type { NodePorts } from './ports.js';

export const HARNESS_PLUGINS = [
  'rabbitmq_management',
  'rabbitmq_prometheus',
  'rabbitmq_shovel',
  'rabbitmq_shovel_management',
  'rabbitmq_federation',
  'rabbitmq_federation_management',
  'rabbitmq_auth_mechanism_ssl',
  // Spreads one stream over several queues by a message property (DMR: sharded outbound/relay queues).
  'rabbitmq_consistent_hash_exchange',
] as const;

/**
 * AMQP logins are named by the certificate's first URI SAN, a
 * `spiffe://…` id (LOGIN_SETTINGS), so no certificate can log in as this
 * user over AMQP. It exists for the management API only.
 */
export const ADMIN_USERNAME = 'harness_admin';

/**
 * SASL EXTERNAL takes the broker user name from the certificate's first URI
 * SAN (`ssl_cert_login_san_index` counts only SANs of the chosen type, from
 * 0), which is the SPIFFE id for every certificate the DMR CA issues
 * (`spiffe://<td>/client/<id>`, `…/node/<id>`, `…/operator/<id>`,
 * `…/centops/<service>`). Broker users are named by SPIFFE id, so only the
 * certificate of that kind, id and trust domain logs in as a user; a
 * certificate without a URI SAN is refused ("no name found"). The CN alone
 * would let any certificate of the CA named like a user (an operator's, a
 * signer's) log in as that user: docs/decisions/0014-broker-login-by-spiffe-id.md.
 */
export const LOGIN_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['auth_mechanisms.1', 'EXTERNAL'],
  ['ssl_cert_login_from', 'subject_alternative_name'],
  ['ssl_cert_login_san_type', 'uri'],
  ['ssl_cert_login_san_index', '0'],
];

/**
 * RabbitMQ's `max_message_size` when the caller names none: the CentOps
 * default of `limits.maxMessageBytes` (1 MiB). RabbitMQ 3.10's own default is
 * 128 MiB, which would let a client store bodies far past the node's limit.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_576;
/** RabbitMQ refuses a `max_message_size` above 512 MiB. */
const RABBITMQ_MAX_MESSAGE_SIZE = 536_870_912;

export interface NodeConfigInput {
  ports: NodePorts;
  paths: NodePaths;
  trustBundleFile: string;
  crlDir: string;
  adminPassword: string;
  /** Largest message body the broker stores (`max_message_size`); default DEFAULT_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
}

export function renderRabbitmqConf(input: NodeConfigInput): string {
  const { ports, adminPassword } = input;
  if (!/^[A-Za-z0-9]+$/.test(adminPassword)) {
    // Cuttlefish values are unquoted; an alphanumeric password needs no escaping.
    throw new Error('the admin password must be alphanumeric');
  }
  const maxMessageBytes = input.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1 || maxMessageBytes > RABBITMQ_MAX_MESSAGE_SIZE) {
    throw new RangeError(`maxMessageBytes must be an integer from 1 to ${RABBITMQ_MAX_MESSAGE_SIZE}`);
  }
  return [
    '# Written by @dmr/broker-harness; regenerated on every start.',
    '# TLS options live in advanced.config: CRL checking needs the whole ssl_options list there.',
    'listeners.tcp = none',
    `listeners.ssl.default = ${LOOPBACK}:${ports.amqps}`,
    ...LOGIN_SETTINGS.map(([key, value]) => `${key} = ${value}`),
    '',
    '# A larger body is refused at publish (channel closed, 406) before the broker stores it.',
    `max_message_size = ${maxMessageBytes}`,
    '',
    `management.tcp.ip = ${LOOPBACK}`,
    `management.tcp.port = ${ports.management}`,
    `prometheus.tcp.ip = ${LOOPBACK}`,
    `prometheus.tcp.port = ${ports.prometheus}`,
    '',
    '# Created instead of guest on first boot, which therefore never exists.',
    `default_user = ${ADMIN_USERNAME}`,
    `default_pass = ${adminPassword}`,
    'default_user_tags.administrator = true',
    'default_permissions.configure = .*',
    'default_permissions.read = .*',
    'default_permissions.write = .*',
    '',
    'log.console = false',
    'log.file.level = info',
    '',
  ].join('\n');
}

/** An Erlang string literal. */
export function erlangString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** RabbitMQ's `dead_letter_worker_publisher_confirm_timeout` on DMR's brokers (default 180,000 ms in 3.10). */
export const DEAD_LETTER_RESEND_MS = 5_000;

/**
 * The complete TLS option list. An `ssl_options` list in advanced.config
 * replaces the rabbitmq.conf one entirely (with only the CRL keys here the
 * listener dies with `no_cert`), so every option is stated here.
 */
export function renderAdvancedConfig(input: NodeConfigInput): string {
  const { paths } = input;
  return `%% Written by @dmr/broker-harness; regenerated on every start.
[
 {rabbit, [
   {ssl_options, [
     {cacertfile, ${erlangString(input.trustBundleFile)}},
     {certfile, ${erlangString(paths.certificateFile)}},
     {keyfile, ${erlangString(paths.keyFile)}},
     {verify, verify_peer},
     {fail_if_no_peer_cert, true},
     {depth, 3},
     {versions, ['tlsv1.3', 'tlsv1.2']},
     %% Checks only the client's own certificate against the issuer's CRL,
     %% looked up as <issuer hash>.r0 and re-read when the file changes.
     {crl_check, peer},
     {crl_cache, {ssl_crl_hash_dir, {internal, [{dir, ${erlangString(input.crlDir)}}]}}}
   ]},
   %% At-least-once dead-lettering (DMR's parking queues) re-sends a dead letter its target refused (a full
   %% input) only after this long, 32 at a time per queue: 180 s by default stalled parked copies for minutes
   %% (docs/decisions/0039-parking.md).
   {dead_letter_worker_publisher_confirm_timeout, ${DEAD_LETTER_RESEND_MS}}
 ]},
 %% Every handshake reads certfile, keyfile and cacertfile from disk again, so
 %% a process that only writes files (the DMR node agent) rotates the server
 %% certificate and the trust bundle without a restart or a CLI call.
 {ssl, [{bypass_pem_cache, true}]}
].
`;
}

export function renderEnabledPlugins(plugins: readonly string[] = HARNESS_PLUGINS): string {
  return `[${plugins.join(',')}].\n`;
}

export interface NodeEnvironmentInput {
  harness: HarnessPaths;
  paths: NodePaths;
  nodename: string;
  ports: NodePorts;
  epmdPort: number;
  /** PATH for the scripts (they need sh, erl and coreutils). */
  path?: string;
}

/**
 * Built from scratch rather than inherited: a stray RABBITMQ_* or ERL_*
 * variable in the caller's environment would silently change the node.
 */
export function nodeEnvironment(input: NodeEnvironmentInput): Record<string, string> {
  const { harness, paths, ports } = input;
  return {
    PATH: input.path ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    HOME: harness.home,
    RABBITMQ_CONF_ENV_FILE: harness.envFile,
    RABBITMQ_NODENAME: input.nodename,
    RABBITMQ_CONFIG_FILE: paths.configFile,
    RABBITMQ_ADVANCED_CONFIG_FILE: paths.advancedConfigFile,
    RABBITMQ_ENABLED_PLUGINS_FILE: paths.enabledPluginsFile,
    RABBITMQ_MNESIA_BASE: paths.mnesiaBase,
    RABBITMQ_LOG_BASE: paths.logBase,
    RABBITMQ_PID_FILE: paths.pidFile,
    RABBITMQ_DIST_PORT: String(ports.dist),
    RABBITMQ_CTL_DIST_PORT_MIN: String(ports.ctlDistMin),
    RABBITMQ_CTL_DIST_PORT_MAX: String(ports.ctlDistMax),
    ERL_EPMD_PORT: String(input.epmdPort),
    ERL_EPMD_ADDRESS: LOOPBACK,
    // -start_epmd false: if our epmd is gone, fail instead of leaving a daemonised epmd nobody stops.
    ERL_FLAGS: `-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}`,
  };
}
