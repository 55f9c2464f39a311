/**
 * A test-only link from node A to node B: consumes `dmr.outbound.<B>` at A
 * (as a helper user that may read only that queue) and publishes each
 * message to B's `dmr.mesh-ingress`, logged in with A's node certificate,
 * with its properties as they were — `user_id` included, which B's broker
 * checks against that login, exactly as a shovel logging in as A would. It
 * acks at A only after B's broker confirmed (a shovel's `on-confirm`).
 *
 * It stands in for the reconciler's shovels, and is the tampering middle
 * hop of the tests: `tamper` may change or drop what passes. Not exported
 * from the package index.
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { MESH_INGRESS_EXCHANGE, outboundQueueName } from '@dmr/contract';
import type { NodeFixture } from './node-fixture.js';

/** A message as it passes the link: body and publish properties (headers included). */
export interface LinkMessage {
  content: Buffer;
  properties: Options.Publish & { headers: Record<string, unknown> };
}

/** Returns what to publish instead (the same object, changed, is fine), or undefined to drop it. */
export type Tamper = (message: LinkMessage) => LinkMessage | undefined;

/** The publish properties of a delivered message: amqplib hands every property, unset ones as undefined. */
export function publishPropertiesOf(message: ConsumeMessage): LinkMessage['properties'] {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message.properties)) {
    if (value !== undefined && value !== null) properties[key] = value;
  }
  return {
    ...(properties as Options.Publish),
    headers: { ...(message.properties.headers as Record<string, unknown> | undefined) },
  };
}

export class LinkForwarder {
  readonly from: NodeFixture;
  readonly to: NodeFixture;
  /** Set by a test: applied to every message that passes from now on. */
  tamper: Tamper | undefined;
  /** Every message that passed (after tampering), in order. */
  readonly passed: LinkMessage[] = [];
  /** Messages the far broker refused (not confirmed). */
  failed = 0;
  readonly #source: ChannelModel;
  readonly #sink: ChannelModel;
  readonly #out: ConfirmChannel;
  #consuming: { channel: Channel } | undefined;

  private constructor(
    from: NodeFixture,
    to: NodeFixture,
    source: ChannelModel,
    sink: ChannelModel,
    out: ConfirmChannel,
  ) {
    this.from = from;
    this.to = to;
    this.#source = source;
    this.#sink = sink;
    this.#out = out;
  }

  /**
   * `consume` false: no consumer on the outbound queue (a shovel has it),
   * only what inject() needs — the far broker, logged in as `from`.
   */
  static async start(from: NodeFixture, to: NodeFixture, consume = true): Promise<LinkForwarder> {
    const queue = outboundQueueName(to.nodeId);
    const reader = `link-${to.nodeId}`;
    await from.helperIdentity(reader, { configure: '', write: '', read: `^${queue.replace(/[.-]/g, '\\$&')}$` });
    const source = await from.connectAs(reader);
    const sink = await from.connectToPeer(to);
    const out = await sink.createConfirmChannel();
    out.on('error', () => undefined);
    const forwarder = new LinkForwarder(from, to, source, sink, out);
    if (!consume) return forwarder;
    await forwarder.resume();
    return forwarder;
  }

  /** Stops taking messages from the outbound queue: the link is down, what is sent waits (and may expire) there. */
  async pause(): Promise<void> {
    const consuming = this.#consuming;
    this.#consuming = undefined;
    // Closing the channel hands back what it held unacked: nothing stays in flight.
    await consuming?.channel.close().catch(() => undefined);
  }

  /** Takes messages from the outbound queue again (start() does this first). */
  async resume(): Promise<void> {
    if (this.#consuming !== undefined) return;
    const channel = await this.#source.createChannel();
    channel.on('error', () => undefined);
    await channel.prefetch(100);
    await channel.consume(
      outboundQueueName(this.to.nodeId),
      (message) => {
        if (message === null) return;
        void this.#pass(message).then(
          () => channel.ack(message),
          // B refused it (its channel closed): a test sees the count; a shovel would retry for ever.
          () => {
            this.failed += 1;
            channel.ack(message);
          },
        );
      },
      { noAck: false },
    );
    this.#consuming = { channel };
  }

  async #pass(message: ConsumeMessage): Promise<void> {
    const original: LinkMessage = { content: message.content, properties: publishPropertiesOf(message) };
    const passed = this.tamper === undefined ? original : this.tamper(original);
    if (passed === undefined) return;
    this.passed.push(passed);
    await this.inject(passed);
  }

  /** Publishes `message` to the far node's mesh ingress as this link would (e.g. a second copy of one that passed). */
  inject(message: LinkMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#out.publish(MESH_INGRESS_EXCHANGE, '', message.content, message.properties, (error: unknown) =>
        error === null || error === undefined
          ? resolve()
          : reject(error instanceof Error ? error : new Error(String(error))),
      );
    });
  }

  async stop(): Promise<void> {
    await this.#source.close().catch(() => undefined);
    await this.#sink.close().catch(() => undefined);
  }
}
