import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_CLIENT_CERTIFICATE_PROFILE,
  type Client,
  type DmrNode,
  type ResourceKind,
  type ResourceSpecs,
} from '../model.js';
import { client, link, node, organisation, profile } from './test-support/fixtures.js';
import {
  findDuplicates,
  validateChange,
  validateRegistry,
  validateSpec,
  validationError,
  type Problem,
  type RegistryContents,
} from './validate.js';

function paths(problems: readonly Problem[]): string[] {
  return problems.map((problem) => problem.path);
}

function registry(specs: { [K in ResourceKind]?: ResourceSpecs[K][] }): RegistryContents {
  const map = <S extends { id: string }>(list: S[] = []) => new Map(list.map((spec) => [spec.id, spec]));
  return {
    Organisation: map(specs.Organisation),
    Client: map(specs.Client),
    Node: map(specs.Node),
    Link: map(specs.Link),
  };
}

describe('validateSpec', () => {
  it('accepts valid specs of every kind', () => {
    assert.deepEqual(validateSpec('Organisation', organisation('police')), []);
    assert.deepEqual(validateSpec('Node', node('dmr-tallinn')), []);
    assert.deepEqual(validateSpec('Client', client('police-bot', 'police', 'dmr-tallinn')), []);
    assert.deepEqual(validateSpec('Link', link('dmr-tartu', 'dmr-tallinn')), []);
    // A lowercase UUID is a valid id: today's Bürokratt agents use them.
    assert.deepEqual(validateSpec('Organisation', organisation('0d6f1c3e-8d4a-4b5e-9d7f-2a1b3c4d5e6f')), []);
  });

  it('refuses what is not an object', () => {
    assert.deepEqual(paths(validateSpec('Organisation', null)), ['spec']);
    assert.deepEqual(paths(validateSpec('Organisation', ['x'])), ['spec']);
  });

  it('reports every problem of a spec, not just the first', () => {
    const problems = validateSpec('Organisation', { id: 'Police!', name: ' ', color: 'blue' });
    assert.deepEqual(paths(problems).sort(), ['spec.color', 'spec.id', 'spec.labels', 'spec.name']);
    assert.match(problems.find((p) => p.path === 'spec.color')?.message ?? '', /not a known field/);
    assert.match(problems.find((p) => p.path === 'spec.labels')?.message ?? '', /required/);
  });

  it('checks label keys and values', () => {
    const problems = validateSpec('Organisation', organisation('police', { labels: { Bad: 'x', ok: 5 } as never }));
    assert.deepEqual(paths(problems).sort(), ['spec.labels.Bad', 'spec.labels.ok']);
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    assert.deepEqual(paths(validateSpec('Organisation', organisation('police', { labels: tooMany }))), ['spec.labels']);
  });

  it('checks client roles, status and certificate profile', () => {
    const spec = client('police-bot', 'police', 'dmr-tallinn', {
      roles: ['chatbot', 'chatbot', 'Bad Role'],
      status: 'paused' as never,
      certificateProfile: profile({ keyAlgorithm: 'dsa-1024' as never, lifetime: '30m', extraDns: ['x.example.ee'] }),
    });
    const problems = validateSpec('Client', spec);
    assert.deepEqual(paths(problems).sort(), [
      'spec.certificateProfile.extraDns',
      'spec.certificateProfile.keyAlgorithm',
      'spec.certificateProfile.lifetime',
      'spec.roles[1]',
      'spec.roles[2]',
      'spec.status',
    ]);
    assert.match(problems.find((p) => p.path.endsWith('extraDns'))?.message ?? '', /client certificate/);
  });

  it('keeps certificate lifetimes between 1h and 90d', () => {
    const lifetime = (value: string) =>
      paths(validateSpec('Client', client('c1', 'o1', 'n1', { certificateProfile: profile({ lifetime: value }) })));
    assert.deepEqual(lifetime('1h'), []);
    assert.deepEqual(lifetime('90d'), []);
    assert.deepEqual(lifetime('59m'), ['spec.certificateProfile.lifetime']);
    assert.deepEqual(lifetime('91d'), ['spec.certificateProfile.lifetime']);
    assert.deepEqual(lifetime('24'), ['spec.certificateProfile.lifetime']);
  });

  it('lets nodes have valid extra SANs only', () => {
    const ok = node('dmr-tallinn', {
      certificateProfile: profile({ extraDns: ['a.example.ee'], extraIps: ['10.0.0.1', '::1'] }),
    });
    assert.deepEqual(validateSpec('Node', ok), []);
    const bad = node('dmr-tallinn', {
      certificateProfile: profile({ extraDns: ['-bad-.ee'], extraIps: ['10.0.0.300'] }),
    });
    assert.deepEqual(paths(validateSpec('Node', bad)).sort(), [
      'spec.certificateProfile.extraDns[0]',
      'spec.certificateProfile.extraIps[0]',
    ]);
  });

  it('requires amqps:// and https:// endpoints without credentials', () => {
    const bad = node('dmr-tallinn', {
      amqpsEndpoint: 'amqp://user:secret@host:5672/vhost',
      managementEndpoint: 'http://host:15672?x=1',
    });
    const problems = validateSpec('Node', bad);
    const amqps = problems.filter((p) => p.path === 'spec.amqpsEndpoint').map((p) => p.message);
    assert.equal(amqps.length, 3, amqps.join('; ')); // scheme, credentials, path
    const https = problems.filter((p) => p.path === 'spec.managementEndpoint').map((p) => p.message);
    assert.equal(https.length, 2, https.join('; ')); // scheme, query
    assert.deepEqual(paths(validateSpec('Node', node('n1', { amqpsEndpoint: 'not a url' }))), ['spec.amqpsEndpoint']);
    assert.deepEqual(validateSpec('Node', node('n1', { managementEndpoint: 'https://proxy.example.ee/rabbit/' })), []);
  });

  it('checks links: two different nodes, id from the pair, positive integer cost', () => {
    assert.deepEqual(validateSpec('Link', { id: 'aa--bb', nodes: ['bb', 'aa'], cost: 1 }), []);
    const problems = validateSpec('Link', { id: 'aa--aa', nodes: ['aa', 'aa'], cost: 0 });
    assert.deepEqual(paths(problems).sort(), ['spec.cost', 'spec.nodes']);
    assert.deepEqual(paths(validateSpec('Link', { id: 'aa--bb', nodes: ['bb', 'aa'], cost: 1.5 })), ['spec.cost']);
    assert.deepEqual(paths(validateSpec('Link', { id: 'bb--aa', nodes: ['aa', 'bb'], cost: 1 })), ['spec.id']);
    assert.deepEqual(paths(validateSpec('Link', { id: 'aa--bb', nodes: ['aa'], cost: 1 })), ['spec.nodes']);
  });
});

describe('validateChange', () => {
  it('checks op, kind, expectedVersion and fields, with the change path', () => {
    const { problems } = validateChange({ op: 'replace', kind: 'Robot', expectedVersion: 0, extra: 1 }, 'changes[4]');
    assert.deepEqual(paths(problems).sort(), [
      'changes[4].expectedVersion',
      'changes[4].extra',
      'changes[4].kind',
      'changes[4].op',
    ]);
  });

  it('returns the checked change with its id', () => {
    const { problems, change } = validateChange(
      { op: 'upsert', kind: 'Organisation', spec: organisation('police') },
      '',
    );
    assert.deepEqual(problems, []);
    assert.equal(change?.id, 'police');
    const deletion = validateChange({ op: 'delete', kind: 'Link', id: 'a1--b1', expectedVersion: 3 }, '');
    assert.deepEqual(deletion.change, { op: 'delete', kind: 'Link', id: 'a1--b1', expectedVersion: 3 });
  });

  it('gives a client without a certificate profile the default one, and nodes none', () => {
    const bare: Partial<Client> = client('bot', 'police', 'n1');
    delete bare.certificateProfile;
    const { problems, change } = validateChange({ op: 'create', kind: 'Client', spec: bare }, '');
    assert.deepEqual(problems, []);
    assert.deepEqual(change !== undefined && change.op !== 'delete' ? change.spec : undefined, {
      ...bare,
      certificateProfile: DEFAULT_CLIENT_CERTIFICATE_PROFILE,
    });
    // A profile that is there is checked, never replaced.
    const given = validateChange(
      { op: 'create', kind: 'Client', spec: { ...bare, certificateProfile: { ...profile(), lifetime: '1m' } } },
      '',
    );
    assert.deepEqual(paths(given.problems), ['spec.certificateProfile.lifetime']);
    const bareNode: Partial<DmrNode> = node('n1');
    delete bareNode.certificateProfile;
    assert.deepEqual(paths(validateChange({ op: 'create', kind: 'Node', spec: bareNode }, '').problems), [
      'spec.certificateProfile',
    ]);
  });

  it('refuses a delete with a spec and an upsert with an id', () => {
    const deletion = validateChange({ op: 'delete', kind: 'Node', spec: node('n1') }, 'changes[0]');
    assert.deepEqual(paths(deletion.problems).sort(), ['changes[0].id', 'changes[0].spec']);
    const upsert = validateChange({ op: 'upsert', kind: 'Node', id: 'n1', spec: node('n1') }, 'changes[1]');
    assert.deepEqual(paths(upsert.problems), ['changes[1].id']);
  });

  it('puts spec problems under the change path', () => {
    const { problems } = validateChange({ op: 'create', kind: 'Organisation', spec: { id: 'x' } }, 'changes[2]');
    assert.deepEqual(paths(problems).sort(), ['changes[2].spec.id', 'changes[2].spec.labels', 'changes[2].spec.name']);
    // A wrong op does not hide the spec's own problems.
    const both = validateChange({ op: 'merge', kind: 'Organisation', spec: { id: 'x' } }, 'changes[3]');
    assert.equal(both.problems.length, 4);
  });
});

describe('findDuplicates', () => {
  it('names both places that change the same resource', () => {
    const problems = findDuplicates([
      { path: 'changes[0]', kind: 'Node', id: 'n1' },
      { path: 'changes[1]', kind: 'Client', id: 'n1' },
      { path: 'changes[2]', kind: 'Node', id: 'n1' },
    ]);
    assert.deepEqual(paths(problems), ['changes[2]']);
    assert.match(problems[0]?.message ?? '', /changes\[0\]/);
  });
});

describe('validateRegistry', () => {
  const base = {
    Organisation: [organisation('police')],
    Node: [node('dmr-tallinn'), node('dmr-tartu')],
    Client: [client('police-bot', 'police', 'dmr-tallinn')],
    Link: [link('dmr-tallinn', 'dmr-tartu')],
  };

  it('accepts a consistent registry', () => {
    assert.deepEqual(validateRegistry(registry(base)), []);
  });

  it('keeps organisation, client and node ids in one namespace', () => {
    const problems = validateRegistry(registry({ ...base, Node: [...base.Node, node('police')] }));
    assert.deepEqual(paths(problems), ['Node/police.id']);
    assert.match(problems[0]?.message ?? '', /Organisation police/);
  });

  it('reports every dangling or mistyped reference', () => {
    const problems = validateRegistry(
      registry({
        Organisation: [organisation('police')],
        Node: [node('dmr-tallinn')],
        Client: [client('a-bot', 'nobody', 'police'), client('b-bot', 'dmr-tallinn', 'nowhere')],
        Link: [link('dmr-tallinn', 'dmr-gone')],
      }),
    );
    assert.deepEqual(paths(problems), [
      'Client/a-bot.organisation',
      'Client/a-bot.homeNode',
      'Client/b-bot.organisation',
      'Client/b-bot.homeNode',
      'Link/dmr-gone--dmr-tallinn.nodes[1]',
    ]);
    assert.match(problems[1]?.message ?? '', /is an Organisation, not a Node/);
    assert.match(problems[2]?.message ?? '', /is a Node, not an Organisation/);
    assert.match(problems[3]?.message ?? '', /does not exist/);
  });

  it('says when a deletion in the change leaves a reference dangling', () => {
    const withoutTartu = registry({ ...base, Node: [node('dmr-tallinn')] });
    const problems = validateRegistry(withoutTartu, new Set(['Node/dmr-tartu']));
    assert.deepEqual(paths(problems), ['Link/dmr-tallinn--dmr-tartu.nodes[1]']);
    assert.match(problems[0]?.message ?? '', /which this change deletes/);
  });
});

describe('validationError', () => {
  it('is VALIDATION_FAILED (422) with every problem in details', () => {
    const problems = [1, 2, 3, 4].map((n) => ({ path: `spec.f${n}`, message: 'is wrong' }));
    const error = validationError(problems);
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.equal(error.httpStatus, 422);
    assert.deepEqual(error.details.problems, problems);
    assert.match(error.message, /4 problems.*and 1 more/);
  });
});
