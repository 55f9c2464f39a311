/**
 * Installs the node's certificate as its broker's server certificate, the
 * CentOps trust bundle as the broker's CA file and the CentOps CRL into its
 * CRL hash directory, into a RUNNING broker (no restart; existing
 * connections keep what they negotiated):
 *
 * - certificate + key: the broker re-reads them on every handshake
 *   (`ssl.bypass_pem_cache`), so writing them is enough;
 * - CA file: Erlang caches it while any connection is open, so a change
 *   needs a reload (`ssl:clear_pem_cache()`); it only changes during a CA
 *   rollover, so it is written (and the reload run) only when its
 *   certificates differ from what the file holds;
 * - CRL: looked up per handshake in the hash dir; replaced atomically.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { installBrokerTls, installCrlFile, type InstalledBrokerTls, type InstalledCrl } from '@dmr/broker';
import { DmrError } from '@dmr/core';

export interface BrokerTlsPaths {
  certFile: string;
  keyFile: string;
  caFile: string;
  crlDir?: string;
  /**
   * How to make the broker re-read its CA file: a command (argv), e.g.
   * `rabbitmqctl eval 'ssl:clear_pem_cache().'`; for a harness broker in
   * development, `@dmr/broker-harness`' pemCacheReloadCommand(dir).
   */
  reloadCommand?: string[];
}

export interface BrokerTlsMaterial {
  /** Leaf then intermediate(s): what the broker presents. */
  chainPem: string;
  privateKeyPem: string;
  /** CentOps roots; the intermediates of `chainPem` are added (clients may send only their leaf). */
  trustBundlePem: string;
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function blocks(pem: string): string[] {
  return (pem.match(CERTIFICATE_BLOCK) ?? []).map((block) => block.replace(/\s+/g, ''));
}

/** The CA file's contents: the roots plus the intermediates that issue clients and nodes. */
export function brokerCaFile(trustBundlePem: string, chainPem: string): string {
  const chain = chainPem.match(CERTIFICATE_BLOCK) ?? [];
  return [trustBundlePem.trim(), ...chain.slice(1)].join('\n') + '\n';
}

/** Whether `wanted` holds exactly the certificates of the file at `path` (order and spacing aside). */
async function sameCertificates(path: string, wanted: string): Promise<boolean> {
  let current: string;
  try {
    current = await readFile(path, 'utf8');
  } catch {
    return false;
  }
  const have = new Set(blocks(current));
  const want = new Set(blocks(wanted));
  return have.size === want.size && [...want].every((block) => have.has(block));
}

const run = promisify(execFile);

function reloader(paths: BrokerTlsPaths): () => Promise<void> {
  const command = paths.reloadCommand;
  if (command !== undefined && command.length > 0) {
    const [file, ...args] = command as [string, ...string[]];
    return async () => {
      try {
        await run(file, args, { timeout: 30_000 });
      } catch (error) {
        throw new DmrError('BROKER_COMMAND_FAILED', `broker.tls.reloadCommand failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    };
  }
  return () =>
    Promise.reject(
      new DmrError('NODE_CONFIG_INVALID', 'the trust bundle changed but the broker cannot be told to reload it', {
        hint: 'set broker.tls.reloadCommand (e.g. rabbitmqctl eval "ssl:clear_pem_cache().")',
      }),
    );
}

/** Installs certificate, key and (when changed) the CA file via @dmr/broker's installBrokerTls. */
export async function installNodeBrokerTls(
  paths: BrokerTlsPaths,
  material: BrokerTlsMaterial,
): Promise<InstalledBrokerTls & { trustBundleChanged: boolean }> {
  const caText = brokerCaFile(material.trustBundlePem, material.chainPem);
  const trustBundleChanged = !(await sameCertificates(paths.caFile, caText));
  const installed = await installBrokerTls({
    tls: paths,
    chainPem: material.chainPem,
    privateKeyPem: material.privateKeyPem,
    ...(trustBundleChanged ? { trustBundlePem: caText, reload: reloader(paths) } : {}),
  });
  return { ...installed, trustBundleChanged };
}

/** Installs `crlPem` into the broker's CRL hash dir (refused if expired: it would lock every client out). */
export function installBrokerCrl(crlDir: string, crlPem: string): Promise<InstalledCrl> {
  return installCrlFile(crlDir, crlPem);
}
