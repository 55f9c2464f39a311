import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { harnessPaths } from './layout.js';
import { isHarnessState, readState, writeState } from './state.js';
import { makeTempDir, sampleState } from './testing.js';

describe('harness.json', () => {
  it('round-trips through the file', async () => {
    const temp = await makeTempDir('state');
    try {
      const state = sampleState(temp.path);
      await writeState(state);
      const read = await readState(temp.path);
      assert.deepEqual({ ...read, updatedAt: '' }, { ...state, updatedAt: '' });
    } finally {
      await temp.remove();
    }
  });

  it('rejects shapes it did not write', () => {
    const state = sampleState('/x');
    assert.ok(isHarnessState(state));
    assert.equal(isHarnessState({ ...state, version: 2 }), false);
    assert.equal(isHarnessState({ ...state, status: 'dancing' }), false);
    assert.equal(isHarnessState({ ...state, nodes: [{ name: 'x' }] }), false);
    assert.equal(isHarnessState({ ...state, epmd: { port: '1', process: null } }), false);
    assert.equal(isHarnessState(null), false);
  });

  it('accepts nodes without tls (files written before hot swap existed), not with a malformed one', () => {
    const state = sampleState('/x');
    const [node] = state.nodes;
    assert.ok(node?.tls);
    const withoutTls: Partial<typeof node> = { ...node };
    delete withoutTls.tls;
    assert.ok(isHarnessState({ ...state, nodes: [withoutTls] }));
    assert.equal(isHarnessState({ ...state, nodes: [{ ...node, tls: { certFile: 1 } }] }), false);
  });

  it('explains a directory that is not a harness', async () => {
    const temp = await makeTempDir('state');
    try {
      await assert.rejects(
        readState(temp.path),
        (error: unknown) => error instanceof DmrError && error.code === 'NOT_FOUND',
      );
      await writeFile(harnessPaths(temp.path).stateFile, '{nope');
      await assert.rejects(
        readState(temp.path),
        (error: unknown) => error instanceof DmrError && /not JSON/.test(error.message),
      );
    } finally {
      await temp.remove();
    }
  });
});
