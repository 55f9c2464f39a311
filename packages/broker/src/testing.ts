/**
 * Helpers for tests of broker code, exported as `@dmr/broker/testing` so the
 * harness's tests use the same ones (the harness depends on this package, so
 * its helpers cannot live there). Test material lives under os.tmpdir() and
 * is removed afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificateAuthority } from '@dmr/pki';

export const TEST_TRUST_DOMAIN = 'dmr.test';

export async function makeTempDir(label: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `dmr-${label}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function makeTestCa(dir: string, trustDomain = TEST_TRUST_DOMAIN): Promise<CertificateAuthority> {
  return CertificateAuthority.init(dir, { trustDomain });
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  pollMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
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
