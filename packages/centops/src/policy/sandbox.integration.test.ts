/**
 * What an operator-role caller can make CentOps' `opa` do (operators send code
 * that CentOps runs, so it must not reach the host),
 * against a real CentOps with the real opa binary: policies are checked and
 * tested with the built-ins a node's Wasm engine runs (no opa.runtime, no
 * http.send, so no environment, files or network of the CentOps host), in an
 * empty environment and a scratch directory, each job stopped at a timeout
 * while the serialised queue goes on; and CentOps refuses to serve while a
 * key that is not its own (the first admin's) lies in its directory. SQLite
 * only: nothing here depends on the store.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { MAX_REPORTED_OUTPUT_CHARS, runOpa } from '@dmr/policy';
import { startServer, type CentOpsServer } from '../server/app.js';
import { CONFIG_FILE, loadConfig } from '../server/config.js';
import { initCentOps, type InitCentOpsResult } from '../server/init.js';
import { call, type Credentials, type Response } from '../server/test-support/https.js';
import { readPolicyDir } from './files.js';
import { defaultPackDir } from './service.js';

const TD = 'dmr.test';
const TIMEOUT_MS = 10_000;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;

function errorOf(response: Response): { code?: string; details?: { output?: string; check?: string } } {
  return ((response.json as { error?: object } | undefined)?.error ?? {}) as {
    code?: string;
    details?: { output?: string; check?: string };
  };
}

/** A one-module policy set whose only test is `body`. */
function withTest(body: string): Record<string, string> {
  return {
    'probe/allow.rego': 'package probe\n\nallow := true\n',
    'probe/allow_test.rego': `package probe_test\n\n${body}\n`,
  };
}

describe('the policy sandbox on a real CentOps', () => {
  let dir: string;
  let made: InitCentOpsResult;
  let server: CentOpsServer;
  let ca: string;
  let admin: Credentials;
  let listener: Server;
  let listenerUrl: string;
  const reached: string[] = [];
  const api = (path: string, body: unknown, method = 'POST') =>
    call(`${server.apiUrl}${path}`, { ca, method, body, credentials: admin });

  before(async () => {
    process.env.DMR_SANDBOX_CANARY = CANARY;
    dir = await mkdtemp(join(tmpdir(), 'dmr-centops-sandbox-'));
    made = await initCentOps({ dir: join(dir, 'c'), dev: true, trustDomain: TD });
    const config = await loadConfig(join(dir, 'c', CONFIG_FILE));
    config.listen.port = 0;
    config.enrolListen.port = 0;
    server = await startServer(config, { policyTimeoutMs: TIMEOUT_MS });
    ca = await readFile(join(dir, 'c', 'ca', 'root.crt'), 'utf8');
    admin = { cert: await readFile(made.admin.certificate, 'utf8'), key: await readFile(made.admin.key, 'utf8') };
    listener = createServer((request, response) => {
      reached.push(request.url ?? '');
      response.end('{}');
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    listenerUrl = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  });
  after(async () => {
    delete process.env.DMR_SANDBOX_CANARY;
    await server?.close();
    await new Promise((resolve) => listener?.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  /** After opa has answered, one request of our own through the listener: any earlier connection was served before it. */
  async function listenerRoundTrip(): Promise<void> {
    await (await fetch(`${listenerUrl}/round-trip`)).text();
    assert.equal(reached.at(-1), '/round-trip');
    reached.pop();
  }

  it('print(opa.runtime().env) is refused, and opa never sees CentOps’ environment', async () => {
    const refused = await api('/v1/policy/test', { files: withTest('test_env if {\n\tprint(opa.runtime().env)\n}') });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(errorOf(refused).code, 'POLICY_INVALID');
    assert.match(errorOf(refused).details?.output ?? '', /undefined function (opa\.runtime|internal\.print)/);
    assert.ok(!refused.text.includes(CANARY));
    // Even a run without capabilities (opa eval, which has opa.runtime) gets an empty environment.
    const env = await runOpa(['eval', '--format', 'raw', 'opa.runtime().env']);
    assert.equal(env.code, 0, env.stderr);
    assert.deepEqual(JSON.parse(env.stdout), {});
    assert.ok(process.env.DMR_SANDBOX_CANARY === CANARY, 'the canary was there to leak');
  });

  it('http.send cannot reach a listener, with or without a key file CentOps can read', async () => {
    const plain = await api('/v1/policy/test', {
      files: withTest(`test_send if {\n\thttp.send({"method": "get", "url": "${listenerUrl}/plain"})\n}`),
    });
    assert.equal(plain.status, 422, plain.text);
    assert.match(errorOf(plain).details?.output ?? '', /undefined function http\.send/);
    const keyFile = join(dir, 'c', 'tls', 'api.key');
    const withKey = await api('/v1/policy/test', {
      files: withTest(
        `test_key if {\n\thttp.send({"method": "get", "url": "${listenerUrl}/key", ` +
          `"tls_client_cert_file": "${join(dir, 'c', 'tls', 'api.crt')}", "tls_client_key_file": "${keyFile}"})\n}`,
      ),
    });
    assert.equal(withKey.status, 422, withKey.text);
    // Applying (check, test, build) is held to the same capabilities.
    const applied = await api(
      '/v1/policy?dryRun=true',
      { files: withTest(`test_apply if {\n\thttp.send({"method": "get", "url": "${listenerUrl}/apply"})\n}`) },
      'PUT',
    );
    assert.equal(applied.status, 422, applied.text);
    await listenerRoundTrip();
    assert.deepEqual(reached, [], 'opa never reached the listener');
    assert.ok(!withKey.text.includes('PRIVATE KEY'));
  });

  it('a looping test is stopped at the timeout, and the queue serves the next request', async () => {
    const looping = withTest(
      'test_loop if {\n\tsome i in numbers.range(1, 100000)\n\tsome j in numbers.range(1, 100000)\n\ti * j < 0\n}',
    );
    const pack = await readPolicyDir(defaultPackDir());
    // Both at once: the second waits for the first in the serialised queue.
    const [stopped, next] = await Promise.all([
      api('/v1/policy?dryRun=true', { files: looping }, 'PUT'),
      api('/v1/policy?dryRun=true', { files: pack }, 'PUT'),
    ]);
    assert.equal(stopped.status, 422, stopped.text);
    assert.equal(errorOf(stopped).code, 'POLICY_INVALID');
    assert.equal(errorOf(stopped).details?.check, 'timeout');
    assert.equal(next.status, 200, next.text);
    const tests = await api('/v1/policy/test', { files: pack });
    assert.equal(tests.status, 200, tests.text);
  });

  it('OPA’s output comes back verbatim but cut at 64 KiB', async () => {
    const tests = Array.from({ length: 1500 }, (_, index) => `test_fails_${index} if false`).join('\n\n');
    const refused = await api('/v1/policy/test', { files: withTest(tests) });
    assert.equal(refused.status, 422);
    const output = errorOf(refused).details?.output ?? '';
    assert.match(output, /FAIL/);
    assert.ok(output.length <= MAX_REPORTED_OUTPUT_CHARS + 100, `${output.length} characters came back`);
    assert.match(output, /output cut at 65536 characters\)$/);
  });

  it('refuses to serve while the first admin’s key (or any key not CentOps’ own) lies in its directory', async () => {
    const config = await loadConfig(join(dir, 'c', CONFIG_FILE));
    config.listen.port = 0;
    config.enrolListen.port = 0;
    // What an older init left behind: the admin's key inside the CentOps directory.
    await mkdir(join(dir, 'c', 'admin'));
    await copyFile(made.admin.key, join(dir, 'c', 'admin', 'admin.key'));
    await assert.rejects(startServer(config), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'OPERATOR_KEY_ON_SERVER');
      assert.deepEqual(error.details.files, [join('admin', 'admin.key')]);
      return true;
    });
    await rm(join(dir, 'c', 'admin'), { recursive: true });
    const again = await startServer(config);
    await again.close();
    // init never put it there: the admin's credentials were written beside the directory.
    assert.ok(!made.admin.key.startsWith(join(dir, 'c') + '/'));
  });
});
