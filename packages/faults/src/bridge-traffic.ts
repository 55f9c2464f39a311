/**
 * Traffic through two HTTP bridges as Bürokratt services see DMR: a service
 * POSTs v1 messages to the sending bridge (`dmr bridge run`, a process of
 * its own) and retries a 503 with the same id, as docs/bridge.md tells it
 * to; the receiving bridge (another process) POSTs each message to an
 * endpoint served here, which is "the application". It dedups on the
 * `Idempotency-Key` the bridge sends, as docs/bridge.md asks endpoints to:
 * a repeated POST of a key it answered 2xx is answered 200 again without
 * handling it (a redelivery: delivery to an endpoint is at least once); a
 * second handling of an id would be a duplicate at the application.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { DmrError } from '@dmr/core';
import { spawnLogged, type LoggedChild } from '@dmr/mesh';
import { Ledger } from './ledger.js';
import { Pacer, type Traffic } from './traffic.js';
import { DMR, type ClientFiles, type World } from './world.js';

/** A free TCP port on loopback (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** What the endpoint did with one POST of a message id. */
export type Arrival = 'handled' | 'repeat';

/** The receiving application: an HTTP endpoint that dedups on Idempotency-Key, records every arrival, and can go down. */
export class Endpoint {
  readonly port: number;
  readonly #onMessage: (id: string, arrival: Arrival) => void;
  /** Idempotency keys answered 2xx: in memory, as long as the run (a real endpoint keeps them durably for the node's dedup window). */
  readonly #handledKeys = new Set<string>();
  #server: Server | undefined;
  /** Added to every answer: keeps deliveries in flight at the bridge. */
  delayMs = 0;

  private constructor(port: number, onMessage: (id: string, arrival: Arrival) => void) {
    this.port = port;
    this.#onMessage = onMessage;
  }

  static async start(onMessage: (id: string, arrival: Arrival) => void): Promise<Endpoint> {
    const endpoint = new Endpoint(await freePort(), onMessage);
    await endpoint.up();
    return endpoint;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/dmr/messages`;
  }

  get isUp(): boolean {
    return this.#server !== undefined;
  }

  /** Listens (again) on its port. */
  async up(): Promise<void> {
    if (this.#server !== undefined) return;
    const server = createServer((request, response) => void this.#handle(request, response));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
  }

  /** Stops listening and drops every open connection: the bridge sees refused connections. */
  async down(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let id: unknown;
    try {
      id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown }).id;
    } catch {
      id = undefined;
    }
    if (typeof id !== 'string') {
      response.writeHead(400).end();
      return;
    }
    // The Structured Field string the bridge sends ("<id>"); a bare token is taken as is.
    const header = request.headers['idempotency-key'];
    const key = typeof header === 'string' ? header.replace(/^"(.*)"$/, '$1') : undefined;
    if (this.delayMs > 0) await sleep(this.delayMs);
    // Taken only if the answer can still be sent: a closed endpoint did not take it.
    if (response.destroyed) return;
    if (key !== undefined && this.#handledKeys.has(key)) this.#onMessage(id, 'repeat');
    else {
      if (key !== undefined) this.#handledKeys.add(key);
      this.#onMessage(id, 'handled');
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  }
}

export interface BridgeSpec {
  client: ClientFiles;
  brokerUrl: string;
  endpointUrl: string;
  listenPort: number;
}

/** One `dmr bridge run` process with its own configuration file and log. */
export class BridgeProcess {
  readonly spec: BridgeSpec;
  readonly configFile: string;
  readonly logFile: string;
  #child: LoggedChild | undefined;

  constructor(world: World, spec: BridgeSpec) {
    this.spec = spec;
    this.configFile = join(world.dir, `bridge-${spec.client.id}.yaml`);
    this.logFile = join(world.mesh.paths.logsDir, `bridge-${spec.client.id}.log`);
  }

  get url(): string {
    return `http://127.0.0.1:${this.spec.listenPort}`;
  }

  get pid(): number | undefined {
    return this.#child?.ref.pid;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const { client } = this.spec;
    const config = {
      id: client.id,
      node: client.node,
      listen: `127.0.0.1:${this.spec.listenPort}`,
      broker: { url: this.spec.brokerUrl },
      tls: { certFile: client.certFile, keyFile: client.keyFile, caFile: client.caFile },
      endpoint: { url: this.spec.endpointUrl, timeoutMs: 30_000 },
      // Retries fast enough that a minute's outage is a few attempts, and enough of them to outlast it.
      delivery: { concurrency: 16, maxAttempts: 1_000, initialDelayMs: 200, maxDelayMs: 2_000 },
      send: { confirmTimeoutMs: 5_000, retryAfterSeconds: 1 },
      logLevel: 'info',
    };
    await writeFile(this.configFile, stringify(config), { mode: 0o600 });
    const child = spawnLogged(DMR.command, [...DMR.args, 'bridge', 'run', '--config', this.configFile], {
      logFile: this.logFile,
    });
    this.#child = child;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.child.exitCode !== null) {
        throw new DmrError('FAULT_SCENARIO_FAILED', `the bridge of ${client.id} exited at start`, {
          hint: `see ${this.logFile}`,
        });
      }
      const health = await fetch(`${this.url}/v1/health`).catch(() => undefined);
      if (health?.status === 200) return;
      if (Date.now() > deadline) {
        throw new DmrError('FAULT_SCENARIO_FAILED', `the bridge of ${client.id} not healthy after ${timeoutMs} ms`, {
          hint: `see ${this.logFile}`,
        });
      }
      await sleep(200);
    }
  }

  /** SIGKILL (a crash: no drain, no hand-back) and wait until it is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.child.kill('SIGKILL'); // our own child, by PID
    await child.exited;
  }

  /** SIGTERM: the bridge drains and hands back what it still holds. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.child.exitCode !== null || child.child.signalCode !== null) return;
    child.child.kill('SIGTERM');
    const gone = await Promise.race([child.exited.then(() => true), sleep(30_000).then(() => false)]);
    if (!gone) await this.kill();
  }
}

export interface BridgeTrafficOptions {
  world: World;
  from: ClientFiles;
  to: ClientFiles;
}

/** What the sending service saw: answers by status. */
export type AnswerCounts = Record<string, number>;

export class BridgeTraffic implements Traffic {
  readonly ledger: Ledger;
  readonly sender: BridgeProcess;
  readonly receiver: BridgeProcess;
  readonly endpoint: Endpoint;
  /** Every answer of the sending bridge, by HTTP status (or "error" for no answer). */
  readonly answers: AnswerCounts = {};
  readonly #pacer: Pacer;
  readonly #to: string;
  /** How long the service keeps retrying one message that gets 503s or no answer. */
  retryForMs = 300_000;

  private constructor(ledger: Ledger, sender: BridgeProcess, receiver: BridgeProcess, endpoint: Endpoint, to: string) {
    this.ledger = ledger;
    this.sender = sender;
    this.receiver = receiver;
    this.endpoint = endpoint;
    this.#to = to;
    this.#pacer = new Pacer((id) => this.#post(id), 2_000);
  }

  static async open(options: BridgeTrafficOptions): Promise<BridgeTraffic> {
    const { world } = options;
    const ledger = new Ledger();
    const endpoint = await Endpoint.start((id, arrival) =>
      arrival === 'handled' ? ledger.delivered(id) : ledger.repeated(id),
    );
    const receiver = new BridgeProcess(world, {
      client: options.to,
      brokerUrl: world.amqpsUrl(options.to.node),
      endpointUrl: endpoint.url,
      listenPort: await freePort(),
    });
    const sender = new BridgeProcess(world, {
      client: options.from,
      brokerUrl: world.amqpsUrl(options.from.node),
      // The sending bridge delivers what comes to its own client to nowhere the scenario watches.
      endpointUrl: 'http://127.0.0.1:9/unused',
      listenPort: await freePort(),
    });
    const traffic = new BridgeTraffic(ledger, sender, receiver, endpoint, options.to.id);
    try {
      await receiver.start();
      await sender.start();
    } catch (error) {
      await traffic.close();
      throw error;
    }
    return traffic;
  }

  get inFlight(): number {
    return this.#pacer.inFlight;
  }

  start(ratePerSecond: number): void {
    this.#pacer.start(ratePerSecond);
  }

  stop(timeoutMs: number): Promise<void> {
    return this.#pacer.stop(timeoutMs);
  }

  async #post(id: string): Promise<void> {
    this.ledger.sent(id);
    const now = new Date().toISOString();
    const body = JSON.stringify({
      id,
      recipientId: this.#to,
      timestamp: now,
      type: 'ChatMessage',
      payload: {
        chat: { id: 'fault-chat', created: now },
        messages: [{ id, chatId: 'fault-chat', content: 'probe', authorTimestamp: now, authorRole: 'end-user' }],
      },
    });
    const giveUpAt = Date.now() + this.retryForMs;
    for (;;) {
      let status: string;
      let retryAfterMs = 1_000;
      try {
        const answer = await fetch(`${this.sender.url}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(15_000),
        });
        await answer.arrayBuffer();
        status = String(answer.status);
        const retryAfter = Number(answer.headers.get('retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter > 0) retryAfterMs = Math.min(retryAfter * 1000, 5_000);
      } catch {
        status = 'error';
      }
      this.answers[status] = (this.answers[status] ?? 0) + 1;
      if (status === '202') {
        this.ledger.accepted(id);
        return;
      }
      // 503 or no answer: not taken (or not known to be); the same id again is safe (MESSAGE_REPLAYED).
      if ((status !== '503' && status !== 'error') || Date.now() > giveUpAt) {
        this.ledger.notAccepted(id, `HTTP ${status}`);
        return;
      }
      await sleep(retryAfterMs);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.sender.stop(), this.receiver.stop()]);
    await this.endpoint.down();
  }
}
