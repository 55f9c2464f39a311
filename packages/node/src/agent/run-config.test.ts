import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { routerMetricsListen } from './router-process.js';
import { loadRunConfig, parseRunConfig, runConfigProblems } from './run-config.js';

function valid(): Record<string, unknown> {
  return {
    node: 'node-a',
    dataDir: './data',
    centops: {
      url: 'https://127.0.0.1:8443',
      enrolUrl: 'https://127.0.0.1:8444',
      caFile: 'ca.pem',
      tokenFile: 'token',
      trustDomain: 'dmr.test',
    },
    broker: {
      amqpsUrl: 'amqps://127.0.0.1:5671',
      management: { url: 'http://127.0.0.1:15672', username: 'admin', passwordFile: 'password' },
      tls: { certFile: 'tls/cert.pem', keyFile: 'tls/key.pem', caFile: 'tls/ca.pem', crlDir: 'tls/crl' },
    },
  };
}

describe('run-config', () => {
  it('fills defaults and resolves paths against the file', () => {
    const config = parseRunConfig(valid(), '/etc/dmr/node.yaml');
    assert.equal(config.dataDir, '/etc/dmr/data');
    assert.equal(config.centops.caFile, '/etc/dmr/ca.pem');
    assert.equal(config.broker.tls?.crlDir, '/etc/dmr/tls/crl');
    assert.equal(config.routers, 1);
    assert.deepEqual(config.policy, { mode: 'wasm' });
    assert.equal(config.centops.keyAlgorithm, 'ecdsa-p256');
    assert.equal(config.feed.stream, true);
    assert.equal(config.file, '/etc/dmr/node.yaml');
  });

  it('lists every bad field at once', () => {
    const bad = valid();
    bad.node = 'Node_A';
    bad.routers = -1;
    bad.extra = true;
    (bad.centops as Record<string, unknown>).url = 'http://insecure';
    (bad.broker as Record<string, unknown>).amqpsUrl = 'amqp://plain';
    bad.policy = { mode: 'rest' };
    const problems = runConfigProblems(bad);
    for (const path of ['/node', '/routers', '/extra', '/centops/url', '/broker/amqpsUrl', '/policy']) {
      assert.ok(
        problems.some((problem) => problem.startsWith(`${path}:`)),
        `${path} not reported in ${problems.join(' | ')}`,
      );
    }
    assert.throws(
      () => parseRunConfig(bad, 'node.yaml'),
      (error: unknown) =>
        isDmrError(error) &&
        error.code === 'NODE_CONFIG_INVALID' &&
        Array.isArray(error.details.problems) &&
        error.details.problems.length === problems.length,
    );
  });

  it('reports missing required fields and inconsistent back-off bounds', () => {
    const missing = valid();
    delete missing.broker;
    assert.ok(runConfigProblems(missing).some((problem) => problem.startsWith('/broker:')));
    const backoff = { ...valid(), feed: { backoffInitialMs: 5000, backoffMaxMs: 100 } };
    assert.deepEqual(runConfigProblems(backoff), ['/feed/backoffMaxMs: must be ≥ backoffInitialMs']);
  });

  it('loads YAML and refuses unreadable or unparsable files with NODE_CONFIG_INVALID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmr-run-config-'));
    try {
      const file = join(dir, 'node.yaml');
      await writeFile(file, 'node: node-a\ndataDir: d\n');
      await assert.rejects(
        loadRunConfig(file),
        (error: unknown) => isDmrError(error) && error.code === 'NODE_CONFIG_INVALID',
      );
      await writeFile(file, 'node: [unclosed\n');
      await assert.rejects(
        loadRunConfig(file),
        (error: unknown) => isDmrError(error) && error.code === 'NODE_CONFIG_INVALID',
      );
      await assert.rejects(loadRunConfig(join(dir, 'missing.yaml')), /cannot read/);
      await writeFile(file, JSON.stringify(valid()));
      assert.equal((await loadRunConfig(file)).dataDir, join(dir, 'data'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("puts router N's metrics on the agent's port + 1 + N, and nowhere when the port is chosen by the system", () => {
    const config = parseRunConfig({ ...valid(), metrics: { listen: '127.0.0.1:9464' } }, '/etc/dmr/node.yaml');
    assert.equal(routerMetricsListen(config, 0), '127.0.0.1:9465');
    assert.equal(routerMetricsListen(config, 2), '127.0.0.1:9467');
    const ephemeral = parseRunConfig({ ...valid(), metrics: { listen: '127.0.0.1:0' } }, '/etc/dmr/node.yaml');
    assert.equal(routerMetricsListen(ephemeral, 0), undefined);
    assert.equal(routerMetricsListen(parseRunConfig(valid(), '/etc/dmr/node.yaml'), 0), undefined);
  });

  it('takes an OTLP/HTTP tracing endpoint, off when absent; anything but http(s) is a listed problem', () => {
    assert.equal(parseRunConfig(valid(), '/etc/dmr/node.yaml').tracing, undefined);
    const on = parseRunConfig({ ...valid(), tracing: { endpoint: 'http://127.0.0.1:4318' } }, '/etc/dmr/node.yaml');
    assert.deepEqual(on.tracing, { endpoint: 'http://127.0.0.1:4318' });
    const problems = runConfigProblems({ ...valid(), tracing: { endpoint: 'grpc://collector:4317', extra: 1 } });
    assert.ok(
      problems.some((problem) => problem.startsWith('/tracing/endpoint:')),
      problems.join(' | '),
    );
    assert.ok(
      problems.some((problem) => problem.startsWith('/tracing/extra:')),
      problems.join(' | '),
    );
  });
});
