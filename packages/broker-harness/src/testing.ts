/**
 * Helpers shared by this package's tests (not exported from the package);
 * the ones that need no running node come from `@dmr/broker/testing`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { spiffeId } from '@dmr/core';
import type { CertificateAuthority } from '@dmr/pki';
import type { BrokerHarness } from './harness.js';
import { harnessPaths, nodePaths, nodeTlsFiles } from './layout.js';
import { layoutPorts } from './ports.js';
import { readProcStat } from './processes.js';
import type { HarnessState } from './state.js';

export { makeTempDir, makeTestCa, skipUnless, TEST_TRUST_DOMAIN } from '@dmr/broker/testing';

export interface ClientMaterial {
  id: string;
  /** The broker user the certificate logs in as: its SPIFFE id. */
  user: string;
  certificatePem: string;
  privateKeyPem: string;
  serial: string;
}

export async function issueClient(
  ca: CertificateAuthority,
  id: string,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<ClientMaterial> {
  const issued = await ca.issueWithKey({ kind: 'client', id, ...validity });
  return {
    id,
    user: spiffeId(ca.trustDomain, 'client', id),
    certificatePem: issued.chainPem,
    privateKeyPem: issued.privateKeyPem,
    serial: issued.serial,
  };
}

/** Boot and stop timings, printed so a run shows them ("broker-timing" lines). */
export function reportBoot(label: string, harness: BrokerHarness): void {
  for (const node of harness.nodes) {
    process.stdout.write(`# broker-timing ${label} ${node.name} boot_ms=${node.bootMs ?? 'n/a'}\n`);
  }
}

export function reportStop(label: string, ms: number): void {
  process.stdout.write(`# broker-timing ${label} stop_ms=${ms}\n`);
}

/**
 * Live processes whose command line mentions `dir` (a unique temp path):
 * catches helpers the harness never recorded (port programs, CLI nodes).
 * Read-only: tests report them, nothing is killed by name.
 */
export function leftoverProcesses(dir: string): Array<{ pid: number; command: string }> {
  const found: Array<{ pid: number; command: string }> = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      const state = readProcStat(pid)?.state;
      if (command.includes(dir) && state !== 'Z' && state !== 'X') found.push({ pid, command: command.slice(0, 200) });
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

/** A well-formed state for unit tests (PIDs are placeholders). */
export function sampleState(dir: string): HarnessState {
  const ports = layoutPorts(24000, 1);
  const [nodePorts] = ports.nodes;
  if (!nodePorts) throw new Error('layoutPorts gave no node ports');
  return {
    version: 1,
    dir,
    status: 'running',
    lifetime: 'process',
    owner: { pid: 1, startTicks: 1 },
    startedAt: '2030-01-01T00:00:00.000Z',
    updatedAt: '2030-01-01T00:00:00.000Z',
    rabbitmq: { version: '3.10.8', sbinDir: '/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin' },
    trustDomain: 'dmr.test',
    epmd: { port: ports.epmd, process: { pid: 10, startTicks: 20 } },
    watchdog: null,
    admin: { username: 'harness_admin', passwordFile: harnessPaths(dir).adminPasswordFile },
    trustBundleFile: harnessPaths(dir).trustBundleFile,
    crl: { dir: harnessPaths(dir).crlDir, file: null, nextUpdate: null },
    nodes: [
      {
        name: 'dmr-broker-1',
        nodename: 'dmr-broker-1@localhost',
        ports: nodePorts,
        paths: nodePaths(dir, 'dmr-broker-1', 'dmr-broker-1@localhost'),
        shell: { pid: 11, startTicks: 21 },
        beam: null,
        bootMs: 5000,
        certificate: { serial: '01', notAfter: '2030-01-08T00:00:00.000Z', fingerprintSha256: 'ab' },
        tls: nodeTlsFiles(dir, nodePaths(dir, 'dmr-broker-1', 'dmr-broker-1@localhost')),
      },
    ],
    error: null,
  };
}
