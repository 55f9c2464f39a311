/**
 * NetnsPartition: a real network path to a harness broker, through a network
 * namespace and a veth pair, that a fault test can partition and heal in the
 * kernel (docs/decisions/0026-partitions-and-mesh-bench.md).
 *
 *   host (every broker on 127.0.0.1)            namespace (unnamed)
 *   shovel/client ──▶ <host-if> 198.18.x.1 ══veth══ 198.18.x.2 <ns-if> : listener
 *                                                        │ (socket opened in the namespace,
 *   broker B 127.0.0.1:<amqps> ◀── loopback ── owner ◀───┘  accepted by the owner process)
 *
 * Whatever connects to `endpoint.host:endpoint.port` crosses the veth; the
 * broker itself and everything else that talks to it on 127.0.0.1 does not,
 * so a partition cuts exactly the connections made through the endpoint
 * (the mesh tests' links) while the test, the routers and the management API
 * keep their own direct ones. `partition('drop')` discards every packet of
 * the path in both directions with the link up (a WAN partition: silence);
 * `partition('link-down')` takes the namespace's end of the veth down (the
 * host's end loses carrier: silence too, and new connections fail with
 * EHOSTUNREACH once ARP gives up). Neither needs netfilter: `drop` is two
 * `blackhole` policy-routing rules inside the namespace.
 *
 * Lifetime: the namespace is held by one small process started with
 * `unshare --net` (netns-holder-main.ts); it is never named under
 * /run/netns, so `ip netns list` never shows it. The holder exits when its
 * IPC channel to this process closes — stop(), exit, or SIGKILL of this
 * process — and the kernel then removes the namespace and both veth ends.
 * stop() also waits until the host's end is gone. Exit and signal hooks are
 * the harness's own (cleanup.ts).
 *
 * Needs root (CAP_SYS_ADMIN for unshare, CAP_NET_ADMIN for the veth), `ip`
 * (iproute2) and `unshare` (util-linux): netnsUnavailable() says why not.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import type { Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { DmrError } from '@dmr/core';
import { registerCleanup, unregisterCleanup, type Cleanable } from './cleanup.js';
import { isHolderReply, type HolderReply, type HolderRequest } from './netns-protocol.js';
import { isRunning, processRef, signalProcess, type ProcessRef } from './processes.js';
import { TcpProxy, type TcpProxyStats } from './tcp-proxy.js';

const HOLDER_MAIN = fileURLToPath(new URL('./netns-holder-main.js', import.meta.url));

/** Every veth this helper creates is named `dmrp<6 hex>h` (host end) / `dmrp<6 hex>n` (namespace end). */
export const NETNS_LINK_PREFIX = 'dmrp';

// RFC 2544's benchmarking range 198.18.0.0/15 (never routed on the Internet): 2^15 blocks of /30,
// one per partition, picked at random and checked against the addresses in use.
const SUBNET_BLOCKS = 2 ** 15;
const REPLY_TIMEOUT_MS = 15_000;
// Inside the namespace, where the rules are private: the local table moves behind the partition's rules.
const LOCAL_RULE_PREF = '100';
const DROP_RULE_PREF = ['10', '11'] as const;

export type PartitionMode = 'drop' | 'link-down';
export type NetnsPartitionState = 'open' | PartitionMode | 'stopped';

export interface NetnsEndpoint {
  /** The namespace's address: connect here (with the broker's name for SNI). */
  host: string;
  port: number;
  /** Where the owner forwards each accepted connection (127.0.0.1). */
  target: { host: string; port: number };
  /** Connections accepted through this endpoint so far, open now, and reset. */
  readonly stats: Readonly<TcpProxyStats>;
}

export interface NetnsPartitionOptions {
  /** Called with one line per step (setup, partition, heal, stop), for test output. */
  onProgress?: (message: string) => void;
}

function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

function unavailable(reason: string, cause?: unknown): DmrError {
  return new DmrError('DEPENDENCY_MISSING', `network namespaces are not usable here: ${reason}`, {
    hint: 'NetnsPartition needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ip (iproute2) and unshare (util-linux); use TcpProxy where they are missing',
    cause,
  });
}

/**
 * Why a NetnsPartition cannot start on this machine, or undefined when it
 * can: tried for real (a throw-away `unshare --net`), since root without
 * CAP_SYS_ADMIN — a container — is common.
 */
export function netnsUnavailable(): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not running as root';
  const ipVersion = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ipVersion.error || ipVersion.status !== 0) return '`ip` (iproute2) is not installed';
  const trial = spawnSync('unshare', ['--net', '--', 'ip', 'link', 'show', 'lo'], { encoding: 'utf8' });
  if (trial.error) return '`unshare` (util-linux) is not installed';
  if (trial.status !== 0) return `unshare --net failed: ${trial.stderr.trim() || `exit ${trial.status}`}`;
  return undefined;
}

/** Addresses of this host's interfaces: a new block must not overlap one in use (another test's partition). */
async function addressesInUse(): Promise<Set<string>> {
  const text = await run('ip', ['-4', '-o', 'addr', 'show']);
  return new Set([...text.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((match) => match[1] ?? ''));
}

function blockAddresses(block: number): { host: string; namespace: string } {
  const base = block * 4;
  const octet2 = 18 + Math.floor(base / 65_536);
  const octet3 = Math.floor(base / 256) % 256;
  const octet4 = base % 256;
  return { host: `198.${octet2}.${octet3}.${octet4 + 1}`, namespace: `198.${octet2}.${octet3}.${octet4 + 2}` };
}

interface Pending {
  resolve: (reply: HolderReply, handle: unknown) => void;
  reject: (error: Error) => void;
}

export class NetnsPartition implements Cleanable {
  readonly id: string;
  readonly hostInterface: string;
  readonly namespaceInterface: string;
  /** The host's end of the veth. */
  readonly hostAddress: string;
  /** The namespace's end, where every endpoint listens. */
  readonly address: string;
  readonly holder: ProcessRef;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  readonly #proxies: TcpProxy[] = [];
  readonly #progress: (message: string) => void;
  #nextId = 1;
  #state: NetnsPartitionState = 'open';
  #stopping: Promise<void> | undefined;

  private constructor(
    names: { id: string; hostInterface: string; namespaceInterface: string },
    addresses: { host: string; namespace: string },
    child: ChildProcess,
    holder: ProcessRef,
    options: NetnsPartitionOptions,
  ) {
    this.id = names.id;
    this.hostInterface = names.hostInterface;
    this.namespaceInterface = names.namespaceInterface;
    this.hostAddress = addresses.host;
    this.address = addresses.namespace;
    this.#child = child;
    this.holder = holder;
    this.#progress = (message) => {
      try {
        options.onProgress?.(`netns ${this.id}: ${message}`);
      } catch {
        // A progress printer must not break a test's fault.
      }
    };
    child.on('message', (message: unknown, handle: unknown) => {
      if (!isHolderReply(message)) return;
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      pending.resolve(message, handle);
    });
    child.on('exit', () => {
      for (const pending of this.#pending.values()) pending.reject(new Error('the namespace holder exited'));
      this.#pending.clear();
    });
    registerCleanup(this, { signals: true });
  }

  /** Creates the namespace, the veth pair and their addresses. stop() it (tests: in `after`). */
  static async start(options: NetnsPartitionOptions = {}): Promise<NetnsPartition> {
    const reason = netnsUnavailable();
    if (reason) throw unavailable(reason);
    const child = spawn('unshare', ['--net', '--', process.execPath, HOLDER_MAIN], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer within 15 s')), REPLY_TIMEOUT_MS);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${signal ?? `code ${code}`}`));
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    try {
      await ready;
    } catch (error) {
      child.kill('SIGKILL');
      throw unavailable(`the namespace holder did not start (${(error as Error).message})`, error);
    }
    const holder = processRef(child.pid);
    if (!holder) {
      child.kill('SIGKILL');
      throw unavailable('the namespace holder has no PID');
    }
    let created: { id: string; hostInterface: string; namespaceInterface: string } | undefined;
    let addresses: { host: string; namespace: string } | undefined;
    try {
      // A random name and block; another test file may be choosing at the same moment, hence the retries.
      for (let attempt = 0; attempt < 8 && !created; attempt++) {
        const id = `${NETNS_LINK_PREFIX}${randomBytes(3).toString('hex')}`;
        const names = { id, hostInterface: `${id}h`, namespaceInterface: `${id}n` };
        try {
          await run('ip', [
            'link',
            'add',
            names.hostInterface,
            'type',
            'veth',
            'peer',
            'name',
            names.namespaceInterface,
            'netns',
            String(holder.pid),
          ]);
          created = names;
        } catch (error) {
          if (!/exists/i.test((error as Error).message)) throw error;
        }
      }
      if (!created) throw new Error('no free veth name after 8 attempts');
      const inUse = await addressesInUse();
      for (let attempt = 0; attempt < 32 && !addresses; attempt++) {
        const candidate = blockAddresses(randomInt(SUBNET_BLOCKS));
        if (!inUse.has(candidate.host) && !inUse.has(candidate.namespace)) addresses = candidate;
      }
      if (!addresses) throw new Error('no free /30 in 198.18.0.0/15 after 32 attempts');
      await run('ip', ['addr', 'add', `${addresses.host}/30`, 'dev', created.hostInterface]);
      await run('ip', ['link', 'set', created.hostInterface, 'up']);
    } catch (error) {
      // The holder takes the namespace end, and with it the host end, when it goes.
      child.kill('SIGKILL');
      throw new DmrError('INTERNAL', `could not set up the veth pair: ${(error as Error).message}`, { cause: error });
    }
    const partition = new NetnsPartition(created, addresses, child, holder, options);
    try {
      await partition.#ip([
        ['link', 'set', 'lo', 'up'],
        ['addr', 'add', `${addresses.namespace}/30`, 'dev', created.namespaceInterface],
        ['link', 'set', created.namespaceInterface, 'up'],
        ['rule', 'add', 'pref', LOCAL_RULE_PREF, 'lookup', 'local'],
        ['rule', 'del', 'pref', '0', 'lookup', 'local'],
      ]);
    } catch (error) {
      await partition.stop();
      throw error;
    }
    partition.#progress(
      `${created.hostInterface} ${addresses.host} ⇄ ${created.namespaceInterface} ${addresses.namespace} (holder pid ${holder.pid})`,
    );
    return partition;
  }

  get state(): NetnsPartitionState {
    return this.#state;
  }

  /**
   * A listener in the namespace on `address` whose connections this process
   * forwards to 127.0.0.1:`targetPort` (a broker's AMQPS port): give
   * `endpoint.host`/`endpoint.port` to the client that should cross the veth.
   */
  async expose(targetPort: number, options: { listenPort?: number } = {}): Promise<NetnsEndpoint> {
    this.#assertUsable('expose a port');
    const { reply, handle } = await this.#request({
      op: 'listen',
      id: 0,
      host: this.address,
      port: options.listenPort ?? 0,
    });
    if (reply.op !== 'listening' || !isServer(handle)) {
      throw new DmrError('INTERNAL', `the namespace holder did not hand over a listener (${JSON.stringify(reply)})`);
    }
    const proxy = TcpProxy.adopt(handle, { host: this.address, port: reply.port }, { port: targetPort });
    this.#proxies.push(proxy);
    this.#progress(`${this.address}:${reply.port} → 127.0.0.1:${targetPort}`);
    return {
      host: this.address,
      port: reply.port,
      target: { ...proxy.target },
      get stats() {
        return proxy.stats;
      },
    };
  }

  /** Cuts the path in the kernel; see the module comment for what each mode looks like to the endpoints. */
  async partition(mode: PartitionMode = 'drop'): Promise<void> {
    this.#assertUsable('partition');
    if (this.#state !== 'open') {
      throw new DmrError('CONFLICT', `netns ${this.id} is already partitioned (${this.#state}); heal() it first`);
    }
    if (mode === 'drop') {
      await this.#ip([
        ['rule', 'add', 'pref', DROP_RULE_PREF[0], 'from', this.hostAddress, 'blackhole'],
        ['rule', 'add', 'pref', DROP_RULE_PREF[1], 'to', this.hostAddress, 'blackhole'],
      ]);
    } else {
      await this.#ip([['link', 'set', this.namespaceInterface, 'down']]);
    }
    this.#state = mode;
    this.#progress(`partitioned (${mode})`);
  }

  /** Undoes partition(): packets flow again; connections that did not time out meanwhile carry on. */
  async heal(): Promise<void> {
    this.#assertUsable('heal');
    if (this.#state === 'drop') {
      await this.#ip([
        ['rule', 'del', 'pref', DROP_RULE_PREF[0]],
        ['rule', 'del', 'pref', DROP_RULE_PREF[1]],
      ]);
    } else if (this.#state === 'link-down') {
      // The address stays on a downed link, and its connected route comes back with the link.
      await this.#ip([['link', 'set', this.namespaceInterface, 'up']]);
    }
    this.#state = 'open';
    this.#progress('healed');
  }

  /**
   * Closes every endpoint, ends the holder and waits until the kernel has
   * removed the veth pair (namespace teardown is asynchronous). Idempotent.
   */
  stop(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = (async () => {
        const wasPartitioned = this.#state !== 'open';
        this.#state = 'stopped';
        // RST, not FIN: a socket closed gracefully into a dead path lingers orphaned in the namespace (FIN_WAIT,
        // retransmitting for minutes) and keeps the namespace, and so the veth pair, alive that long.
        for (const proxy of this.#proxies) proxy.cut();
        await Promise.all(this.#proxies.map((proxy) => proxy.close()));
        if (wasPartitioned) this.#progress('stopped while partitioned');
        if (this.#child.connected) this.#child.disconnect();
        const exited = await waitUntil(() => !isRunning(this.holder), 5000);
        if (!exited) {
          signalProcess(this.holder, 'SIGKILL');
          await waitUntil(() => !isRunning(this.holder), 5000);
        }
        const gone = await waitUntil(async () => !(await linkExists(this.hostInterface)), 30_000);
        unregisterCleanup(this);
        if (!gone) {
          throw new DmrError(
            'INTERNAL',
            `${this.hostInterface} still exists 30 s after its namespace's holder exited`,
            {
              hint: 'a TCP socket of the namespace is still open (ss -tanp); the kernel removes the pair once it is closed',
            },
          );
        }
        this.#progress('stopped; veth pair removed');
      })();
    }
    return this.#stopping;
  }

  /** @internal */
  async stopForSignal(): Promise<void> {
    await this.stop().catch(() => undefined);
  }

  /** @internal The holder would exit by itself when this process does; this only makes it immediate. */
  killNowSync(): void {
    signalProcess(this.holder, 'SIGKILL');
    unregisterCleanup(this);
  }

  #assertUsable(what: string): void {
    if (this.#stopping) throw new DmrError('INVALID_ARGUMENT', `cannot ${what}: netns ${this.id} was stopped`);
  }

  async #ip(commands: string[][]): Promise<void> {
    const { reply } = await this.#request({ op: 'ip', id: 0, commands });
    if (reply.op === 'failed') {
      throw new DmrError('INTERNAL', `in netns ${this.id}: ${reply.message}`, { details: { commands } });
    }
  }

  #request(request: HolderRequest): Promise<{ reply: HolderReply; handle: unknown }> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new DmrError('INTERNAL', `netns ${this.id}: the holder did not answer ${request.op} within 15 s`));
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(id, {
        resolve: (reply, handle) => {
          clearTimeout(timer);
          if (reply.op === 'failed' && request.op === 'listen') {
            reject(new DmrError('INTERNAL', `in netns ${this.id}: ${reply.message}`));
          } else resolve({ reply, handle });
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      if (!this.#child.connected) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new DmrError('INTERNAL', `netns ${this.id}: the holder is gone`));
        return;
      }
      this.#child.send({ ...request, id });
    });
  }
}

function isServer(handle: unknown): handle is Server {
  return typeof handle === 'object' && handle !== null && typeof (handle as Server).listen === 'function';
}

export async function linkExists(name: string): Promise<boolean> {
  const text = await run('ip', ['-o', 'link', 'show']);
  return text.split('\n').some((line) => line.split(':')[1]?.trim().split('@')[0] === name);
}

/** Host interfaces named like this helper's (`dmrp…h`): what a test checks for leftovers. */
export async function netnsLinksOnHost(): Promise<string[]> {
  const text = await run('ip', ['-o', 'link', 'show']);
  return text
    .split('\n')
    .map((line) => line.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter((name) => new RegExp(`^${NETNS_LINK_PREFIX}[0-9a-f]{6}[hn]$`).test(name));
}

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
}
