import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { harnessPaths, nodePaths } from './layout.js';
import {
  ADMIN_USERNAME,
  erlangString,
  HARNESS_PLUGINS,
  nodeEnvironment,
  renderAdvancedConfig,
  renderEnabledPlugins,
  renderRabbitmqConf,
  type NodeConfigInput,
} from './node-config.js';
import { layoutPorts } from './ports.js';
import { makeTempDir, skipUnless } from './testing.js';

const ports = layoutPorts(24000, 1).nodes[0];
assert.ok(ports);
const paths = nodePaths('/srv/h', 'dmr-broker-1', 'dmr-broker-1@localhost');
const input: NodeConfigInput = {
  ports,
  paths,
  trustBundleFile: '/srv/h/trust-bundle.pem',
  crlDir: '/srv/h/crl',
  adminPassword: 'abc123',
};

function settings(conf: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of conf.split('\n')) {
    const match = /^([^#\s][^=]*?)\s*=\s*(.*)$/.exec(line);
    if (match) map.set(match[1] as string, match[2] as string);
  }
  return map;
}

describe('rabbitmq.conf', () => {
  const conf = settings(renderRabbitmqConf(input));

  it('turns plain AMQP off and listens for AMQPS on 127.0.0.1 only', () => {
    assert.equal(conf.get('listeners.tcp'), 'none');
    assert.equal(conf.get('listeners.ssl.default'), `127.0.0.1:${ports.amqps}`);
    assert.deepEqual(
      [...conf.keys()].filter((key) => key.startsWith('listeners.')),
      ['listeners.tcp', 'listeners.ssl.default'],
    );
  });

  it('accepts only EXTERNAL and takes the user name from the first URI SAN (the SPIFFE id), not the CN', () => {
    assert.deepEqual(
      [...conf.entries()].filter(([key]) => key.startsWith('auth_mechanisms')),
      [['auth_mechanisms.1', 'EXTERNAL']],
    );
    assert.equal(conf.get('ssl_cert_login_from'), 'subject_alternative_name');
    assert.equal(conf.get('ssl_cert_login_san_type'), 'uri');
    assert.equal(conf.get('ssl_cert_login_san_index'), '0');
  });

  it('binds management and Prometheus to 127.0.0.1 on the chosen ports', () => {
    assert.equal(conf.get('management.tcp.ip'), '127.0.0.1');
    assert.equal(conf.get('management.tcp.port'), String(ports.management));
    assert.equal(conf.get('prometheus.tcp.ip'), '127.0.0.1');
    assert.equal(conf.get('prometheus.tcp.port'), String(ports.prometheus));
  });

  it('creates the admin instead of guest, with a name no certificate can carry', () => {
    assert.equal(conf.get('default_user'), ADMIN_USERNAME);
    assert.equal(conf.get('default_pass'), 'abc123');
    assert.doesNotMatch(ADMIN_USERNAME, /^[a-z][a-z0-9+.-]*:/, 'not a URI, so no URI SAN can name the admin');
  });

  it('keeps TLS options out of rabbitmq.conf (advanced.config replaces them anyway)', () => {
    assert.deepEqual(
      [...conf.keys()].filter((key) => key.startsWith('ssl_options')),
      [],
    );
  });

  it('limits the stored body to 1 MiB by default, or to the node limit it is given', () => {
    assert.equal(conf.get('max_message_size'), '1048576');
    const limited = settings(renderRabbitmqConf({ ...input, maxMessageBytes: 65_536 }));
    assert.equal(limited.get('max_message_size'), '65536');
    assert.throws(() => renderRabbitmqConf({ ...input, maxMessageBytes: 600 * 1_048_576 }), RangeError);
    assert.throws(() => renderRabbitmqConf({ ...input, maxMessageBytes: 0 }), RangeError);
  });

  it('refuses a password that would need cuttlefish quoting', () => {
    assert.throws(() => renderRabbitmqConf({ ...input, adminPassword: 'a b#c' }));
  });
});

describe('advanced.config', () => {
  const text = renderAdvancedConfig(input);

  it('holds the complete TLS option list with CRL checking', () => {
    for (const expected of [
      '{cacertfile, "/srv/h/trust-bundle.pem"}',
      `{certfile, "${paths.certificateFile}"}`,
      `{keyfile, "${paths.keyFile}"}`,
      '{verify, verify_peer}',
      '{fail_if_no_peer_cert, true}',
      "{versions, ['tlsv1.3', 'tlsv1.2']}",
      '{crl_check, peer}',
      '{crl_cache, {ssl_crl_hash_dir, {internal, [{dir, "/srv/h/crl"}]}}}',
      // Hot swap of the server certificate and trust bundle by file replacement alone.
      '{ssl, [{bypass_pem_cache, true}]}',
      // Parked copies refused by a full input are sent again after seconds, not 180 s (decision 0039).
      '{dead_letter_worker_publisher_confirm_timeout, 5000}',
    ]) {
      assert.ok(text.includes(expected), `missing ${expected}`);
    }
    assert.doesNotMatch(text, /tlsv1\.1|'tlsv1'/);
  });

  it('escapes paths as Erlang strings', () => {
    assert.equal(erlangString('a"b\\c'), '"a\\"b\\\\c"');
  });

  it(
    'is a valid Erlang term file',
    { skip: skipUnless('erl', () => execFileSync('erl', ['-version'], { stdio: 'ignore' })) },
    async () => {
      const temp = await makeTempDir('advanced-config');
      try {
        const file = `${temp.path}/advanced.config`;
        writeFileSync(file, renderAdvancedConfig({ ...input, crlDir: '/tmp/with "quote"' }));
        const out = execFileSync(
          'erl',
          [
            '-noshell',
            '-eval',
            `{ok, [Apps]} = file:consult("${file}"), R = proplists:get_value(rabbit, Apps), S = proplists:get_value(ssl, Apps), io:format("~p ~p", [proplists:get_value(crl_check, proplists:get_value(ssl_options, R)), proplists:get_value(bypass_pem_cache, S)]), halt().`,
          ],
          { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: temp.path } },
        );
        assert.equal(out.trim(), 'peer true');
      } finally {
        await temp.remove();
      }
    },
  );
});

describe('enabled_plugins and the environment', () => {
  it('enables exactly the plugins DMR needs', () => {
    assert.equal(renderEnabledPlugins(), `[${HARNESS_PLUGINS.join(',')}].\n`);
    assert.ok(HARNESS_PLUGINS.includes('rabbitmq_auth_mechanism_ssl'));
    assert.ok(HARNESS_PLUGINS.includes('rabbitmq_consistent_hash_exchange'));
  });

  it('builds the environment from scratch with every file and port pinned', () => {
    const env = nodeEnvironment({
      harness: harnessPaths('/srv/h'),
      paths,
      nodename: 'dmr-broker-1@localhost',
      ports,
      epmdPort: 24000,
    });
    assert.equal(env.HOME, '/srv/h/home');
    assert.equal(env.RABBITMQ_CONF_ENV_FILE, '/srv/h/rabbitmq-env.conf');
    assert.equal(env.ERL_EPMD_PORT, '24000');
    assert.equal(env.RABBITMQ_DIST_PORT, String(ports.dist));
    assert.equal(env.RABBITMQ_CTL_DIST_PORT_MIN, String(ports.ctlDistMin));
    assert.equal(env.RABBITMQ_CTL_DIST_PORT_MAX, String(ports.ctlDistMax));
    assert.match(env.ERL_FLAGS ?? '', /-start_epmd false/);
    assert.match(env.ERL_FLAGS ?? '', /inet_dist_use_interface \{127,0,0,1\}/);
    for (const key of Object.keys(env)) {
      assert.ok(/^(PATH|LANG|LC_ALL|HOME|RABBITMQ_|ERL_)/.test(key), `unexpected ${key}`);
    }
  });
});
