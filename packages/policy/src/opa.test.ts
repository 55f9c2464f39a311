import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DmrError } from '@dmr/core';
import { ensureOpa, findOpa } from './opa.js';

test('a missing opa says how to install it', () => {
  const saved = process.env.DMR_OPA;
  process.env.DMR_OPA = '/nonexistent/opa';
  try {
    assert.throws(findOpa, (error: unknown) => {
      assert.ok(error instanceof DmrError);
      assert.equal(error.code, 'DEPENDENCY_MISSING');
      assert.match(error.hint ?? '', /npm run setup:opa/);
      return true;
    });
  } finally {
    if (saved === undefined) delete process.env.DMR_OPA;
    else process.env.DMR_OPA = saved;
  }
});

test('ensureOpa builds nothing when DMR_OPA names a missing binary: that is the caller’s to fix', async () => {
  const saved = process.env.DMR_OPA;
  process.env.DMR_OPA = '/nonexistent/opa';
  let built = false;
  try {
    await assert.rejects(
      ensureOpa({
        onBuild: () => {
          built = true;
        },
      }),
      (error: unknown) => error instanceof DmrError && error.code === 'DEPENDENCY_MISSING',
    );
    assert.equal(built, false);
  } finally {
    if (saved === undefined) delete process.env.DMR_OPA;
    else process.env.DMR_OPA = saved;
  }
});
