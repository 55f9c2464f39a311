/** The router's node identity for the mesh comes from the agent's state dir, the CRL with it when there is one. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readRouterIdentity } from './router-process.js';
import { dataPaths } from './state-dir.js';

describe('readRouterIdentity', () => {
  it('reads key, chain and trust bundle, and the CRL only when the agent wrote one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmr-router-identity-'));
    try {
      const paths = dataPaths(dir);
      await mkdir(paths.identityDir, { recursive: true });
      await mkdir(paths.stateDir, { recursive: true });
      // Placeholder text: the router parses them when it builds its signer, not here.
      await writeFile(paths.certificateFile, 'chain');
      await writeFile(paths.keyFile, 'key');
      await writeFile(paths.trustBundleFile, 'roots');
      assert.deepEqual(await readRouterIdentity(dir), {
        certificateChainPem: 'chain',
        privateKeyPem: 'key',
        trustBundlePem: 'roots',
      });
      await writeFile(paths.crlFile, 'crl');
      assert.deepEqual((await readRouterIdentity(dir)).crlPems, ['crl']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
