/**
 * `dmr broker start|status|crl|stop` as a user runs them (the compiled CLI in
 * a child process), in a temp dir: detached nodes side by side, foreground
 * mode with Ctrl-C semantics, and the errors people will hit.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { connectWithCertificate, probeTls } from '@dmr/broker';
import { isRunning } from './processes.js';
import { allPorts, PORT_LOCK_DIR } from './ports.js';
import { readState } from './state.js';
import { harnessProcesses } from './teardown.js';
import { leftoverProcesses, makeTempDir } from './testing.js';
import { waitFor } from '@dmr/core/testing';

const DMR = fileURLToPath(new URL('../../cli/bin/dmr.js', import.meta.url));

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function dmr(...args: string[]): Promise<CliRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [DMR, ...args], { timeout: 180_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function jsonOf(run: CliRun): Record<string, unknown> {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

function errorCodeOf(run: CliRun): string | undefined {
  const line = run.stderr.trim().split('\n').pop() ?? '';
  try {
    return (JSON.parse(line) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

describe('dmr broker CLI', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let pkiDir: string;

  before(async () => {
    temp = await makeTempDir('cli-test');
    pkiDir = `${temp.path}/pki`;
  });

  after(async () => {
    // Whatever a failed assertion left running is stopped before the temp dir goes.
    for (const name of ['detached', 'foreground']) {
      await dmr('broker', 'stop', '--dir', `${temp.path}/${name}`);
    }
    await temp?.remove();
  });

  it('starts two detached nodes side by side, reports them, installs a CRL and stops them leaving no process', async () => {
    const dir = `${temp.path}/detached`;
    const start = await dmr(
      '-o',
      'json',
      'broker',
      'start',
      '--dir',
      dir,
      '--pki',
      pkiDir,
      '--init-pki',
      '--nodes',
      '2',
    );
    const started = jsonOf(start);
    assert.equal(started.mode, 'detached');
    assert.ok(start.stderr.includes('booting'), 'no progress on stderr');
    const state = await readState(dir);
    for (const node of state.nodes)
      process.stdout.write(`# broker-timing cli-detached ${node.name} boot_ms=${node.bootMs}\n`);

    // Distinct names and not one shared port, epmd and CLI ranges included.
    assert.deepEqual(
      state.nodes.map((node) => node.nodename),
      ['dmr-broker-1@localhost', 'dmr-broker-2@localhost'],
    );
    const ports = allPorts({ epmd: state.epmd.port, nodes: state.nodes.map((node) => node.ports) });
    assert.equal(new Set(ports).size, ports.length, `ports overlap: ${ports.join(',')}`);
    assert.equal(state.lifetime, 'detached');
    assert.equal(state.watchdog, null, 'a detached start must not leave a watchdog');

    // The start command has exited, the nodes still answer mutual TLS.
    const caPem = await readFile(state.trustBundleFile, 'utf8');
    for (const node of state.nodes) {
      const probe = await probeTls({
        port: node.ports.amqps,
        caPem,
        certificatePem: await readFile(node.paths.certificateFile, 'utf8'),
        privateKeyPem: await readFile(node.paths.keyFile, 'utf8'),
      });
      assert.ok(probe.ok, `${node.name}: ${probe.code} ${probe.message}`);
    }

    const status = jsonOf(await dmr('-o', 'json', 'broker', 'status', '--dir', dir));
    assert.equal(status.running, true);
    const nodes = status.nodes as Array<{ running: boolean; listening: boolean }>;
    assert.deepEqual(
      nodes.map((node) => [node.running, node.listening]),
      [
        [true, true],
        [true, true],
      ],
    );

    const again = await dmr('-o', 'json', 'broker', 'start', '--dir', dir, '--pki', pkiDir);
    assert.equal(again.code, 4);
    assert.equal(errorCodeOf(again), 'BROKER_ALREADY_RUNNING');

    const crl = jsonOf(await dmr('-o', 'json', 'broker', 'crl', '--dir', dir, '--pki', pkiDir));
    assert.equal(crl.revokedCount, 0);

    const recorded = harnessProcesses(state);
    assert.ok(
      recorded.every((entry) => entry.running),
      'not every recorded process was running',
    );
    const stop = jsonOf(await dmr('-o', 'json', 'broker', 'stop', '--dir', dir));
    process.stdout.write(`# broker-timing cli-detached stop_ms=${stop.ms as number}\n`);
    assert.deepEqual(
      (stop.nodes as Array<{ graceful: boolean }>).map((node) => node.graceful),
      [true, true],
    );
    assert.deepEqual(
      harnessProcesses(state).filter((entry) => entry.running),
      [],
    );
    assert.equal(isRunning(state.epmd.process), false, 'epmd survived');
    assert.deepEqual(leftoverProcesses(dir), []);
    assert.equal(jsonOf(await dmr('-o', 'json', 'broker', 'status', '--dir', dir)).running, false);
  });

  it('runs in the foreground with a demo client until SIGTERM, then stops everything', async () => {
    const dir = `${temp.path}/foreground`;
    const child = spawn(process.execPath, [DMR, 'broker', 'start', '--dir', dir, '--pki', pkiDir, '--foreground'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitFor(
        () => `the brokers to be ready: ${stderr}`,
        () => stdout.includes('Ctrl-C stops every node') || child.exitCode !== null,
        { timeoutMs: 120_000 },
      );
      assert.equal(child.exitCode, null, `not ready: ${stderr}`);
      const state = await readState(dir);
      process.stdout.write(
        `# broker-timing cli-foreground ${state.nodes[0]?.name} boot_ms=${state.nodes[0]?.bootMs}\n`,
      );
      assert.ok(isRunning(state.watchdog), 'foreground mode runs a watchdog');

      // The demo client the command printed can connect.
      const clients = `${dir}/clients`;
      const connection = await connectWithCertificate({
        port: state.nodes[0]?.ports.amqps ?? 0,
        caPem: await readFile(state.trustBundleFile, 'utf8'),
        certificatePem: await readFile(`${clients}/demo-client.pem`, 'utf8'),
        privateKeyPem: await readFile(`${clients}/demo-client.key`, 'utf8'),
      });
      await connection.close();

      const stopping = Date.now();
      child.kill('SIGTERM');
      const result = await exit;
      process.stdout.write(`# broker-timing cli-foreground stop_ms=${Date.now() - stopping}\n`);
      assert.deepEqual(result, { code: 0, signal: null }, stderr);
      assert.deepEqual(
        harnessProcesses(state).filter((entry) => entry.running),
        [],
      );
      assert.deepEqual(leftoverProcesses(dir), []);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('leaves nothing behind when a detached start is interrupted during boot', async () => {
    const dir = `${temp.path}/interrupted`;
    const child = spawn(process.execPath, [DMR, 'broker', 'start', '--dir', dir, '--pki', pkiDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitFor(
        () => stderr,
        () => stderr.includes('waiting for the Erlang node'),
        { timeoutMs: 60_000 },
      );
      child.kill('SIGINT');
      assert.equal(await exit, 'SIGINT');
      const state = await readState(dir);
      assert.equal(state.status, 'stopped');
      assert.match(state.error ?? '', /interrupted during boot/);
      assert.deepEqual(
        harnessProcesses(state).filter((entry) => entry.running),
        [],
      );
      assert.deepEqual(leftoverProcesses(dir), []);
      const locks = await readdir(PORT_LOCK_DIR).catch(() => []);
      for (const lock of locks) {
        const owner = await readFile(`${PORT_LOCK_DIR}/${lock}`, 'utf8').catch(() => '');
        assert.notEqual(owner, String(child.pid), `port lock ${lock} left behind`);
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('explains what is wrong with the directory, the CA or the arguments', async () => {
    const status = await dmr('-o', 'json', 'broker', 'status', '--dir', temp.path);
    assert.equal(status.code, 3);
    assert.equal(errorCodeOf(status), 'NOT_FOUND');

    const busy = `${temp.path}/busy`;
    await mkdir(busy);
    await writeFile(`${busy}/precious.txt`, 'not a harness');
    const clobber = await dmr('-o', 'json', 'broker', 'start', '--dir', busy, '--pki', pkiDir);
    assert.equal(errorCodeOf(clobber), 'ALREADY_EXISTS');

    const noCa = await dmr('broker', 'start', '--dir', `${temp.path}/no-ca`, '--pki', `${temp.path}/no-pki`);
    assert.equal(noCa.code, 3);
    assert.match(noCa.stderr, /--init-pki/);

    const nodes = await dmr(
      '-o',
      'json',
      'broker',
      'start',
      '--dir',
      `${temp.path}/x`,
      '--pki',
      pkiDir,
      '--nodes',
      '0',
    );
    assert.equal(errorCodeOf(nodes), 'INVALID_ARGUMENT');
  });
});
