/**
 * CentOps holds its own keys (API server, signers, the issuing CA) and no
 * one else's. A person's key on the server (the first admin's, written by
 * an older `dmr centops init`, or operator credentials made with `operator
 * add --out-dir` inside the directory) is readable by anything that can
 * read files as CentOps, so the server refuses to start while one is there.
 */
import { readdir } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { DmrError } from '@dmr/core';
import { CA_FILES } from '@dmr/pki';
import { policySignerPaths } from '../policy/signer.js';
import type { CentOpsConfig } from './config.js';

/** Where `dmr centops init --dev` keeps the throwaway root (development only). */
const DEV_ROOT_DIR = 'dev-root';

/** `*.key` files under `home` that are not CentOps' own keys (relative paths). */
export async function strayKeys(home: string, config: CentOpsConfig): Promise<string[]> {
  const own = new Set(
    [
      config.tls.key,
      config.signer.key,
      policySignerPaths(config.signer.certificate).key,
      join(config.caDir, CA_FILES.intermediateKey),
      join(config.caDir, CA_FILES.rootKey),
    ].map((path) => resolve(path)),
  );
  let entries;
  try {
    entries = await readdir(home, { recursive: true, withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.key'))
    .map((entry) => resolve(entry.parentPath, entry.name))
    .filter((path) => !own.has(path))
    .map((path) => relative(home, path))
    .filter((path) => path.split(sep)[0] !== DEV_ROOT_DIR)
    .sort();
}

/** OPERATOR_KEY_ON_SERVER when the CentOps directory holds a key that is not CentOps' own. */
export async function assertNoStrayKeys(config: CentOpsConfig): Promise<void> {
  if (config.home === undefined) return;
  const found = await strayKeys(config.home, config);
  if (found.length === 0) return;
  throw new DmrError(
    'OPERATOR_KEY_ON_SERVER',
    `${config.home} holds private keys that are not CentOps' own: ${found.join(', ')}`,
    {
      details: { dir: config.home, files: found },
      hint: 'hand each one (with its certificate and CLI config) to its owner and delete it from this host, then start again',
    },
  );
}
