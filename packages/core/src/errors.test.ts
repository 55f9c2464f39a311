import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DmrError, ERROR_CATALOGUE, isErrorCode } from './errors.js';

describe('error catalogue', () => {
  it('gives every code an exit code, an HTTP status and a summary', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      assert.match(code, /^[A-Z][A-Z_]+$/);
      assert.ok(Number.isInteger(entry.exitCode) && entry.exitCode > 0 && entry.exitCode < 126, code);
      assert.ok(entry.httpStatus >= 400 && entry.httpStatus < 600, code);
      assert.ok(entry.summary.length > 10, code);
    }
  });

  it('serialises to the shared {error:{code,message,details}} shape', () => {
    const error = new DmrError('NOT_FOUND', 'no such CA directory /x', {
      details: { dir: '/x' },
      hint: 'run dmr pki init',
    });
    assert.deepEqual(JSON.parse(JSON.stringify(error)), {
      error: {
        code: 'NOT_FOUND',
        message: 'no such CA directory /x',
        details: { dir: '/x' },
        hint: 'run dmr pki init',
      },
    });
    assert.equal(error.httpStatus, 404);
    assert.ok(isErrorCode('NOT_FOUND'));
    assert.ok(!isErrorCode('toString'));
  });

  it('says which codes are worth retrying unchanged: an overloaded or unreachable dependency, never a refusal', () => {
    assert.equal(new DmrError('MESSAGE_NOT_ACCEPTED', 'ingress full').retryable, true);
    assert.equal(new DmrError('NODE_UNREACHABLE', 'down').retryable, true);
    assert.equal(new DmrError('POLICY_DENIED', 'no').retryable, false);
    assert.equal(new DmrError('INVALID_ARGUMENT', 'bad').retryable, false);
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      if ('retryable' in entry) assert.ok(entry.httpStatus === 429 || entry.httpStatus >= 500, code);
    }
  });
});
