/**
 * The hop chain's sizes and costs: the encoded `dmr-sig` header and
 * `dmr-hops` for chains of 1..8 entries with P-256, P-384, RSA-2048 and
 * RSA-4096 node certificates (short and longest ids), the cost of appending
 * an entry, and the cost of one hop's
 * verification (HopChainVerifier.verify: previous hop, origin signature,
 * whole chain) with a warm certificate cache. A benchmark, not a test: it
 * prints figures and asserts nothing. docs/mesh.md "Sizes" quotes it.
 *
 *   npm run bench -- hop-chain [N]     N timed operations per row (default 2000)
 */
import { performance } from 'node:perf_hooks';
import { summarize } from '@dmr/core';
import type { KeyAlgorithm } from '@dmr/pki';
import { type SignableMessage } from '@dmr/contract';
import { encodedTableSize } from '../message/headers.js';
import { DEFAULT_MAX_HOPS, HOP_ENTRY_ALLOWANCE_BYTES } from '../message/hop-chain.js';
import {
  appendedBlindly,
  entriesOf,
  later,
  originated,
  testMesh,
  type TestMesh,
} from '../message/mesh-test-support.js';

function ids(prefix: string, length: number): string[] {
  return Array.from({ length: DEFAULT_MAX_HOPS + 1 }, (_, i) => `${prefix}${i}`.padStart(length, 'x'));
}

/**
 * What arrives at path[hops] after `hops` links, sent at `at`: entries path[0..hops-1], the last addressed to
 * path[hops]. `at` is taken once the mesh's certificates exist: they start 60 s before they are issued, and on a
 * loaded machine issuing a mesh of RSA keys takes longer than that (a fixed start time failed `chain`).
 */
function arriving(mesh: TestMesh, path: readonly string[], hops: number, at: Date): SignableMessage {
  let message = originated(mesh.node(path[0] as string), path[1] as string, at);
  for (let i = 1; i < hops; i++) {
    message = appendedBlindly(message, mesh.node(path[i] as string), path[i + 1] as string, later(at, i));
  }
  return message;
}

/** Bytes of header `name` in an AMQP field table (name, type, length, value; not the table's own length). */
function headerBytes(message: SignableMessage, name: string): number {
  return encodedTableSize({ [name]: message.properties.headers?.[name] }) - 4;
}

async function time(n: number, run: () => unknown): Promise<{ p50: number; p99: number; mean: number }> {
  for (let i = 0; i < Math.min(200, n); i++) await run();
  const samples = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await run();
    samples[i] = (performance.now() - start) * 1000;
  }
  const { p50, p99, mean } = summarize(samples);
  return { p50, p99, mean };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 2000);
  const rows: string[][] = [];
  const sizes: string[][] = [];
  const meshes: TestMesh[] = [];
  try {
    const kinds: Array<[string, KeyAlgorithm, number[]]> = [
      ['P-256', 'ecdsa-p256', [2, 63]],
      ['P-384', 'ecdsa-p384', [63]],
      ['RSA-2048', 'rsa-2048', [2, 63]],
      ['RSA-4096', 'rsa-4096', [63]],
    ];
    for (const [label, algorithm, idLengths] of kinds) {
      for (const idLength of idLengths) {
        const path = ids(algorithm.slice(0, 1), idLength);
        const mesh = await testMesh(path, Object.fromEntries(path.map((id) => [id, algorithm])));
        meshes.push(mesh);
        const at = new Date();
        const line = [`${label}, ids of ${idLength}`];
        let previous = 0;
        for (let hops = 1; hops <= DEFAULT_MAX_HOPS; hops++) {
          const message = arriving(mesh, path, hops, at);
          const bytes = headerBytes(message, 'dmr-hops');
          if (hops === 1) line.push(String(headerBytes(message, 'dmr-sig')));
          line.push(`${bytes} (+${bytes - previous})`);
          previous = bytes;
        }
        sizes.push(line);
        if (idLength !== 2) continue;
        for (const hops of [1, 2, 4, 8]) {
          const message = arriving(mesh, path, hops, at);
          const here = path[hops] as string;
          const verifier = mesh.verifier(here);
          const result = await verifier.verify(message, at);
          if (!result.ok) throw new Error(`bench chain does not verify: ${result.detail}`);
          const verify = await time(n, () => verifier.verify(message, at));
          const signer = mesh.node(here).signer;
          const chain = { signature: message.properties.headers?.['dmr-sig'] as string, hops: entriesOf(message) };
          const append = await time(n, () => signer.append(chain, null, at));
          rows.push([
            `${label}, ${hops} entr${hops === 1 ? 'y' : 'ies'} on arrival`,
            verify.p50.toFixed(0),
            verify.p99.toFixed(0),
            // dmr-sig (which covers entry 0) and one signature per later entry.
            (verify.mean / hops).toFixed(0),
            append.p50.toFixed(0),
            append.p99.toFixed(0),
          ]);
        }
      }
    }
  } finally {
    await Promise.all(meshes.map((mesh) => mesh.cleanup()));
  }
  const print = (header: string[], lines: string[][]): void => {
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => (line[i] ?? '').length)));
    const format = (cells: string[]): string =>
      cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
    console.log(format(header));
    for (const line of lines) console.log(format(line));
  };
  console.log(
    `header bytes (AMQP field-table entry): dmr-sig, and dmr-hops by entries on arrival; allowance ${HOP_ENTRY_ALLOWANCE_BYTES} per entry`,
  );
  print(['node certificates', 'dmr-sig', ...Array.from({ length: DEFAULT_MAX_HOPS }, (_, i) => String(i + 1))], sizes);
  console.log('');
  console.log(`one hop, warm cache, ${n} runs each (µs; node ${process.version})`);
  print(['chain', 'verify p50', 'verify p99', 'verify mean/sig', 'append p50', 'append p99'], rows);
}

await main();
