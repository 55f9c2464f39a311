/**
 * The node agent against a real CentOps (in process, real mutual TLS) and a
 * real harness broker: enrolment, the first document, a new revision, the
 * denylist on a live connection, refused documents, certificate renewal and
 * running on the last good document while CentOps is down. One broker and
 * one CentOps for the file; the tests run in order and share the node.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate, randomUUID } from 'node:crypto';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { connectWithCertificate, probeTls } from '@dmr/broker';
import { ConfigSigner } from '@dmr/centops';
import type { NodeConfig } from '@dmr/contract';
import { isDmrError } from '@dmr/core';
import { createCsr } from '@dmr/pki';
import { vhostName } from '@dmr/contract';
import { NodeAgent, type AgentOptions, type DocumentOutcome } from './agent.js';
import { tlsFilesOf } from '../reconciler/index.js';
import { startRouterProcess, type RunningRouter } from './router-process.js';
import { RouterSupervisor } from './supervisor.js';
import { CentOpsClient } from './centops-client.js';
import { loadRunConfig, type RunConfig } from './run-config.js';
import { dataPaths, readLocalStatus } from './state-dir.js';
import {
  NODE,
  TD,
  serverSerial,
  startAgentEnvironment,
  startImpostor,
  writeRunConfig,
  type AgentEnvironment,
} from './test-support.js';
import { waitFor } from '@dmr/core/testing';

function sameSerial(a: string, b: string): boolean {
  return a.replace(/^0+/, '').toLowerCase() === b.replace(/^0+/, '').toLowerCase();
}

describe('node agent with a real CentOps and broker', () => {
  let env: AgentEnvironment;
  let config: RunConfig;
  let agent: NodeAgent | undefined;
  const outcomes: DocumentOutcome[] = [];
  const routers: RunningRouter[] = [];

  /** Broker users are named by SPIFFE id. */
  const clientUser = (id: string): string => `spiffe://${TD}/client/${id}`;
  const nodeUser = (id: string): string => `spiffe://${TD}/node/${id}`;

  async function users(): Promise<string[]> {
    const list = (await env.harness.management().request('GET', '/users')) as Array<{ name: string }>;
    return list.map((user) => user.name).sort();
  }

  async function nodeStatus(): Promise<Record<string, unknown>> {
    const answer = await env.api(`/v1/nodes/${NODE}/status`);
    assert.equal(answer.status, 200, answer.text);
    return answer.json as Record<string, unknown>;
  }

  /** Until the node runs CentOps' current revision and says so. */
  async function settle(): Promise<number> {
    return waitFor('the node to be in sync', async () => {
      const status = await nodeStatus();
      return status.inSync === true && agent?.appliedRevision === status.currentRevision
        ? (status.currentRevision as number)
        : undefined;
    });
  }

  async function startAgent(
    runConfig: RunConfig = config,
    now?: () => Date,
    extra: Pick<AgentOptions, 'linkCheckMs'> = {},
  ): Promise<NodeAgent> {
    const started = new NodeAgent(runConfig, {
      onOutcome: (outcome) => outcomes.push(outcome),
      ...(now === undefined ? {} : { now }),
      ...extra,
    });
    await started.start();
    return started;
  }

  before(async () => {
    env = await startAgentEnvironment();
    config = await loadRunConfig(await writeRunConfig(env.dir, 'node-a.yaml', env.runConfig));
  });

  after(async () => {
    mock.restoreAll();
    for (const router of routers) await router.stop();
    await agent?.stop();
    await env?.close();
  });

  it('refuses an unknown bootstrap token with TOKEN_INVALID and a hint', async () => {
    const file = await writeRunConfig(env.dir, 'bogus.yaml', {
      ...env.runConfig,
      dataDir: join(env.dir, 'bogus'),
      centops: { ...env.runConfig.centops, tokenFile: join(env.dir, 'bogus.token') },
    });
    await writeFile(join(env.dir, 'bogus.token'), 'not-a-token\n');
    const bogus = new NodeAgent(await loadRunConfig(file));
    await assert.rejects(bogus.start(), (error: unknown) => {
      assert.ok(isDmrError(error));
      assert.equal(error.code, 'TOKEN_INVALID');
      assert.match(error.hint ?? '', /new one/);
      return true;
    });
    await bogus.stop();
  });

  it("refuses another node's certificate posing as CentOps: no token to the impostor, not for the API either", async () => {
    // Same CA, same host names as CentOps: only the SPIFFE id tells them apart.
    const stolen = await env.server.ca.issueWithKey({
      kind: 'node',
      id: 'node-b',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
    const impostor = await startImpostor(stolen);
    try {
      const file = await writeRunConfig(env.dir, 'impostor.yaml', {
        ...env.runConfig,
        dataDir: join(env.dir, 'impostor'),
        centops: { ...env.runConfig.centops, enrolUrl: impostor.url, tokenFile: join(env.dir, 'impostor.token') },
      });
      await writeFile(join(env.dir, 'impostor.token'), 'a-token-for-centops-only\n');
      const fooled = new NodeAgent(await loadRunConfig(file));
      await assert.rejects(fooled.start(), (error: unknown) => {
        assert.ok(isDmrError(error), String(error));
        assert.equal(error.code, 'SERVER_IDENTITY_MISMATCH', error.message);
        assert.equal(error.details.expected, 'spiffe://dmr.test/centops/api');
        assert.deepEqual(error.details.presented, ['spiffe://dmr.test/node/node-b']);
        return true;
      });
      await fooled.stop();
      // The mutual-TLS API client pins too (the node's own keep-alive agent).
      const asNode = new CentOpsClient({
        apiUrl: impostor.url,
        enrolUrl: impostor.url,
        caPem: env.ca,
        trustDomain: 'dmr.test',
        identity: stolen,
      });
      await assert.rejects(
        asNode.crl(),
        (error: unknown) => isDmrError(error) && error.code === 'SERVER_IDENTITY_MISMATCH',
      );
      asNode.close();
      // A round trip: the impostor is up and answers a chain-only client, and has seen nothing else.
      assert.equal(await impostor.probe(env.ca), 404);
      assert.deepEqual(impostor.received, ['GET /probe ']);
    } finally {
      await impostor.close();
    }
  });

  it('enrols with a token (only the token and a CSR leave the node) and applies the first document', async () => {
    const token = await env.token(NODE, 'node');
    await writeFile(join(env.dir, 'node-a.token'), `${token}\n`);
    const enrolSpy = mock.method(CentOpsClient.prototype, 'enrol');
    agent = await startAgent();
    assert.equal(enrolSpy.mock.callCount(), 1);
    const [sentToken, csr] = enrolSpy.mock.calls[0]?.arguments ?? [];
    assert.equal(sentToken, token);
    assert.match(String(csr), /^-----BEGIN CERTIFICATE REQUEST-----/);
    assert.doesNotMatch(String(csr), /PRIVATE KEY/);
    const paths = dataPaths(config.dataDir);
    assert.equal((await stat(paths.keyFile)).mode & 0o777, 0o600);
    const identity = agent.identity;
    assert.ok(identity);

    // The broker now presents the node's certificate.
    const client = await env.enrolClient('police-bot');
    assert.ok(
      sameSerial(
        await serverSerial(env.harness.node(0).amqpsPort, env.ca, { cert: client.chainPem, key: client.privateKeyPem }),
        identity.serial,
      ),
    );

    const current = await waitFor('the first document', async () => {
      const status = await nodeStatus();
      return status.inSync === true ? status : undefined;
    });
    assert.equal(current.appliedRevision, agent.appliedRevision);
    assert.equal(current.refused, null);
    const policy = agent.appliedConfig?.policy;
    assert.equal(current.policyRevision, policy?.revision ?? null);
    assert.deepEqual(
      (await users()).filter((user) => user === clientUser('police-bot') || user === nodeUser(NODE)),
      [clientUser('police-bot'), nodeUser(NODE)],
    );
    const vhosts = (await env.harness.management().request('GET', '/vhosts')) as Array<{ name: string }>;
    assert.ok(vhosts.some((vhost) => vhost.name === vhostName(NODE)));
    const local = await readLocalStatus(config.dataDir);
    assert.equal(local?.appliedRevision, agent.appliedRevision);
    assert.ok((await readFile(paths.configFile, 'utf8')).split('.').length === 3);
    const health = await fetch(`${agent.metricsUrl ?? ''}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`${agent.metricsUrl ?? ''}/metrics`)).text();
    assert.match(metrics, new RegExp(`^dmr_node_config_revision ${agent.appliedRevision ?? -2}$`, 'm'));
    assert.match(metrics, /^dmr_node_centops_connected 1$/m);
    assert.match(metrics, /^dmr_node_certificate_expiry_seconds \d+$/m);
  });

  it('refuses a token that was used already', async () => {
    const file = await writeRunConfig(env.dir, 'again.yaml', { ...env.runConfig, dataDir: join(env.dir, 'again') });
    const again = new NodeAgent(await loadRunConfig(file));
    await assert.rejects(again.start(), (error: unknown) => isDmrError(error) && error.code === 'TOKEN_INVALID');
    await again.stop();
  });

  it('starts again without enrolling: identity and last good document come from disk', async () => {
    const before = agent?.identity?.serial;
    const revision = agent?.appliedRevision;
    await agent?.stop();
    const enrolSpy = mock.method(CentOpsClient.prototype, 'enrol');
    agent = await startAgent();
    assert.equal(enrolSpy.mock.callCount(), 0);
    assert.equal(agent.identity?.serial, before);
    // Applied before the feed said anything: from disk.
    assert.equal(agent.appliedRevision, revision);
  });

  it('reconciles a new revision (a client added in CentOps)', async () => {
    const running = agent;
    assert.ok(running);
    const before = running.appliedRevision ?? -1;
    await env.server.store.create(
      'Client',
      {
        id: 'police-desk',
        organisation: 'police',
        homeNode: NODE,
        roles: [],
        labels: {},
        status: 'active',
        certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] },
      },
      'spiffe://dmr.test/operator/admin',
    );
    assert.ok((await settle()) > before);
    assert.ok((await users()).includes(clientUser('police-desk')));
  });

  it('follows the feed by long-poll when the stream is off', async () => {
    await settle();
    await agent?.stop();
    agent = await startAgent({ ...config, feed: { ...config.feed, stream: false, waitSeconds: 10 } });
    try {
      const before = agent.appliedRevision ?? -1;
      await env.server.store.create(
        'Client',
        {
          id: 'police-poll',
          organisation: 'police',
          homeNode: NODE,
          roles: [],
          labels: {},
          status: 'active',
          certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] },
        },
        'spiffe://dmr.test/operator/admin',
      );
      assert.ok((await settle()) > before);
      assert.ok((await users()).includes(clientUser('police-poll')));
    } finally {
      await agent.stop();
      agent = await startAgent();
    }
  });

  it('denylists a client with a live AMQP connection: the connection is closed', async (t) => {
    const client = await env.enrolClient('police-desk');
    await settle();
    const connection = await connectWithCertificate({
      port: env.harness.node(0).amqpsPort,
      caPem: env.ca,
      certificatePem: client.chainPem,
      privateKeyPem: client.privateKeyPem,
      vhost: vhostName(NODE),
    });
    connection.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => connection.once('close', () => resolve(performance.now())));
    const started = performance.now();
    const revoked = await env.api(`/v1/certificates/${client.serial}/revoke`, {
      method: 'POST',
      body: { reason: 'keyCompromise' },
    });
    assert.equal(revoked.status, 200, revoked.text);
    const closedAt = await Promise.race([closed, sleep(20_000).then(() => undefined)]);
    assert.ok(closedAt !== undefined, 'the connection was not closed within 20 s');
    const ms = Math.round(closedAt - started);
    const applied = outcomes.findLast((outcome) => outcome.result === 'applied');
    t.diagnostic(
      `denylist → connection closed in ${ms} ms (the agent's verify + reconcile + write: ${applied?.result === 'applied' ? applied.ms : '?'} ms)`,
    );
    await settle();
    assert.ok(!(await users()).includes(clientUser('police-desk')));
    // The agent fetched the new CRL at once: the revoked certificate fails the TLS handshake itself.
    const refused = await waitFor('the CRL to refuse the revoked certificate', async () => {
      const probe = await probeTls({
        port: env.harness.node(0).amqpsPort,
        caPem: env.ca,
        certificatePem: client.chainPem,
        privateKeyPem: client.privateKeyPem,
      });
      return probe.ok ? undefined : probe;
    });
    assert.match(refused.code ?? '', /REVOKED/);
    assert.ok(agent?.appliedConfig?.denylist.some((entry) => entry.id === 'police-desk'));
  });

  it('refuses a document signed by the wrong signer and an older revision; the last good stays', async () => {
    await settle();
    const running = agent;
    assert.ok(running?.appliedConfig);
    const applied: NodeConfig = running.appliedConfig;
    const usersBefore = await users();
    // Same revision (CentOps only records refusals of revisions it has issued), other content.
    const tampered: NodeConfig = { ...applied, clients: [] };
    // The policy signer is a real CentOps key chained to the trusted root, but not the config signer.
    const wrong = new ConfigSigner({
      certificateChainPem: await readFile(join(env.centopsDir, 'signer', 'policy-signer.crt'), 'utf8'),
      privateKeyPem: await readFile(join(env.centopsDir, 'signer', 'policy-signer.key'), 'utf8'),
    });
    const refused = await running.applyDocument({
      revision: tampered.revision,
      jws: await wrong.sign(tampered),
      via: 'poll',
    });
    assert.equal(refused.result, 'refused');
    assert.equal(refused.result === 'refused' ? refused.code : '', 'CONFIG_SIGNATURE_INVALID');
    const status = await nodeStatus();
    assert.deepEqual((status.refused as { revision: number }).revision, tampered.revision);
    assert.match((status.refused as { reason: string }).reason, /^CONFIG_SIGNATURE_INVALID: /);
    assert.equal(status.appliedRevision, applied.revision);

    const signer = new ConfigSigner({
      certificateChainPem: await readFile(join(env.centopsDir, 'signer', 'config-signer.crt'), 'utf8'),
      privateKeyPem: await readFile(join(env.centopsDir, 'signer', 'config-signer.key'), 'utf8'),
    });
    const older = { ...applied, revision: applied.revision - 1, clients: [] };
    const stale = await running.applyDocument({ revision: older.revision, jws: await signer.sign(older), via: 'poll' });
    assert.equal(stale.result === 'refused' ? stale.code : stale.result, 'CONFIG_INVALID');
    assert.equal(running.appliedRevision, applied.revision);
    assert.deepEqual(await users(), usersBefore);
    const metrics = await running.metrics.registry.getSingleMetricAsString('dmr_node_config_refusals_total');
    assert.match(metrics, /reason="CONFIG_SIGNATURE_INVALID"} 1/);
  });

  it('renews its certificate without a restart: new serial on disk and on the broker', async () => {
    const running = agent;
    assert.ok(running?.identity);
    const old = running.identity.serial;
    const renewed = await running.renewNow();
    assert.ok(renewed);
    assert.notEqual(renewed.serial, old);
    const onDisk = await readFile(dataPaths(config.dataDir).certificateFile, 'utf8');
    assert.equal(onDisk, renewed.chainPem);
    const client = await env.enrolClient('police-bot');
    const presented = await serverSerial(env.harness.node(0).amqpsPort, env.ca, {
      cert: client.chainPem,
      key: client.privateKeyPem,
    });
    assert.ok(sameSerial(presented, renewed.serial), `${presented} vs ${renewed.serial}`);

    // The schedule: an agent whose clock says the certificate is 90 % through its life renews by itself.
    await running.stop();
    const lifetime = renewed.notAfter.getTime() - renewed.notBefore.getTime();
    // The agent reads the clock twice at start: is the certificate expired (a grace renewal), then when is the
    // renewal due. Both see the certificate 90 % through its life; every later read is the real clock.
    let reads = 0;
    const late = () => {
      reads += 1;
      return reads <= 2 ? new Date(renewed.notBefore.getTime() + 0.9 * lifetime) : new Date();
    };
    agent = await startAgent(config, late);
    const scheduled = agent;
    await waitFor('the scheduled renewal', () =>
      scheduled.identity !== undefined && scheduled.identity.serial !== renewed.serial ? true : undefined,
    );
    assert.ok(
      sameSerial(
        await serverSerial(env.harness.node(0).amqpsPort, env.ca, { cert: client.chainPem, key: client.privateKeyPem }),
        scheduled.identity?.serial ?? '',
      ),
    );
    // CentOps calls use the new certificate: a new revision (the renewal) is still followed and reported.
    await settle();
  });

  it('keeps a shovel per link with the node certificate, shows its state, and re-creates it on renewal', async () => {
    await settle();
    await agent?.stop();
    agent = await startAgent(config, undefined, { linkCheckMs: 100 });
    const running = agent;
    const operator = 'spiffe://dmr.test/operator/admin';
    // The peer's endpoint is this broker, which has no vhost for node-b: the link is refused and never runs.
    await env.server.store.create(
      'Node',
      {
        id: 'node-b',
        amqpsEndpoint: `amqps://localhost:${env.harness.node(0).amqpsPort}`,
        managementEndpoint: 'https://127.0.0.1:15671',
        labels: {},
        certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] },
      },
      operator,
    );
    await env.server.store.create('Link', { id: 'node-a--node-b', nodes: [NODE, 'node-b'], cost: 1 }, operator);
    await settle();
    const management = env.harness.management();
    const definition = await waitFor('the link shovel', () => management.getShovel(vhostName(NODE), 'dmr.link.node-b'));
    const linkDir = join(dirname(config.broker.tls?.certFile ?? ''), 'links');
    const [caFile, certFile, keyFile] = tlsFilesOf(definition);
    for (const file of [caFile, certFile, keyFile]) assert.equal(dirname(file ?? ''), linkDir);
    assert.equal(await readFile(certFile ?? '', 'utf8'), `${running.identity?.chainPem.trim()}\n`);
    assert.equal(definition['src-queue'], 'dmr.outbound.node-b');
    assert.match(String(definition['dest-uri']), /\/dmr-node-b\?/);

    const link = await waitFor('status.json to show the link', async () =>
      (await readLocalStatus(config.dataDir))?.links?.find((entry) => entry.peer === 'node-b'),
    );
    assert.ok(['starting', 'terminated'].includes(link.state), link.state);
    assert.equal(link.messages, 0);
    const metrics = await (await fetch(`${running.metricsUrl ?? ''}/metrics`)).text();
    assert.match(metrics, /^dmr_link_up\{peer="node-b"\} 0$/m);
    assert.match(metrics, /^dmr_link_backlog_messages\{peer="node-b"\} 0$/m);

    // A renewal writes new copies, the changed definition restarts the shovel, the old copies go.
    const renewed = await running.renewNow();
    assert.ok(renewed);
    const after = await management.getShovel(vhostName(NODE), 'dmr.link.node-b');
    const [, renewedCert] = tlsFilesOf(after ?? {});
    assert.notEqual(renewedCert, certFile);
    assert.equal(await readFile(renewedCert ?? '', 'utf8'), `${renewed.chainPem.trim()}\n`);
    await assert.rejects(access(certFile ?? ''), { code: 'ENOENT' });
    await assert.rejects(access(keyFile ?? ''), { code: 'ENOENT' });
  });

  it('cuts a denylisted peer off within a second of the change in CentOps: its link and its connection', async (t) => {
    await settle();
    // node-b's link into this node: a connection with node-b's node certificate, as its shovel would log in.
    const peer = await env.server.ca.issueWithKey({
      kind: 'node',
      id: 'node-b',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
    const connection = await connectWithCertificate({
      port: env.harness.node(0).amqpsPort,
      caPem: env.ca,
      certificatePem: peer.chainPem,
      privateKeyPem: peer.privateKeyPem,
      vhost: vhostName(NODE),
    });
    connection.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => connection.once('close', () => resolve(performance.now())));
    const started = performance.now();
    const denied = await env.api('/v1/denylist', {
      method: 'POST',
      body: { id: 'node-b', kind: 'node', reason: 'test: a compromised peer' },
    });
    assert.equal(denied.status, 201, denied.text);
    const closedAt = await Promise.race([closed, sleep(20_000).then(() => undefined)]);
    assert.ok(closedAt !== undefined, 'the connection was not closed within 20 s');
    const management = env.harness.management();
    await waitFor('the link to node-b deleted', async () =>
      (await management.getShovel(vhostName(NODE), 'dmr.link.node-b')) === undefined ? true : undefined,
    );
    const goneAt = performance.now();
    t.diagnostic(
      `# links denylisted peer: CentOps POST /v1/denylist → its connection closed ${Math.round(closedAt - started)} ms, its link deleted (seen) ${Math.round(goneAt - started)} ms`,
    );
    assert.ok(!(await users()).includes(nodeUser('node-b')));
  });

  it('a router process reads the state dir: routes on the last good document and follows new revisions', async () => {
    await settle();
    const running = await startRouterProcess({ config, shard: 0, logger: pino({ level: 'silent' }), pollMs: 200 });
    routers.push(running);
    assert.equal(running.revision, agent?.appliedRevision);
    const client = await env.enrolClient('police-bot');
    await settle();
    const connection = await connectWithCertificate({
      port: env.harness.node(0).amqpsPort,
      caPem: env.ca,
      certificatePem: client.chainPem,
      privateKeyPem: client.privateKeyPem,
      vhost: vhostName(NODE),
    });
    connection.on('error', () => undefined);
    try {
      const channel = await connection.createConfirmChannel();
      const send = (to: string) => {
        const messageId = randomUUID();
        return new Promise<string>((resolve, reject) => {
          channel.publish(
            'dmr.ingress',
            '',
            Buffer.from('{"text":"hello"}'),
            {
              persistent: true,
              messageId,
              userId: `spiffe://${TD}/client/police-bot`,
              type: 'ChatMessage',
              timestamp: Math.floor(Date.now() / 1000),
              headers: { 'dmr-recipient': to, 'dmr-version': 1 },
            },
            (error: unknown) =>
              error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(messageId),
          );
        });
      };
      const next = () =>
        waitFor('the router to answer', async () => {
          const message = await channel.get('dmr.client.police-bot', { noAck: true });
          return message === false ? undefined : message;
        });
      // Routed (if the policy allows it) or refused with a delivery report: either way this router handled it.
      const first = await send('police-bot');
      const answer = await next();
      assert.ok(
        answer.properties.messageId === first || answer.properties.correlationId === first,
        `unexpected message ${JSON.stringify(answer.properties)}`,
      );
      // The denylist reached the router through the state dir: a message to the denylisted client is refused.
      const second = await send('police-desk');
      const report = await next();
      assert.equal(report.properties.correlationId, second);
      assert.equal((JSON.parse(report.content.toString('utf8')) as { reason: string }).reason, 'RECIPIENT_DENIED');
    } finally {
      await connection.close().catch(() => undefined);
    }

    await env.server.store.create(
      'Client',
      {
        id: 'police-chat',
        organisation: 'police',
        homeNode: NODE,
        roles: [],
        labels: {},
        status: 'active',
        certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] },
      },
      'spiffe://dmr.test/operator/admin',
    );
    const revision = await settle();
    await waitFor('the router to apply the new revision', () => (running.revision === revision ? true : undefined));
  });

  it('supervises router child processes: a killed router is restarted', async () => {
    const restarts: number[] = [];
    const lines: string[] = [];
    // The children log at info: their "router consuming" line is the readiness signal.
    const configFile = await writeRunConfig(env.dir, 'node-a-routers.yaml', { ...env.runConfig, logLevel: 'info' });
    const supervisor = new RouterSupervisor({
      configFile,
      routers: 1,
      logger: pino({ level: 'silent' }),
      backoff: { initialMs: 100, maxMs: 500 },
      stdio: 'pipe',
      onRestart: (shard) => restarts.push(shard),
    });
    const watchOutput = () => {
      const child = supervisor.child(0);
      child?.stdout?.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n')));
      child?.stderr?.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n')));
    };
    supervisor.start();
    watchOutput();
    try {
      await waitFor(
        'the child router to consume',
        () => (lines.some((line) => line.includes('router consuming')) ? true : undefined),
        { timeoutMs: 30_000 },
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}; output: ${lines.join('\n').slice(0, 2000)}`);
      });
      const first = supervisor.pids[0];
      assert.ok(first);
      lines.length = 0;
      process.kill(first, 'SIGKILL');
      await waitFor('a restarted router', () => {
        const pid = supervisor.pids[0];
        return pid !== undefined && pid !== first ? pid : undefined;
      });
      watchOutput();
      await waitFor(
        'the restarted router to consume',
        () => (lines.some((line) => line.includes('router consuming')) ? true : undefined),
        { timeoutMs: 30_000 },
      );
      assert.deepEqual(restarts, [0]);
    } finally {
      await supervisor.stop();
    }
  });

  it('starts with a certificate that expired while it was down: renews it within the grace period and syncs', async () => {
    if (agent === undefined) {
      // Run on its own (--test-name-pattern): enrol first.
      await writeFile(join(env.dir, 'node-a.token'), `${await env.token(NODE, 'node')}\n`);
      agent = await startAgent();
    }
    await settle();
    await agent?.stop();
    agent = undefined;
    // Its current key under a certificate that expired an hour ago, issued by CentOps' own CA (as its last one was).
    const paths = dataPaths(config.dataDir);
    const key = await readFile(paths.keyFile, 'utf8');
    const csrPem = await createCsr({ id: NODE, kind: 'node', trustDomain: TD, privateKeyPem: key });
    // Valid from when CentOps' intermediate was (the chain is judged as it stood while the leaf was valid) until just now.
    const intermediate = new X509Certificate(
      (await readFile(paths.certificateFile, 'utf8')).split(/(?<=-----END CERTIFICATE-----)/)[1] ?? '',
    );
    const expired = await env.server.ca.issue({
      csrPem,
      kind: 'node',
      id: NODE,
      dns: ['localhost'],
      ips: ['127.0.0.1'],
      notBefore: new Date(intermediate.validFrom),
      notAfter: new Date(Date.now() - 1_000),
    });
    await writeFile(paths.certificateFile, expired.chainPem);
    agent = await startAgent();
    const renewed = agent.identity;
    assert.ok(renewed);
    assert.notEqual(renewed.serial, expired.serial.toLowerCase());
    assert.ok(renewed.notAfter.getTime() > Date.now(), 'a certificate valid now');
    assert.notEqual(await readFile(paths.keyFile, 'utf8'), key, 'for a new key');
    // And it works: the feed over mutual TLS with the new certificate brings the node in sync.
    await settle();
  });

  it('keeps running while CentOps is down, and a restart then starts from the last good document', async () => {
    await settle();
    const running = agent;
    assert.ok(running);
    const revision = running.appliedRevision;
    const usersBefore = await users();
    await env.server.close();
    await waitFor('the feed to notice', async () => {
      const text = await running.metrics.registry.getSingleMetricAsString('dmr_node_centops_connected');
      return /dmr_node_centops_connected 0/.test(text) ? true : undefined;
    });
    assert.equal(running.appliedRevision, revision);
    await running.stop();
    agent = await startAgent();
    assert.equal(agent.appliedRevision, revision);
    assert.deepEqual(await users(), usersBefore);
    const local = await readLocalStatus(config.dataDir);
    assert.equal(local?.appliedRevision, revision);
    assert.equal(local?.centopsConnected, false);
    // The router process never depended on CentOps.
    assert.equal(routers[0]?.router.state, 'running');
    assert.equal(routers[0]?.revision, revision);
  });

  it('does not trust a tampered last good document on disk (offline start)', async () => {
    const file = dataPaths(config.dataDir).configFile;
    const original = await readFile(file, 'utf8');
    const [header, payload, signature] = original.trim().split('.');
    const document = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as NodeConfig;
    const forged = Buffer.from(JSON.stringify({ ...document, clients: [] })).toString('base64url');
    await agent?.stop();
    await writeFile(file, `${header}.${forged}.${signature}\n`);
    try {
      agent = await startAgent();
      assert.equal(agent.appliedRevision, undefined);
      // The broker layout is left as the last good document made it.
      assert.ok((await users()).includes(clientUser('police-bot')));
    } finally {
      await writeFile(file, original);
    }
  });

  it('dmr node run (agent + a router child) starts offline from disk and stops cleanly on SIGTERM', async () => {
    await agent?.stop();
    agent = undefined;
    const file = await writeRunConfig(env.dir, 'node-a-run.yaml', {
      ...env.runConfig,
      routers: 1,
      logLevel: 'info',
    });
    const entry = new URL('./index.js', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(entry)}); await m.runNode(await m.loadRunConfig(process.env.DMR_RUN_CONFIG));`,
      ],
      { env: { ...process.env, DMR_RUN_CONFIG: file }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('the router child to consume', () => (output.includes('router consuming') ? true : undefined), {
        timeoutMs: 30_000,
      });
      child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(30_000).then(() => 'timeout' as const)]);
      assert.equal(code, 0, output.slice(-2000));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const lines = output.split('\n').filter((line) => line.trim() !== '');
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line) as unknown, line);
    assert.doesNotMatch(output, /PRIVATE KEY|BEGIN CERTIFICATE/);
    assert.ok(lines.some((line) => line.includes('last good document loaded')));
  });
});
