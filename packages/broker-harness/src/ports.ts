/**
 * Port choice. Every port a node opens is chosen here, because any default
 * (5672, 15672, 15692, 25672, 4369, the CLI's 35672+) collides with the
 * machine's own RabbitMQ or with another harness.
 *
 * Ports come in slots of 16. A harness takes N+1 consecutive slots: the first
 * holds the private epmd, then one slot per node. Blocks are picked at random
 * below Linux's ephemeral range (32768+) so outgoing connections never grab
 * them, checked by binding, and each slot is reserved with a lock file until
 * the nodes have bound their ports: another harness booting at the same
 * moment would otherwise see the same ports still free.
 */
import { randomInt } from 'node:crypto';
import { chmod, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';

export interface NodePorts {
  amqps: number;
  management: number;
  prometheus: number;
  /** Erlang distribution (RABBITMQ_DIST_PORT). */
  dist: number;
  /** Range the CLI tools' own Erlang nodes listen in (RABBITMQ_CTL_DIST_PORT_MIN/MAX). */
  ctlDistMin: number;
  ctlDistMax: number;
}

export interface HarnessPorts {
  epmd: number;
  nodes: NodePorts[];
}

export const SLOT_SIZE = 16;
/** Concurrent CLI calls against one node each need a port of their own. */
export const CTL_DIST_RANGE = 10;
export const PORT_RANGE = { min: 20000, max: 32000 } as const;

export function blockSize(nodeCount: number): number {
  return (nodeCount + 1) * SLOT_SIZE;
}

/** The fixed layout of a block starting at `base`. */
export function layoutPorts(base: number, nodeCount: number): HarnessPorts {
  const nodes: NodePorts[] = [];
  for (let i = 0; i < nodeCount; i++) {
    const first = base + (i + 1) * SLOT_SIZE;
    nodes.push({
      amqps: first,
      management: first + 1,
      prometheus: first + 2,
      dist: first + 3,
      ctlDistMin: first + 4,
      ctlDistMax: first + 4 + CTL_DIST_RANGE - 1,
    });
  }
  return { epmd: base, nodes };
}

export function allPorts(ports: HarnessPorts): number[] {
  const list = [ports.epmd];
  for (const node of ports.nodes) {
    list.push(node.amqps, node.management, node.prometheus, node.dist);
    for (let port = node.ctlDistMin; port <= node.ctlDistMax; port++) list.push(port);
  }
  return list;
}

/** A random slot-aligned block base such that the whole block fits inside PORT_RANGE. */
export function randomBase(nodeCount: number, random: (max: number) => number = randomInt): number {
  const choices = Math.floor((PORT_RANGE.max - PORT_RANGE.min) / SLOT_SIZE) - nodeCount;
  if (choices < 1)
    throw new DmrError('INVALID_ARGUMENT', `${nodeCount} nodes need more ports than the harness range holds`);
  return PORT_RANGE.min + random(choices) * SLOT_SIZE;
}

/** The slot numbers a block occupies: locks are per slot so blocks of different sizes exclude each other. */
export function blockSlots(base: number, nodeCount: number): number[] {
  return Array.from({ length: nodeCount + 1 }, (_, i) => base / SLOT_SIZE + i);
}

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function allFree(ports: number[]): Promise<boolean> {
  for (const port of ports) {
    if (!(await isPortFree(port))) return false;
  }
  return true;
}

export interface PortReservation {
  ports: HarnessPorts;
  /** Drops the lock once the nodes hold the ports themselves (or failed). */
  release(): Promise<void>;
  /** The same, for exit and signal paths where nothing asynchronous runs any more. */
  releaseSync(): void;
}

export const PORT_LOCK_DIR = join(tmpdir(), 'dmr-broker-harness-ports');
/** A lock older than this belongs to a boot that is long over, whatever its PID says. */
const LOCK_STALE_MS = 3 * 60 * 1000;

async function tryLock(slot: number): Promise<string | undefined> {
  if ((await mkdir(PORT_LOCK_DIR, { recursive: true })) !== undefined) {
    // Shared by every user's harnesses, like /tmp itself (mkdir's mode is cut by the umask).
    await chmod(PORT_LOCK_DIR, 0o1777).catch(() => undefined);
  }
  const path = join(PORT_LOCK_DIR, `slot-${slot}.lock`);
  try {
    const handle = await open(path, 'wx');
    await handle.writeFile(String(process.pid));
    await handle.close();
    return path;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if (await isStaleLock(path)) {
    await rm(path, { force: true });
    return tryLock(slot);
  }
  return undefined;
}

async function isStaleLock(path: string): Promise<boolean> {
  try {
    const [info, text] = await Promise.all([stat(path), readFile(path, 'utf8')]);
    if (Date.now() - info.mtimeMs > LOCK_STALE_MS) return true;
    const pid = Number(text);
    if (!Number.isInteger(pid) || pid <= 0) return true;
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // ESRCH: the owner is gone. ENOENT: someone else removed it meanwhile.
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ESRCH' || code === 'ENOENT';
  }
}

export async function reservePorts(nodeCount: number, attempts = 200): Promise<PortReservation> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const base = randomBase(nodeCount);
    const ports = layoutPorts(base, nodeCount);
    const locks: string[] = [];
    const release = async (): Promise<void> => {
      await Promise.all(locks.map((lock) => rm(lock, { force: true })));
    };
    const releaseSync = (): void => {
      for (const lock of locks) rmSync(lock, { force: true });
    };
    for (const slot of blockSlots(base, nodeCount)) {
      const lock = await tryLock(slot);
      if (lock === undefined) break;
      locks.push(lock);
    }
    if (locks.length === nodeCount + 1 && (await allFree(allPorts(ports)))) return { ports, release, releaseSync };
    await release();
  }
  throw new DmrError('BROKER_START_FAILED', `no free block of ${blockSize(nodeCount)} ports found`, {
    hint: `the harness uses 127.0.0.1 ports ${PORT_RANGE.min}–${PORT_RANGE.max - 1}; stop other harnesses or free ports there`,
  });
}
