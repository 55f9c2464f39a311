import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { Bridge } from './bridge.js';
import { applyEnvironment, ENVIRONMENT, loadBridgeConfig, parseBridgeConfig, printableConfig } from './config.js';

const TOKEN = 'Zk3-9sQ_pL2xV8mN4bR7tY1wE6uI0oAa';

const minimal = {
  id: 'ria-bot',
  node: 'node-a',
  broker: { url: 'amqps://broker.example:5671' },
  tls: { certFile: 'ria.crt', keyFile: 'ria.key', caFile: 'ca.pem' },
  endpoint: { url: 'http://127.0.0.1:9000/dmr' },
};

describe('bridge configuration', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-bridge-config-'));
    for (const name of ['ria.crt', 'ria.key', 'ca.pem']) await writeFile(join(dir, name), 'x');
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('fills defaults and resolves paths against the file', () => {
    const config = parseBridgeConfig(minimal, { file: '/etc/dmr/bridge.yaml' });
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8480 });
    assert.equal(config.tls.certFile, '/etc/dmr/ria.crt');
    assert.equal(config.delivery.concurrency, 32);
    assert.equal(config.send.verdictWaitMs, 1_000);
    assert.equal(config.send.maxInFlight, 256);
  });

  it('prints no endpoint credential: the URL password and the extra header values are replaced', () => {
    const config = parseBridgeConfig({
      ...minimal,
      endpoint: { url: 'https://bot:s3cret@ria.example/in', headers: { authorization: 'Bearer abc123' } },
    });
    const printed = JSON.stringify(printableConfig(config));
    assert.ok(!printed.includes('s3cret') && !printed.includes('abc123'), printed);
    assert.match(printed, /"authorization":"\[redacted\]"/);
    assert.equal(config.endpoint.headers.authorization, 'Bearer abc123', 'the configuration itself is unchanged');
  });

  it('prints no secret of any URL or header: endpoint, reports target, CentOps', () => {
    const secrets = ['s3cret', 't0ken-user', 'abc123', 'r3ports-pass', 'rep-bearer', 'q-t0ken', 'c3ntops'];
    const config = parseBridgeConfig({
      ...minimal,
      endpoint: {
        url: 'https://bot:s3cret@ria.example/in?api_key=q-t0ken',
        headers: { authorization: 'Bearer abc123' },
      },
      reports: {
        url: 'https://t0ken-user:r3ports-pass@reports.example/late?page=1',
        headers: { authorization: 'Bearer rep-bearer', 'x-api-key': 'q-t0ken' },
      },
      centops: { url: 'https://op:c3ntops@centops.example' },
    });
    const printed = JSON.stringify(printableConfig(config));
    for (const secret of secrets) assert.ok(!printed.includes(secret), `${secret} printed: ${printed}`);
    const reports = printableConfig(config).reports;
    assert.equal(reports?.url, 'https://***:***@reports.example/late?page=1', 'the rest of the URL stays readable');
    assert.deepEqual(reports?.headers, { authorization: '[redacted]', 'x-api-key': '[redacted]' });
    assert.equal(config.reports?.headers.authorization, 'Bearer rep-bearer', 'the configuration itself is unchanged');
  });

  it('delivery concurrency and the in-flight bound of sends: whole numbers in range, each refusal naming its field', () => {
    const config = parseBridgeConfig({ ...minimal, delivery: { concurrency: 200 }, send: { maxInFlight: 1 } });
    assert.equal(config.delivery.concurrency, 200);
    assert.equal(config.send.maxInFlight, 1);
    const { value, used } = applyEnvironment(minimal, {
      DMR_BRIDGE_DELIVERY_CONCURRENCY: '0',
      DMR_BRIDGE_SEND_MAX_IN_FLIGHT: 'many',
    });
    assert.throws(
      () => parseBridgeConfig(value, { used }),
      (error: unknown) => {
        assert.ok(isDmrError(error));
        assert.equal(error.code, 'BRIDGE_CONFIG_INVALID');
        assert.deepEqual(error.details.problems, [
          '/delivery/concurrency (DMR_BRIDGE_DELIVERY_CONCURRENCY): Expected integer to be greater or equal to 1',
          '/send/maxInFlight (DMR_BRIDGE_SEND_MAX_IN_FLIGHT): Expected integer',
        ]);
        return true;
      },
    );
    assert.throws(() => parseBridgeConfig({ ...minimal, delivery: { concurrency: 1.5 } }), /\/delivery\/concurrency: /);
    assert.throws(() => parseBridgeConfig({ ...minimal, send: { maxInFlight: 100_001 } }), /\/send\/maxInFlight: /);
  });

  it('lists every problem at once, naming the environment variable behind a field', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'id: Ria Bot\nbroker: { url: "amqp://plain:5672" }\ncolour: red\n');
    await assert.rejects(loadBridgeConfig(file, { DMR_BRIDGE_DELIVERY_CONCURRENCY: 'lots' }), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'BRIDGE_CONFIG_INVALID');
      const problems = error.details.problems as string[];
      assert.ok(problems.some((line) => line.startsWith('/id:')));
      assert.ok(problems.some((line) => line.startsWith('/broker/url:')));
      assert.ok(problems.some((line) => line.startsWith('/colour: is not a known field')));
      assert.ok(problems.some((line) => line.startsWith('/node (DMR_BRIDGE_NODE): is required')));
      assert.ok(problems.some((line) => line.includes('(DMR_BRIDGE_DELIVERY_CONCURRENCY)')));
      return true;
    });
  });

  /** The variables a bridge configured from the environment alone cannot do without. */
  const requiredEnvironment = () => ({
    DMR_BRIDGE_ID: 'ria-bot',
    DMR_BRIDGE_NODE: 'node-a',
    DMR_BRIDGE_BROKER_URL: 'amqps://127.0.0.1:5671',
    DMR_BRIDGE_TLS_CERT_FILE: join(dir, 'ria.crt'),
    DMR_BRIDGE_TLS_KEY_FILE: join(dir, 'ria.key'),
    DMR_BRIDGE_TLS_CA_FILE: join(dir, 'ca.pem'),
    DMR_BRIDGE_ENDPOINT_URL: 'https://bot.example/dmr',
  });

  it('configures from the environment alone, and checks the TLS files exist', async () => {
    const env = {
      ...requiredEnvironment(),
      DMR_BRIDGE_LISTEN: '[::1]:9090',
      DMR_BRIDGE_DELIVERY_DEAD_LETTER_STATUSES: '400, 422',
    };
    const config = await loadBridgeConfig(undefined, env);
    assert.deepEqual(config.listen, { host: '::1', port: 9090 });
    assert.deepEqual(config.delivery.deadLetterStatuses, [400, 422]);
    await assert.rejects(loadBridgeConfig(undefined, { ...env, DMR_BRIDGE_TLS_KEY_FILE: join(dir, 'missing.key') }), {
      code: 'BRIDGE_CONFIG_INVALID',
    });
  });

  it('every environment variable maps to a schema field', () => {
    for (const variable of ENVIRONMENT) assert.match(variable.name, /^DMR_BRIDGE_[A-Z_]+$/);
    assert.equal(new Set(ENVIRONMENT.map((variable) => variable.name)).size, ENVIRONMENT.length);
  });

  it('refuses a listener that is not on loopback without authentication, and says how to add it', async () => {
    const env = {
      ...requiredEnvironment(),
      DMR_BRIDGE_LISTEN: '0.0.0.0:8480',
    };
    await assert.rejects(loadBridgeConfig(undefined, env), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'BRIDGE_CONFIG_INVALID');
      assert.match(
        error.message,
        /\/listen: 0\.0\.0\.0 is not a loopback address, and no authentication is configured/,
      );
      assert.match(error.message, /DMR_BRIDGE_AUTH_TOKENS/);
      return true;
    });
    // Tokens from the environment: accepted, and the configuration prints without them.
    const withTokens = await loadBridgeConfig(undefined, { ...env, DMR_BRIDGE_AUTH_TOKENS: TOKEN });
    assert.equal(withTokens.auth.tokens?.count, 1);
    assert.ok(!JSON.stringify(withTokens).includes(TOKEN));
    // Mutual TLS is authentication too.
    const mutual = await loadBridgeConfig(undefined, {
      ...env,
      DMR_BRIDGE_SERVER_TLS_CERT_FILE: join(dir, 'ria.crt'),
      DMR_BRIDGE_SERVER_TLS_KEY_FILE: join(dir, 'ria.key'),
      DMR_BRIDGE_SERVER_TLS_CLIENT_CA_FILE: join(dir, 'ca.pem'),
    });
    assert.equal(mutual.server.tls?.clientCaFile, join(dir, 'ca.pem'));
    // A weak token is refused without being quoted; a tokens file that cannot be read is named.
    await assert.rejects(
      loadBridgeConfig(undefined, { ...env, DMR_BRIDGE_AUTH_TOKENS: 'password1' }),
      (error: unknown) => {
        assert.ok(isDmrError(error));
        assert.match(error.message, /token 1 is shorter than 32 characters/);
        assert.ok(!JSON.stringify(error.toJSON()).includes('password1'));
        return true;
      },
    );
    await assert.rejects(
      loadBridgeConfig(undefined, { ...env, DMR_BRIDGE_AUTH_TOKENS_FILE: join(dir, 'no-such-tokens') }),
      /\/auth\/tokensFile: cannot read/,
    );
    const tokensFile = join(dir, 'tokens');
    await writeFile(tokensFile, `# bridge callers\n${TOKEN}\n`, { mode: 0o600 });
    const fromFile = await loadBridgeConfig(undefined, { ...env, DMR_BRIDGE_AUTH_TOKENS_FILE: tokensFile });
    assert.deepEqual(fromFile.auth.tokens?.toJSON(), { count: 1, sources: [tokensFile] });
  });

  it('Bridge.start refuses 0.0.0.0 without authentication before it connects or listens', async () => {
    // parseBridgeConfig alone does not load tokens; Bridge.start checks again.
    const config = parseBridgeConfig({ ...minimal, listen: '0.0.0.0:0' }, { file: join(dir, 'bridge.yaml') });
    await assert.rejects(Bridge.start(config), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'BRIDGE_CONFIG_INVALID');
      assert.match(error.message, /^refusing to listen: \/listen: 0\.0\.0\.0 is not a loopback address/);
      assert.match(error.hint ?? '', /Authentication/);
      return true;
    });
  });
});
