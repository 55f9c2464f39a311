/**
 * Helpers for tests of broker code, exported as `@dmr/broker/testing` so the
 * harness's tests use the same ones (the harness depends on this package, so
 * its helpers cannot live there). Test material lives under os.tmpdir() and
 * is removed afterwards. `waitFor` and the channel helpers are
 * `@dmr/core/testing`'s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '@dmr/pki';

export const TEST_TRUST_DOMAIN = 'dmr.test';

export async function makeTempDir(label: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `dmr-${label}-`));
  // Retries: a timer-driven writer the test just stopped may still finish its last file (ENOTEMPTY).
  return { path, remove: () => rm(path, { recursive: true, force: true, maxRetries: 5 }) };
}

export function makeTestCa(dir: string, trustDomain = TEST_TRUST_DOMAIN): Promise<CertificateAuthority> {
  return CertificateAuthority.init(dir, { trustDomain });
}

/**
 * A test's `skip` value for a tool the machine may lack: false when `probe`
 * finds it, else the reason. With DMR_REQUIRE_TOOLS=1 (CI) a missing tool
 * fails the file instead, so CI cannot go green by skipping.
 */
export function skipUnless(tool: string, probe: () => unknown): false | string {
  try {
    probe();
    return false;
  } catch (error) {
    const reason = `${tool} is not available (${error instanceof Error ? error.message : String(error)})`;
    if (process.env.DMR_REQUIRE_TOOLS === '1')
      throw new Error(`${reason}; DMR_REQUIRE_TOOLS=1 forbids skipping`, { cause: error });
    return reason;
  }
}
