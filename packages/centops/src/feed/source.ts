/**
 * Where signed documents come from: one registry snapshot (plus the
 * certificate records) per revision, shared by every node's request, and one
 * signed document per node and revision. When a revision lands, 100 streams
 * ask at once; without this each would read the whole registry and sign.
 * Concurrent first requests share one in-flight load.
 */
import type { CertificateRecord, Store } from '../store/types.js';
import { prepareNodeConfigs, type BuildOptions, type PreparedRegistry } from './node-config.js';
import type { ConfigSigner } from './signing.js';

export interface SignedConfig {
  revision: number;
  jws: string;
}

interface Loaded {
  /** The parts every node's document shares (the directory above all), built once per revision. */
  prepared: PreparedRegistry;
  signed: Map<string, Promise<SignedConfig>>;
}

/** Every certificate that is not revoked; expired ones are filtered when the revision's documents are prepared. */
export async function loadCertificates(store: Store): Promise<CertificateRecord[]> {
  const all: CertificateRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listCertificates({
      revoked: false,
      limit: 1000,
      ...(cursor === undefined ? {} : { cursor }),
    });
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return all;
}

export class ConfigSource {
  #loaded: { revision: number; value: Promise<Loaded> } | undefined;

  constructor(
    private readonly store: Store,
    private readonly signer: ConfigSigner,
    private readonly buildOptions: BuildOptions,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** The signed configuration of `nodeId` at the newest revision (NOT_FOUND if the node does not exist). */
  async current(nodeId: string): Promise<SignedConfig> {
    const revision = await this.store.revision();
    const loaded = await this.#load(revision);
    let signed = loaded.signed.get(nodeId);
    if (signed === undefined) {
      signed = this.#sign(loaded, nodeId);
      loaded.signed.set(nodeId, signed);
      // A failure (unknown node) must not stick: the next request tries again.
      signed.catch(() => loaded.signed.delete(nodeId));
    }
    return signed;
  }

  async #sign(loaded: Loaded, nodeId: string): Promise<SignedConfig> {
    const config = loaded.prepared.build(nodeId, this.now());
    return { revision: config.revision, jws: await this.signer.sign(config) };
  }

  #load(revision: number): Promise<Loaded> {
    // The snapshot may be newer than `revision` (a write in between): still right, keep it.
    if (this.#loaded !== undefined && this.#loaded.revision >= revision) return this.#loaded.value;
    const value = (async () => {
      const [snapshot, certificates] = await Promise.all([this.store.snapshot(), loadCertificates(this.store)]);
      const prepared = prepareNodeConfigs(snapshot, certificates, this.now(), this.buildOptions);
      return { prepared, signed: new Map<string, Promise<SignedConfig>>() };
    })();
    const entry = { revision, value };
    this.#loaded = entry;
    value.then(
      (loaded) => {
        if (this.#loaded === entry) this.#loaded = { revision: loaded.prepared.revision, value };
      },
      () => {
        if (this.#loaded === entry) this.#loaded = undefined;
      },
    );
    return value;
  }
}
