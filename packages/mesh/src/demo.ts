/**
 * The two demo clients. Each makes its own key and CSR, enrols with a
 * one-time token (CentOps never sees the key), connects over AMQPS with its
 * certificate (EXTERNAL auth) to its own home node and talks only through
 * DMR: bot-a asks bot-b a question every interval through `dmr.ingress`;
 * bot-b answers each one the same way; bot-a times the round trip. With
 * more than one node they live on the first and the last, so every question
 * and every answer crosses the mesh.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { connectWithCertificate } from '@dmr/broker';
import {
  CONTRACT_VERSION,
  DELIVERY_REPORT_TYPE,
  INGRESS_EXCHANGE,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  VERSION_HEADER,
  clientQueueName,
  vhostName,
} from '@dmr/contract';
import { DmrError, spiffeId } from '@dmr/core';
import { brokerServerCheck, isServerIdentityMismatch, obtainCertificate, writeFilesAtomic } from '@dmr/pki';
import type { CentOpsApi } from './centops-client.js';

export { DELIVERY_REPORT_TYPE, INGRESS_EXCHANGE } from '@dmr/contract';

export interface EnrolledClient {
  id: string;
  /** The certificate's SPIFFE id: the broker user it logs in as, and so its `user_id`. */
  spiffeId: string;
  organisation: string;
  certificateFile: string;
  keyFile: string;
  chainPem: string;
  privateKeyPem: string;
  serial: string;
}

/** Token from the admin API, key and CSR here, certificate from the enrolment listener. */
export async function enrolClient(options: {
  api: CentOpsApi;
  enrol: CentOpsApi;
  id: string;
  organisation: string;
  trustDomain: string;
  dir: string;
}): Promise<EnrolledClient> {
  const { token } = await options.api.call<{ token: string }>('POST', '/v1/tokens', {
    id: options.id,
    kind: 'client',
    ttl: '15m',
  });
  // The shared enrolment client makes the key and CSR here and checks CentOps' answer belongs to both.
  const issued = await obtainCertificate({
    id: options.id,
    kind: 'client',
    trustDomain: options.trustDomain,
    what: `enrolment of ${options.id}`,
    send: (csr) => options.enrol.enrolWith(token, csr),
  });
  const privateKeyPem = issued.privateKeyPem;
  const dir = join(options.dir, options.id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certificateFile = join(dir, `${options.id}.crt`);
  const keyFile = join(dir, `${options.id}.key`);
  await writeFilesAtomic([
    { path: keyFile, data: privateKeyPem, mode: 0o600, overwrite: true },
    { path: certificateFile, data: issued.chainPem, mode: 0o644, overwrite: true },
  ]);
  return {
    id: options.id,
    spiffeId: spiffeId(options.trustDomain, 'client', options.id),
    organisation: options.organisation,
    certificateFile,
    keyFile,
    chainPem: issued.chainPem,
    privateKeyPem,
    serial: issued.serial,
  };
}

export type DemoEvent =
  | { kind: 'round-trip'; seq: number; latencyMs: number }
  | { kind: 'refused'; seq: number | null; reason: string; detail: string }
  | { kind: 'timeout'; seq: number }
  | { kind: 'connection'; client: string; message: string };

/** A demo client and where it connects: its home node's broker. */
export interface DemoParty {
  client: EnrolledClient;
  node: string;
  amqpsPort: number;
}

export interface DemoOptions {
  /** Roots and intermediate the brokers' server certificates chain to. */
  caPem: string;
  /** The mesh's trust domain: a node's broker must present that node's certificate, `spiffe://<td>/node/<id>`. */
  trustDomain: string;
  asker: DemoParty;
  answerer: DemoParty;
  intervalMs?: number;
  /** A question unanswered this long is reported once and forgotten. */
  answerTimeoutMs?: number;
  onEvent: (event: DemoEvent) => void;
}

interface Party {
  client: EnrolledClient;
  connection: ChannelModel;
  channel: ConfirmChannel;
}

function headerString(message: ConsumeMessage, name: string): string | undefined {
  const value = (message.properties.headers as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
}

/** Runs the exchange until stop(). Connections are retried: the node may still be creating the users. */
export class DemoExchange {
  readonly #options: DemoOptions;
  readonly #pending = new Map<string, { seq: number; sentAt: number }>();
  readonly #parties: Party[] = [];
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;
  #stopped = false;
  sent = 0;

  constructor(options: DemoOptions) {
    this.#options = options;
  }

  /** Connects both clients (retrying for up to `timeoutMs`) and starts asking. */
  async start(timeoutMs = 60_000): Promise<void> {
    const { asker, answerer } = this.#options;
    const answering = await this.#connect(answerer, timeoutMs);
    await answering.channel.consume(clientQueueName(answerer.client.id), (message) => {
      if (message !== null) void this.#answer(answering, message);
    });
    const asking = await this.#connect(asker, timeoutMs);
    await asking.channel.consume(clientQueueName(asker.client.id), (message) => {
      if (message !== null) this.#received(asking, message);
    });
    const interval = this.#options.intervalMs ?? 1000;
    this.#timer = setInterval(() => void this.#ask(asking), interval);
    void this.#ask(asking);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await Promise.allSettled(this.#parties.map((party) => party.connection.close()));
  }

  async #connect(at: DemoParty, timeoutMs: number): Promise<Party> {
    const { client } = at;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const connection = await connectWithCertificate({
          port: at.amqpsPort,
          vhost: vhostName(at.node),
          caPem: this.#options.caPem,
          certificatePem: client.chainPem,
          privateKeyPem: client.privateKeyPem,
          // The node agent installed the node certificate on the broker: only that node may answer.
          tls: { checkServerIdentity: brokerServerCheck(this.#options.trustDomain, at.node) },
        });
        const channel = await connection.createConfirmChannel();
        await channel.prefetch(20);
        connection.on('close', () => {
          if (!this.#stopped) {
            this.#options.onEvent({
              kind: 'connection',
              client: client.id,
              message: 'connection closed by the broker',
            });
          }
        });
        connection.on('error', () => undefined);
        const party = { client, connection, channel };
        this.#parties.push(party);
        return party;
      } catch (error) {
        // Another identity on the broker's port is not a node still starting: waiting will not change it.
        if (isServerIdentityMismatch(error)) throw error;
        if (this.#stopped || Date.now() > deadline) {
          throw new DmrError(
            'MESH_START_FAILED',
            `${client.id} cannot connect to ${at.node} over AMQPS: ${error instanceof Error ? error.message : String(error)}`,
            {
              details: { client: client.id, attempts: attempt },
              hint: 'the node has not created its broker user yet; see the node log (dmr status shows where)',
              cause: error,
            },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 200 * attempt)));
      }
    }
  }

  async #publish(from: Party, to: string, body: unknown, extra: { correlationId?: string } = {}): Promise<string> {
    const messageId = randomUUID();
    await new Promise<void>((resolve, reject) => {
      from.channel.publish(
        INGRESS_EXCHANGE,
        '',
        Buffer.from(JSON.stringify(body)),
        {
          messageId,
          userId: from.client.spiffeId,
          type: 'ChatMessage',
          timestamp: Math.floor(Date.now() / 1000),
          contentType: 'application/json',
          persistent: true,
          headers: { [RECIPIENT_HEADER]: to, [VERSION_HEADER]: CONTRACT_VERSION },
          ...extra,
        },
        (error: unknown) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve()),
      );
    });
    return messageId;
  }

  async #ask(asking: Party): Promise<void> {
    if (this.#stopped) return;
    const now = performance.now();
    const timeoutMs = this.#options.answerTimeoutMs ?? 10_000;
    for (const [id, pending] of this.#pending) {
      if (now - pending.sentAt > timeoutMs) {
        this.#pending.delete(id);
        this.#options.onEvent({ kind: 'timeout', seq: pending.seq });
      }
    }
    const seq = ++this.#seq;
    const sentAt = performance.now();
    try {
      const id = await this.#publish(asking, this.#options.answerer.client.id, {
        question: `question #${seq}: what is the opening time of the service desk?`,
        seq,
      });
      this.#pending.set(id, { seq, sentAt });
      this.sent++;
    } catch (error) {
      if (!this.#stopped) {
        this.#options.onEvent({
          kind: 'connection',
          client: asking.client.id,
          message: `publish failed: ${error instanceof Error ? error.message : String(error)}`,
        });
      }
    }
  }

  async #answer(answering: Party, message: ConsumeMessage): Promise<void> {
    try {
      if (message.properties.type === 'ChatMessage') {
        const sender = headerString(message, SENDER_HEADER) ?? this.#options.asker.client.id;
        const question = JSON.parse(message.content.toString('utf8')) as { seq?: number };
        await this.#publish(
          answering,
          sender,
          { answer: `answer to #${question.seq ?? '?'}: 9:00 to 17:00` },
          {
            correlationId: String(message.properties.messageId),
          },
        );
      }
      answering.channel.ack(message);
    } catch {
      if (!this.#stopped) answering.channel.nack(message, false, true);
    }
  }

  #received(asking: Party, message: ConsumeMessage): void {
    const correlation =
      typeof message.properties.correlationId === 'string' ? message.properties.correlationId : undefined;
    const pending = correlation === undefined ? undefined : this.#pending.get(correlation);
    if (message.properties.type === DELIVERY_REPORT_TYPE) {
      let reason = 'unknown';
      let detail = '';
      try {
        const report = JSON.parse(message.content.toString('utf8')) as { reason?: unknown; detail?: unknown };
        reason = typeof report.reason === 'string' ? report.reason : reason;
        detail = typeof report.detail === 'string' ? report.detail : '';
      } catch {
        // A report we cannot read is still a refusal.
      }
      if (correlation !== undefined) this.#pending.delete(correlation);
      this.#options.onEvent({ kind: 'refused', seq: pending?.seq ?? null, reason, detail });
    } else if (pending !== undefined && correlation !== undefined) {
      this.#pending.delete(correlation);
      this.#options.onEvent({ kind: 'round-trip', seq: pending.seq, latencyMs: performance.now() - pending.sentAt });
    }
    asking.channel.ack(message);
  }
}
