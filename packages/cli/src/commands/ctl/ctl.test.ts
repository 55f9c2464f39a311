import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { parseCtlConfig } from './config.js';
import { locateProblems, parseDocuments } from './documents.js';
import { renderTable } from '../../output.js';
import { fieldDiff } from './render.js';
import { kindInfo } from './resources.js';

describe('dmr ctl pieces', () => {
  it('config: resolves paths against the file, names the bad field', () => {
    const config = parseCtlConfig('/etc/dmr/admin.yaml', {
      endpoint: 'https://centops.example:8443/',
      caBundle: 'ca/root.crt',
      clientCertificate: '/abs/admin.crt',
      clientKey: 'admin.key',
    });
    assert.equal(config.endpoint, 'https://centops.example:8443');
    assert.equal(config.caBundle, '/etc/dmr/ca/root.crt');
    assert.equal(config.clientCertificate, '/abs/admin.crt');
    assert.equal(config.clientKey, '/etc/dmr/admin.key');
    const field = (document: unknown) => {
      try {
        parseCtlConfig('/c.yaml', document);
      } catch (error) {
        assert.ok(error instanceof DmrError && error.code === 'CLI_CONFIG_INVALID');
        return error.details.field;
      }
      assert.fail('accepted');
    };
    assert.equal(field({ caBundle: 'x' }), 'endpoint');
    assert.equal(field({ endpoint: 'https://a:1', caBundle: 'x', trustDomain: 'Not A Domain' }), 'trustDomain');
    assert.equal(field({ endpoint: 'https://a:1/v1', caBundle: 'x' }), 'endpoint');
    assert.equal(field({ endpoint: 'https://a:1', caBundle: 'x', kind: 'Other' }), 'kind');
    assert.equal(field(['a']), undefined);
  });

  it('documents: kinds by any spelling, empty documents skipped, delete by id', () => {
    const parsed = parseDocuments(
      '---\nkind: clients\nspec: {id: a}\n---\n---\nkind: Node\nop: delete\nspec: {id: n1}\n',
      'f',
    );
    assert.deepEqual(
      parsed.map((document) => [document.document, document.item]),
      [
        [1, { kind: 'Client', spec: { id: 'a' } }],
        [3, { op: 'delete', kind: 'Node', id: 'n1' }],
      ],
    );
    assert.throws(() => parseDocuments('', 'f'), /no documents/);
    const located = locateProblems(
      new DmrError('VALIDATION_FAILED', 'x', {
        details: { problems: [{ path: 'changes[1].spec.cost', message: 'bad' }] },
      }),
      parsed,
      'f',
    );
    assert.deepEqual(located.details.problems, [
      { path: 'changes[1].spec.cost (f document 3, Node/n1)', message: 'bad', document: 3 },
    ]);
  });

  it('render: field-level diff and aligned tables', () => {
    assert.deepEqual(
      fieldDiff({ a: 1, b: { c: ['x'] }, d: 'same' }, { a: 2, b: { c: ['x', 'y'] }, d: 'same', e: true }),
      ['a: 1 → 2', 'b.c: ["x"] → ["x","y"]', 'e: (absent) → true'],
    );
    assert.equal(renderTable(['ID', 'X'], [['long-id', '1']]), 'ID        X\nlong-id   1');
    assert.equal(kindInfo('orgs').path, 'organisations');
    assert.throws(() => kindInfo('widgets'), /unknown kind/);
  });
});
