/**
 * The policy as CentOps holds it, for `dmr policy … --centops` and
 * `dmr ctl policy …`: the policy set (files) and the signed bundle, read
 * over the mTLS API with the operator certificate of the CLI config.
 * The bundle is verified as a node would: signer chain to the config's CA
 * bundle, signer = spiffe://<trust domain>/centops/policy-signer.
 */
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { validAnswer } from '@dmr/centops-client';
import { POLICY_VERSION_WITH_FILES_SCHEMA, type PolicyFiles, type PolicyVersionWithFiles } from '@dmr/contract';
import { DmrError } from '@dmr/core';
import { policySignerSpiffeId, type BundleVerification } from '@dmr/policy';
import { CentOpsClient } from './ctl/client.js';
import { loadCtlConfig, readConfigFile, type CtlConfig } from './ctl/config.js';

export type { PolicyFiles } from '@dmr/contract';
/** What `GET /v1/policy` answers. */
export type CentOpsPolicy = PolicyVersionWithFiles;

export async function centopsClient(configOption: string | undefined): Promise<{
  client: CentOpsClient;
  config: CtlConfig;
}> {
  const config = await loadCtlConfig(configOption);
  return { client: await CentOpsClient.forApi(config), config };
}

/** The trust domain: the config's, else the one in the operator certificate's SPIFFE id. */
async function trustDomainOf(config: CtlConfig): Promise<string> {
  if (config.trustDomain !== undefined) return config.trustDomain;
  const pem = await readConfigFile(config, 'clientCertificate');
  const san = new X509Certificate(pem).subjectAltName ?? '';
  const match = /URI:spiffe:\/\/([^/,\s]+)\//.exec(san);
  if (match?.[1] === undefined) {
    throw new DmrError('CLI_CONFIG_INVALID', `${config.file}: cannot tell the trust domain`, {
      hint: 'add trustDomain: to the CLI config',
    });
  }
  return match[1];
}

export async function fetchPolicy(client: CentOpsClient, version?: number): Promise<CentOpsPolicy> {
  const answer = await client.get('/v1/policy', version === undefined ? undefined : { version });
  return validAnswer(POLICY_VERSION_WITH_FILES_SCHEMA, answer, 'policy');
}

/** The current signed bundle and how to verify it. */
export async function fetchBundle(configOption: string | undefined): Promise<{
  archive: Buffer;
  etag: string | undefined;
  verification: BundleVerification;
}> {
  const { client, config } = await centopsClient(configOption);
  const response = await client.request<Buffer>('GET', '/v1/policy/bundle', { binary: true });
  const etag = response.headers.etag;
  return {
    archive: response.body,
    etag: typeof etag === 'string' ? etag : undefined,
    verification: {
      trustBundlePem: await readConfigFile(config, 'caBundle'),
      expectedSigner: policySignerSpiffeId(await trustDomainOf(config)),
    },
  };
}

export async function writePolicyFiles(dir: string, files: PolicyFiles): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    if (path.split('/').some((segment) => segment === '..' || segment === '' || segment === '.')) {
      throw new DmrError('INVALID_ARGUMENT', `refusing to write the policy file ${path}`);
    }
    const target = join(dir, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content, 'utf8');
  }
}

/** Runs `work` on the files laid out in a temporary directory (removed afterwards). */
export async function withPolicyFiles<T>(files: PolicyFiles, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-cli-policy-'));
  try {
    await writePolicyFiles(dir, files);
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
