/**
 * `dmr ctl` end to end: a real CentOps (mutual TLS, SQLite in a temp
 * directory) is set up as `dmr centops init --dev` does and started in this
 * process on ephemeral ports; the CLI runs with a config file like the
 * admin.yaml init writes. It runs in this process (runDmrInProcess: a `dmr
 * ctl` child costs about 1.3 s of CPU and this file ran about 60,
 * docs/decisions/0038-ci-time.md), except the runs that read standard
 * input, which are real `dmr` children: they keep the binary's exit codes
 * and error report covered here. Children are spawned asynchronously: the
 * server shares this process's event loop and would never answer a
 * spawnSync.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { CentOpsServer } from '@dmr/centops';
import { createCsr, generatePrivateKey, normaliseSerial, parseCrls } from '@dmr/pki';
import { freePort, startTestCentOps, type TestCentOps } from '@dmr/testkit';
import { CentOpsClient } from './client.js';
import { runDmrInProcess, words, type DmrRun as Run } from '../../test-support.js';

const TD = 'dmr.test';
const run = runDmrInProcess;

const REGISTRY = `
kind: Organisation
spec: { id: police, name: Police, labels: {} }
---
kind: Node
spec:
  id: dmr-tallinn
  amqpsEndpoint: amqps://dmr-tallinn.dmr.example.ee:5671
  managementEndpoint: https://dmr-tallinn.dmr.example.ee:15671
  labels: { region: ee }
  certificateProfile: { keyAlgorithm: ecdsa-p256, lifetime: 7d, extraDns: [dmr-tallinn.dmr.example.ee], extraIps: [] }
---
kind: node
spec:
  id: dmr-tartu
  amqpsEndpoint: amqps://dmr-tartu.dmr.example.ee:5671
  managementEndpoint: https://dmr-tartu.dmr.example.ee:15671
  labels: { region: ee }
  certificateProfile: { keyAlgorithm: ecdsa-p256, lifetime: 7d, extraDns: [dmr-tartu.dmr.example.ee], extraIps: [] }
---
kind: Link
spec: { id: dmr-tallinn--dmr-tartu, nodes: [dmr-tallinn, dmr-tartu], cost: 10 }
---
kind: Client
spec:
  id: police-bot
  organisation: police
  homeNode: dmr-tallinn
  roles: [chatbot]
  labels: {}
  status: active
  certificateProfile: { keyAlgorithm: ecdsa-p256, lifetime: 7d, extraDns: [], extraIps: [] }
---
`;

describe('dmr ctl against a real CentOps', () => {
  let centops: TestCentOps | undefined;
  let dir: string;
  let server: CentOpsServer;
  let adminConfig: string;
  let viewerConfig: string;
  let centopsDir: string;
  const ctl = (...args: string[]) => run(['ctl', '--config', adminConfig, ...args], { cwd: dir });
  const json = <T>(result: Run): T => {
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as T;
  };
  const revision = async () => json<{ revision: number }>(await ctl('-o', 'json', 'status')).revision;

  async function writeConfig(name: string, fields: Record<string, unknown>): Promise<string> {
    const file = join(dir, name);
    await writeFile(file, stringify({ apiVersion: 'dmr/v1', kind: 'CentOpsClientConfig', ...fields }), { mode: 0o600 });
    return file;
  }

  before(async () => {
    // An empty registry: the tests fill it through `dmr ctl apply`.
    centops = await startTestCentOps({ label: 'ctl', trustDomain: TD, organisations: {}, nodes: [], clients: [] });
    ({ dir, server, centopsDir } = centops);
    // admin.yaml as init writes it, but with the ports this server actually got; paths relative to the file.
    adminConfig = await writeConfig('centops/admin-test.yaml', {
      endpoint: server.apiUrl,
      enrolEndpoint: server.enrolUrl,
      caBundle: 'ca/root.crt',
      clientCertificate: '../centops-admin/admin.crt',
      clientKey: '../centops-admin/admin.key',
    });
    const viewer = await server.ca.issueWithKey({ kind: 'operator', id: 'vera', role: 'viewer' });
    await writeFile(join(dir, 'vera.crt'), viewer.chainPem);
    await writeFile(join(dir, 'vera.key'), viewer.privateKeyPem, { mode: 0o600 });
    viewerConfig = await writeConfig('viewer.yaml', {
      endpoint: server.apiUrl,
      caBundle: join(centopsDir, 'ca/root.crt'),
      clientCertificate: 'vera.crt',
      clientKey: 'vera.key',
    });
    await writeFile(join(dir, 'registry.yaml'), REGISTRY);
  });

  after(async () => {
    await centops?.close();
  });

  it('apply --dry-run shows the diff and changes nothing', async () => {
    const dry = await ctl('apply', '-f', 'registry.yaml', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /^\+ created {3}Organisation\/police$/m);
    assert.match(dry.stdout, /^\+ created {3}Client\/police-bot$/m);
    assert.match(dry.stdout, /dry run: 5 created, 0 updated, 0 unchanged, 0 deleted; would be revision 1 \(now 0\)/);
    assert.equal(await revision(), 0);
    const nodes = json<{ items: unknown[] }>(await ctl('-o', 'json', 'get', 'nodes'));
    assert.equal(nodes.items.length, 0);
  });

  it('an invalid apply lists every problem, exits VALIDATION_FAILED and changes nothing', async () => {
    const bad = `${REGISTRY}
kind: Client
spec: { id: tax-bot, organisation: no-such-org, homeNode: no-such-node, roles: [], labels: {}, status: active,
        certificateProfile: { keyAlgorithm: ecdsa-p256, lifetime: 7d, extraDns: [], extraIps: [] } }
---
kind: Link
spec: { id: dmr-tallinn--dmr-tartu, nodes: [dmr-tallinn, dmr-tartu], cost: 0 }
`;
    const refused = await run(['ctl', '--config', adminConfig, 'apply', '-f', '-'], { cwd: dir, input: bad });
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /^error\[VALIDATION_FAILED\]/);
    assert.match(refused.stderr, /tax-bot.*organisation.*no-such-org/);
    assert.match(refused.stderr, /tax-bot.*homeNode.*no-such-node/);
    assert.match(refused.stderr, /cost.*document 7, Link\/dmr-tallinn--dmr-tartu/);
    assert.ok(refused.stderr.split('\n').filter((line) => line.startsWith('  - ')).length >= 3, refused.stderr);
    assert.equal(await revision(), 0);

    // Envelope mistakes are all reported before anything is sent.
    const envelope = await run(['ctl', '--config', adminConfig, 'apply', '-f', '-'], {
      cwd: dir,
      input: 'kind: Widget\nspec: {}\n---\nkind: Node\n---\n- a list\n',
    });
    assert.equal(envelope.status, 2);
    assert.match(envelope.stderr, /documents\[1\]\.kind: "Widget"/);
    assert.match(envelope.stderr, /documents\[2\]\.spec: is required/);
    assert.match(envelope.stderr, /documents\[3\]: must be a mapping/);
  });

  it('apply, get, describe and delete round trip; a stale --if-match is refused', async () => {
    const applied = await ctl('apply', '-f', 'registry.yaml');
    assert.equal(applied.status, 0, applied.stderr);
    assert.match(applied.stdout, /applied: 5 created.*revision 0 → 1/);

    const table = await ctl('get', 'clients');
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /^ID +ORGANISATION +HOME NODE +STATUS +ROLES +VERSION$/m);
    assert.match(table.stdout, /^police-bot +police +dmr-tallinn +active +chatbot +1$/m);

    const firstPage = json<{ items: Array<{ spec: { id: string } }>; next: string | null }>(
      await ctl('-o', 'json', 'get', 'nodes', '--limit', '1'),
    );
    assert.equal(firstPage.items.length, 1);
    assert.notEqual(firstPage.next, null);
    const all = json<{ items: Array<{ spec: { id: string } }>; next: null }>(
      await ctl('get', 'node', '--limit', '1', '--all', '-o', 'json'),
    );
    assert.deepEqual(
      all.items.map((item) => item.spec.id),
      ['dmr-tallinn', 'dmr-tartu'],
    );

    const described = await ctl('describe', 'organisation', 'police');
    assert.equal(described.status, 0, described.stderr);
    assert.match(described.stdout, /^version: +1$/m);
    assert.match(described.stdout, /^revision: +1$/m);
    assert.match(described.stdout, /^ {2}name: Police$/m);
    const yaml = await ctl('-o', 'yaml', 'describe', 'organisation', 'police');
    assert.match(yaml.stdout, /^spec:\n {2}id: police$/m);

    const created = await ctl('create', 'organisation', 'tax', '--name', 'Tax Board', '--label', 'sector=finance');
    assert.equal(created.status, 0, created.stderr);
    const again = await ctl('create', 'organisation', 'tax');
    assert.equal(again.status, 4);
    assert.match(again.stderr, /^error\[CONFLICT\]/);

    const stale = await ctl('delete', 'organisation', 'tax', '--if-match', '7');
    assert.equal(stale.status, 4);
    assert.match(stale.stderr, /^error\[PRECONDITION_FAILED\]/);
    assert.match(stale.stderr, /hint:/);
    const deleted = await ctl('delete', 'organisation', 'tax', '--if-match', '1');
    assert.equal(deleted.status, 0, deleted.stderr);
    const gone = await ctl('get', 'organisation', 'tax');
    assert.equal(gone.status, 3);
    assert.match(gone.stderr, /^error\[NOT_FOUND\]/);

    const referenced = await ctl('delete', 'node', 'dmr-tallinn');
    assert.equal(referenced.status, 2, 'a node with a client and a link is not deleted');
    assert.match(referenced.stderr, /^error\[VALIDATION_FAILED\]/);
  });

  it('export → apply is unchanged, and a dry run of an edit shows the field-level diff', async () => {
    const exported = await ctl('export');
    assert.equal(exported.status, 0, exported.stderr);
    await writeFile(join(dir, 'export.yaml'), exported.stdout);
    const before = await revision();
    const reapplied = await ctl('apply', '-f', 'export.yaml');
    assert.equal(reapplied.status, 0, reapplied.stderr);
    assert.match(reapplied.stdout, /applied: 0 created, 0 updated, 5 unchanged, 0 deleted; nothing changed/);
    assert.equal(await revision(), before);

    await writeFile(join(dir, 'edit.yaml'), exported.stdout.replace('cost: 10', 'cost: 25'));
    const dry = await ctl('apply', '-f', 'edit.yaml', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /^~ updated {3}Link\/dmr-tallinn--dmr-tartu\n {6}cost: 10 → 25$/m);
    assert.equal(await revision(), before);
  });

  it('token create + cert request enrols a client with a key that never leaves the test directory', async () => {
    const token = json<{ token: string; kind: string }>(
      await ctl('-o', 'json', 'token', 'create', '--id', 'police-bot', '--ttl', '10m'),
    );
    assert.equal(token.kind, 'client');
    const enrolled = await ctl(
      ...words(`-o json cert request --token ${token.token} --id police-bot --kind client --key bot.key --out bot.crt`),
    );
    const issued = json<{ serial: string; keyGenerated: boolean }>(enrolled);
    assert.equal(issued.keyGenerated, true);
    assert.equal((await stat(join(dir, 'bot.key'))).mode & 0o777, 0o600);
    const key = await readFile(join(dir, 'bot.key'), 'utf8');
    const certificate = new X509Certificate(await readFile(join(dir, 'bot.crt'), 'utf8'));
    assert.ok(certificate.checkPrivateKey(createPrivateKey(key)), 'the certificate is for the local key');
    assert.match(certificate.subjectAltName ?? '', /spiffe:\/\/dmr\.test\/client\/police-bot/);
    // The server keeps nothing of the private key: its base64 body is not in the database.
    const keyBody = key
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('-----'))
      .join('');
    assert.ok(!(await readFile(join(centopsDir, 'centops.db'))).toString('latin1').includes(keyBody.slice(0, 40)));

    const reused = await ctl(
      ...words(`cert request --token ${token.token} --id police-bot --kind client --key bot.key --out bot2.crt`),
    );
    assert.equal(reused.status, 9);
    assert.match(reused.stderr, /^error\[TOKEN_INVALID\]/);

    // Renewal proves the identity with the current certificate; revocation puts the serial on the CRL.
    const renewed = json<{ serial: string }>(
      await ctl('-o', 'json', 'cert', 'renew', '--key', 'bot.key', '--cert', 'bot.crt', '--out', 'bot.new.crt'),
    );
    assert.notEqual(renewed.serial, issued.serial);
    const revoked = await ctl('cert', 'revoke', '--serial', issued.serial, '--reason', 'keyCompromise');
    assert.equal(revoked.status, 0, revoked.stderr);
    assert.match(revoked.stdout, /denylisted: +yes/);
    const client = new CentOpsClient({
      baseUrl: server.enrolUrl,
      ca: await readFile(join(centopsDir, 'ca/root.crt'), 'utf8'),
      trustDomain: TD,
    });
    const crl = (await client.request<string>('GET', '/v1/pki/crl')).text;
    const [parsed] = parseCrls(crl);
    assert.ok(parsed?.entries.some((entry) => normaliseSerial(entry.serialNumber) === normaliseSerial(issued.serial)));
  });

  it('a node enrolled with cert request reports its status; ctl status shows it', async () => {
    const token = json<{ token: string }>(
      await ctl('-o', 'json', 'token', 'create', '--id', 'dmr-tartu', '--kind', 'node'),
    );
    const enrolled = await ctl(
      ...words(
        `cert request --token ${token.token} --id dmr-tartu --kind node --dns dmr-tartu.dmr.example.ee --key tartu.key --out tartu.crt`,
      ),
    );
    assert.equal(enrolled.status, 0, enrolled.stderr);
    const current = await revision();
    const asNode = new CentOpsClient({
      baseUrl: server.apiUrl,
      ca: await readFile(join(centopsDir, 'ca/root.crt'), 'utf8'),
      trustDomain: TD,
      cert: await readFile(join(dir, 'tartu.crt'), 'utf8'),
      key: await readFile(join(dir, 'tartu.key'), 'utf8'),
    });
    const config = await asNode.request<string>('GET', '/v1/nodes/dmr-tartu/config');
    assert.equal(config.headers.etag, `"${current}"`);
    await asNode.request('PUT', '/v1/nodes/dmr-tartu/status', { body: { appliedRevision: current } });

    const table = await ctl('status');
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`^revision: ${current}$`, 'm'));
    assert.match(table.stdout, new RegExp(`^dmr-tartu +${current} +up to date `, 'm'));
    assert.match(table.stdout, /^dmr-tallinn +- +never reported /m);
    const status = json<{ nodes: Array<{ id: string; appliedRevision: number | null; upToDate: boolean }> }>(
      await ctl('-o', 'json', 'status'),
    );
    const tartu = status.nodes.find((entry) => entry.id === 'dmr-tartu');
    assert.deepEqual([tartu?.appliedRevision, tartu?.upToDate], [current, true]);
  });

  it('a viewer reads but cannot write (FORBIDDEN)', async () => {
    const read = await run(['ctl', '--config', viewerConfig, 'get', 'nodes'], { cwd: dir });
    assert.equal(read.status, 0, read.stderr);
    const write = await run(['ctl', '--config', viewerConfig, 'apply', '-f', 'registry.yaml'], { cwd: dir });
    assert.equal(write.status, 9);
    assert.match(write.stderr, /^error\[FORBIDDEN\]/);
    assert.match(write.stderr, /hint:/);
    const token = await run(['ctl', 'token', 'create', '--id', 'police-bot'], {
      cwd: dir,
      env: { DMR_CONFIG: viewerConfig },
    });
    assert.equal(token.status, 9, 'DMR_CONFIG is honoured');
  });

  it('a bad config file is a clear error naming the field', async () => {
    const missingKey = await writeConfig('half.yaml', {
      endpoint: server.apiUrl,
      caBundle: 'x',
      clientCertificate: 'vera.crt',
    });
    const half = await run(['ctl', '--config', missingKey, 'get', 'nodes'], { cwd: dir });
    assert.equal(half.status, 2);
    assert.match(half.stderr, /^error\[CLI_CONFIG_INVALID\]: .*half\.yaml: clientKey is required/);
    const typo = await writeConfig('typo.yaml', { endpont: server.apiUrl, caBundle: 'x' });
    const typoRun = await run(['ctl', '--config', typo, 'status'], { cwd: dir });
    assert.match(typoRun.stderr, /endpont is not a known field/);
    const http = await writeConfig('http.yaml', { endpoint: 'http://127.0.0.1:1', caBundle: 'x' });
    assert.match(
      (await run(['ctl', '--config', http, 'status'], { cwd: dir })).stderr,
      /endpoint must be an https:\/\/ URL/,
    );
    const none = await run(['ctl', '--config', join(dir, 'nope.yaml'), 'status'], { cwd: dir });
    assert.equal(none.status, 2);
    assert.match(none.stderr, /cannot read the CLI config .*nope\.yaml \(from --config\): no such file/);
    assert.match(none.stderr, /hint: .*DMR_CONFIG/);
  });

  it('a server that is down is a clear error with a hint', async () => {
    const port = await freePort();
    const down = await writeConfig('down.yaml', {
      endpoint: `https://127.0.0.1:${port}`,
      caBundle: join(centopsDir, 'ca/root.crt'),
      clientCertificate: join(`${centopsDir}-admin`, 'admin.crt'),
      clientKey: join(`${centopsDir}-admin`, 'admin.key'),
    });
    const result = await run(['ctl', '--config', down, 'get', 'nodes'], { cwd: dir });
    assert.equal(result.status, 11);
    assert.match(
      result.stderr,
      new RegExp(`^error\\[CENTOPS_UNREACHABLE\\]: cannot reach CentOps at https://127\\.0\\.0\\.1:${port}`),
    );
    assert.match(result.stderr, /hint: is `dmr centops serve` running/);
  });

  it('a client applied without certificateProfile gets the default profile', async () => {
    await writeFile(
      join(dir, 'tax-bot.yaml'),
      'kind: Client\nspec: { id: tax-bot, organisation: police, homeNode: dmr-tallinn, roles: [], labels: {}, status: active }\n',
    );
    const applied = await ctl('apply', '-f', 'tax-bot.yaml');
    assert.equal(applied.status, 0, applied.stderr);
    const stored = json<{ spec: { certificateProfile: unknown } }>(await ctl('-o', 'json', 'get', 'client', 'tax-bot'));
    assert.deepEqual(stored.spec.certificateProfile, {
      keyAlgorithm: 'ecdsa-p256',
      lifetime: '7d',
      extraDns: [],
      extraIps: [],
    });
  });

  it('token create for an id that is neither a client nor a node says so, and how to find the id', async () => {
    const unknown = await ctl('token', 'create', '--id', 'no-such-bot');
    assert.equal(unknown.status, 3, unknown.stderr);
    assert.match(unknown.stderr, /^error\[NOT_FOUND\]: no client or node "no-such-bot" is registered$/m);
    assert.match(unknown.stderr, /hint: .*dmr ctl get clients/);
    const wrongKind = await ctl('token', 'create', '--id', 'police-bot', '--kind', 'node');
    assert.match(wrongKind.stderr, /^error\[NOT_FOUND\]: Node police-bot does not exist$/m);
  });

  it('denylist add, list and lift; a viewer may list but not add', async () => {
    const help = await ctl('denylist', '--help');
    assert.match(help.stdout, /list .*\n.*add .*\n.*lift /s);
    const added = json<{ id: string; kind: string; denylisted: boolean }>(
      await ctl('-o', 'json', 'denylist', 'add', 'tax-bot', '--kind', 'client', '--reason', 'test leak'),
    );
    assert.deepEqual([added.id, added.kind, added.denylisted], ['tax-bot', 'client', true]);
    const listed = await ctl('denylist', 'list');
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^ID +KIND +SINCE +BY +REASON$/m);
    assert.match(listed.stdout, /^tax-bot +client +\S+ +\S+ +test leak$/m);
    const asViewer = (...args: string[]) => run(['ctl', '--config', viewerConfig, ...args], { cwd: dir });
    assert.equal((await asViewer('denylist', 'list')).status, 0);
    assert.equal((await asViewer('denylist', 'add', 'police-bot', '--kind', 'client', '--reason', 'x')).status, 9);
    const missing = await ctl('denylist', 'add', 'tax-bot');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--kind is required/);
    const lifted = await ctl('denylist', 'lift', 'tax-bot');
    assert.equal(lifted.status, 0, lifted.stderr);
    assert.match(lifted.stdout, /^lifted: +tax-bot$/m);
    // police-bot stays: an earlier test revoked its certificate, which denylisted it.
    assert.doesNotMatch((await ctl('denylist', 'list')).stdout, /^tax-bot /m);
    assert.equal((await ctl('denylist', 'lift', 'tax-bot')).status, 3);
  });

  it('operator add issues a certificate with a role from a local key or a CSR; operator list shows the roles', async () => {
    const help = await ctl('operator', 'add', '--help');
    assert.match(help.stdout, /--role <role>/);
    const made = json<{ role: string; keyGenerated: boolean }>(
      await ctl(...words(`-o json operator add olga --role operator --key olga.key --out olga.crt`)),
    );
    assert.deepEqual([made.role, made.keyGenerated], ['operator', true]);
    assert.equal((await stat(join(dir, 'olga.key'))).mode & 0o777, 0o600);
    const olga = new X509Certificate(await readFile(join(dir, 'olga.crt'), 'utf8'));
    assert.match(olga.subjectAltName ?? '', /spiffe:\/\/dmr\.test\/operator\/olga/);
    // The new certificate works: olga reads the registry with it.
    const olgaConfig = await writeConfig('olga.yaml', {
      endpoint: server.apiUrl,
      caBundle: join(centopsDir, 'ca/root.crt'),
      clientCertificate: 'olga.crt',
      clientKey: 'olga.key',
    });
    assert.equal((await run(['ctl', '--config', olgaConfig, 'get', 'nodes'], { cwd: dir })).status, 0);
    // An operator may not make operators.
    const refused = await run(
      [
        'ctl',
        '--config',
        olgaConfig,
        'operator',
        'add',
        'oscar',
        '--role',
        'admin',
        '--key',
        'o.key',
        '--out',
        'o.crt',
      ],
      { cwd: dir },
    );
    assert.equal(refused.status, 9, refused.stderr);
    assert.equal(
      (await ctl('operator', 'add', 'x', '--role', 'viewer', '--out', 'x.crt')).stderr.split('\n')[0],
      'error[INVALID_ARGUMENT]: give exactly one of --csr or --key',
    );
    // The preferred way: the operator's own key and CSR; only the CSR reaches the admin.
    const csr = await createCsr({
      id: 'oscar',
      kind: 'operator',
      role: 'viewer',
      trustDomain: TD,
      privateKeyPem: await generatePrivateKey('ecdsa-p256'),
    });
    await writeFile(join(dir, 'oscar.csr'), csr);
    const fromCsr = await ctl(...words(`operator add oscar --role viewer --csr oscar.csr --out oscar.crt`));
    assert.equal(fromCsr.status, 0, fromCsr.stderr);
    const list = await ctl('operator', 'list');
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^admin +admin +1 /m);
    assert.match(list.stdout, /^olga +operator +1 /m);
    assert.match(list.stdout, /^oscar +viewer +1 /m);
  });

  it("refuses another node's certificate posing as CentOps: no operator request, no token reaches it", async () => {
    // A node key of the same CA with the same host names as CentOps: chain and host name check out.
    const stolen = await server.ca.issueWithKey({
      kind: 'node',
      id: 'dmr-tartu',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
    const received: string[] = [];
    const impostor = createHttpsServer({ cert: stolen.chainPem, key: stolen.privateKeyPem }, (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        received.push(`${request.method ?? ''} ${request.url ?? ''} ${Buffer.concat(chunks).toString('utf8')}`);
        response.writeHead(200, { 'content-type': 'application/json' }).end('[]');
      });
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
      const fooled = await writeConfig('impostor.yaml', {
        endpoint: url,
        enrolEndpoint: url,
        caBundle: join(centopsDir, 'ca/root.crt'),
        clientCertificate: join(`${centopsDir}-admin`, 'admin.crt'),
        clientKey: join(`${centopsDir}-admin`, 'admin.key'),
      });
      const listed = await run(['ctl', '--config', fooled, 'get', 'nodes'], { cwd: dir });
      assert.equal(listed.status, 9, listed.stderr);
      assert.match(
        listed.stderr,
        /^error\[SERVER_IDENTITY_MISMATCH\]: the server contacted as CentOps at 127\.0\.0\.1 presented spiffe:\/\/dmr\.test\/node\/dmr-tartu, not spiffe:\/\/dmr\.test\/centops\/api/,
      );
      assert.match(listed.stderr, /hint: .*impostor\.yaml/);
      const asJson = await run(['ctl', '--config', fooled, '-o', 'json', 'get', 'nodes'], { cwd: dir });
      const body = JSON.parse(asJson.stdout || asJson.stderr) as {
        error: { code: string; details: Record<string, unknown> };
      };
      assert.equal(body.error.code, 'SERVER_IDENTITY_MISMATCH');
      assert.deepEqual(body.error.details.presented, ['spiffe://dmr.test/node/dmr-tartu']);
      assert.equal(body.error.details.expected, 'spiffe://dmr.test/centops/api');

      // Enrolment (no client certificate, trust domain from the CA bundle): the token never leaves.
      const token = { token: 'a-token-only-centops-may-see' };
      const enrolled = await run(
        [
          'ctl',
          '--config',
          fooled,
          'cert',
          'request',
          '--token',
          token.token,
          '--id',
          'police-bot',
          '--kind',
          'client',
          '--key',
          'x.key',
          '--out',
          'x.crt',
        ],
        { cwd: dir },
      );
      assert.equal(enrolled.status, 9, enrolled.stderr);
      assert.match(enrolled.stderr, /^error\[SERVER_IDENTITY_MISMATCH\]/);
      // A round trip: the impostor is up and answers a chain-only client; it has seen nothing else.
      const ca = await readFile(join(centopsDir, 'ca/root.crt'), 'utf8');
      const probe = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest(`${url}/probe`, { ca, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(probe, 200);
      assert.deepEqual(received, ['GET /probe ']);
    } finally {
      impostor.closeAllConnections();
      await new Promise<void>((resolve) => impostor.close(() => resolve()));
    }
  });
});
