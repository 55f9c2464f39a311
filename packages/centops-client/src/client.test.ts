import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { MESH_STATUS_SCHEMA } from '@dmr/contract';
import { isDmrError } from '@dmr/core';
import { CentOpsClient, validAnswer } from './client.js';

describe('CentOpsClient', () => {
  it('refuses a CentOps URL that is not https', () => {
    assert.throws(
      () => new CentOpsClient({ apiUrl: 'http://127.0.0.1:1', caPem: '', trustDomain: 'dmr.test' }),
      (error: unknown) => isDmrError(error) && error.code === 'INVALID_ARGUMENT',
    );
  });

  it('validates answers against the contract and names the first problem', () => {
    const status = { revision: 3, nodes: [] };
    assert.deepEqual(validAnswer(MESH_STATUS_SCHEMA, status, 'status'), status);
    assert.throws(
      () => validAnswer(MESH_STATUS_SCHEMA, { revision: 'three', nodes: [] }, 'status'),
      (error: unknown) => isDmrError(error) && error.code === 'INTERNAL' && error.details.path === '/revision',
    );
  });

  it('gives up on a server that never answers: CENTOPS_UNREACHABLE within the deadline', async () => {
    // A TCP listener that accepts and stays silent: the TLS handshake never completes.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const client = new CentOpsClient({
        apiUrl: `https://127.0.0.1:${port}`,
        caPem: '',
        trustDomain: 'dmr.test',
        timeoutMs: 200,
      });
      await assert.rejects(
        client.status(),
        (error: unknown) => isDmrError(error) && error.code === 'CENTOPS_UNREACHABLE',
      );
    } finally {
      silent.close();
    }
  });
});
