/**
 * Policies as a CentOps resource, versioned and signed like the rest of
 * a node's configuration. A change to the policy
 * set is accepted only when the pinned `opa` passes `check --strict` (also
 * against the opa-wasm SDK's built-ins) and `opa test` on exactly the files
 * sent, in a temporary directory; otherwise POLICY_INVALID (422) with OPA's
 * output in details.output, and nothing is stored. An accepted change is
 * built into a bundle (Rego, data, policy.wasm), signed with the policy
 * signer, stored with the version, and bumps the registry revision so that
 * nodes learn of it through their configuration.
 *
 * The version is the bundle's revision: it only grows, so nodes can refuse
 * an older bundle. Changes are serialised in this process (opa runs for a
 * second or two; two at once would only race for the same version), and the
 * insert re-checks the version under the registry's writer lock for other
 * replicas (CONFLICT, retry).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { DmrError } from '@dmr/core';
import {
  DEFAULT_OPA_TIMEOUT_MS,
  buildBundle,
  opaCheck,
  opaTest,
  type BundleSigner,
  type OpaSandbox,
  type OpaTestReport,
} from '@dmr/policy';
import { databaseOf, type Store } from '../store/index.js';
import type { Database } from '../store/schema.js';
import { checkPolicyFiles, policyDigest, readPolicyDir, writePolicyFiles, type PolicyFiles } from './files.js';
import {
  findPolicyVersion,
  insertPolicyVersion,
  readPolicyBundle,
  readPolicyFiles,
  type PolicyVersion,
  type PolicyVersionWithFiles,
} from './versions.js';

export interface PolicyServiceOptions {
  store: Store;
  signer: BundleSigner;
  now?: () => Date;
  /** How long one test or change may run opa (check, test and build together); default 60 s. */
  timeoutMs?: number;
}

export interface PolicyApplyOptions {
  /** From If-Match: the version the caller last read; another current version is PRECONDITION_FAILED. */
  expectedVersion?: number;
  /** Check and test only; store nothing. */
  dryRun?: boolean;
  /** Store the same files again as a new version, signed by the current signer (signer rotation). */
  resign?: boolean;
}

export interface PolicyApplyResult {
  /** False when the files equal the current version's (nothing stored) or on a dry run. */
  changed: boolean;
  dryRun: boolean;
  /** The version now current (for a dry run: the current one, if any). */
  policy: PolicyVersion | undefined;
  /** `opa test` results; absent when the set was unchanged (nothing ran). */
  tests?: { passed: number; failed: number };
}

export interface PolicyBundleDocument {
  version: number;
  revision: string;
  archive: Buffer;
  /** sha256 (hex) of the archive. */
  digest: string;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function inTempDir<T>(files: PolicyFiles, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-centops-policy-'));
  try {
    await writePolicyFiles(dir, files);
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export class PolicyService {
  readonly #db: Kysely<Database>;
  readonly #signer: BundleSigner;
  readonly #now: () => Date;
  readonly #timeoutMs: number;
  #queue: Promise<unknown> = Promise.resolve();
  #cached: PolicyBundleDocument | undefined;

  constructor(options: PolicyServiceOptions) {
    this.#db = databaseOf(options.store);
    this.#signer = options.signer;
    this.#now = options.now ?? (() => new Date());
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_OPA_TIMEOUT_MS;
  }

  /**
   * One opa job at a time, each bounded by the timeout (its clock starts
   * when its turn comes): a policy that loops is stopped and the next
   * request is served, and operators cannot fill the host with opa processes.
   */
  #serialised<T>(work: (sandbox: OpaSandbox) => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => work({ deadline: Date.now() + this.#timeoutMs }));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** The policy signer's public key (PEM), for a stock OPA's `keys` configuration. */
  get verificationKeyPem(): string {
    return this.#signer.publicKeyPem;
  }

  get signingAlgorithm(): string {
    return this.#signer.algorithm;
  }

  /** `opa check --strict` and `opa test` on the files; POLICY_INVALID with OPA's output when either fails. */
  async test(input: unknown): Promise<OpaTestReport> {
    const files = checkPolicyFiles(input);
    return this.#serialised((sandbox) =>
      inTempDir(files, async (dir) => {
        await opaCheck(dir, sandbox);
        return opaTest(dir, sandbox);
      }),
    );
  }

  current(): Promise<PolicyVersion | undefined> {
    return findPolicyVersion(this.#db);
  }

  /** A version (default the current one) with its files; NOT_FOUND when there is none. */
  async get(version?: number): Promise<PolicyVersionWithFiles> {
    const found = await findPolicyVersion(this.#db, version);
    if (found === undefined) {
      throw new DmrError(
        'NOT_FOUND',
        version === undefined ? 'no policy set has been stored yet' : `policy version ${version} does not exist`,
        { hint: version === undefined ? 'apply one with `dmr ctl policy apply DIR`' : undefined },
      );
    }
    return { ...found, files: await readPolicyFiles(this.#db, found.version) };
  }

  /** The current bundle; cached per version, so a poll costs one small read. */
  async bundle(): Promise<PolicyBundleDocument> {
    const current = await this.current();
    if (current === undefined) {
      throw new DmrError('NOT_FOUND', 'no policy bundle exists yet', {
        hint: 'apply a policy set (`dmr ctl policy apply DIR`)',
      });
    }
    if (this.#cached?.version === current.version) return this.#cached;
    const { archive, digest } = await readPolicyBundle(this.#db, current.version);
    const document = { version: current.version, revision: String(current.version), archive, digest };
    this.#cached = document;
    return document;
  }

  /**
   * Checks, tests, builds, signs and stores a new version of the policy set.
   * `bump: false` only for the seed at init (nothing has been served yet).
   */
  apply(
    input: unknown,
    actor: string,
    options: PolicyApplyOptions & { bump?: boolean } = {},
  ): Promise<PolicyApplyResult> {
    return this.#serialised((sandbox) => this.#apply(input, actor, options, sandbox));
  }

  async #apply(
    input: unknown,
    actor: string,
    options: PolicyApplyOptions & { bump?: boolean },
    sandbox: OpaSandbox,
  ): Promise<PolicyApplyResult> {
    const files = checkPolicyFiles(input);
    const digest = policyDigest(files);
    const current = await this.current();
    if (options.expectedVersion !== undefined && options.expectedVersion !== (current?.version ?? 0)) {
      throw new DmrError(
        'PRECONDITION_FAILED',
        `the policy set is at version ${current?.version ?? 0}, not ${options.expectedVersion}`,
        { details: { version: current?.version ?? 0, expectedVersion: options.expectedVersion } },
      );
    }
    const dryRun = options.dryRun === true;
    if (current?.digest === digest && options.resign !== true) return { changed: false, dryRun, policy: current };
    const version = (current?.version ?? 0) + 1;
    const outcome = await inTempDir<{ tests: OpaTestReport; archive?: Buffer }>(files, async (dir) => {
      await opaCheck(dir, sandbox);
      const tests = await opaTest(dir, sandbox);
      if (dryRun) return { tests };
      const built = await buildBundle({ dir, revision: String(version), signer: this.#signer, sandbox });
      return { tests, archive: built.archive };
    });
    const tests = { passed: outcome.tests.passed, failed: outcome.tests.failed };
    if (outcome.archive === undefined) return { changed: false, dryRun, policy: current, tests };
    const bundleDigest = sha256(outcome.archive);
    const stored = await insertPolicyVersion(
      this.#db,
      { version, files, digest, archive: outcome.archive, bundleDigest, testsPassed: tests.passed },
      actor,
      this.#now(),
      { bump: options.bump !== false },
    );
    this.#cached = { version, revision: String(version), archive: outcome.archive, digest: bundleDigest };
    return { changed: true, dryRun, policy: stored, tests };
  }
}

/** The default pack shipped in @dmr/policy (rego/): deny by default, grants in data. */
export function defaultPackDir(): string {
  // @dmr/policy resolves to packages/policy/dist/index.js; the pack sits beside dist/.
  return fileURLToPath(new URL('../rego', import.meta.resolve('@dmr/policy')));
}

/** Stores the default pack as version 1 when there is no policy set yet; no registry revision (nothing served yet). */
export async function seedDefaultPolicy(
  service: PolicyService,
  actor: string,
  dir = defaultPackDir(),
): Promise<PolicyApplyResult | undefined> {
  if ((await service.current()) !== undefined) return undefined;
  return service.apply(await readPolicyDir(dir), actor, { bump: false });
}
