/** Selects the evaluation mode from node configuration. */
import { PolicyEngine, type PolicyDecider } from './engine.js';
import { RestPolicyEngine, type RestPolicyEngineOptions } from './rest-engine.js';
import type { BundleVerification } from './signing.js';

export type PolicyEngineConfig =
  | {
      mode: 'wasm';
      verification: BundleVerification;
      /** A bundle to start with (the last good one from disk); later ones arrive by swap(). */
      bundle?: Buffer;
    }
  | ({ mode: 'rest' } & RestPolicyEngineOptions);

export async function createPolicyEngine(config: PolicyEngineConfig): Promise<PolicyDecider> {
  if (config.mode === 'rest') return new RestPolicyEngine(config);
  const engine = new PolicyEngine({ verification: config.verification });
  if (config.bundle !== undefined) await engine.swap(config.bundle);
  return engine;
}
