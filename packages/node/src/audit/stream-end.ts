/**
 * Where a `dmr.audit` stream ends as of the start of a read, for the readers
 * that must stop (`dmr audit export`, `dmr trace`). A stream tells its
 * consumers of no end, and the readers' other rule — stop once nothing new
 * arrived for a while — never fires while routers keep writing, so on a
 * node with steady traffic a read never returned.
 *
 * A consumer at offset `next` is handed the first entry written after it
 * subscribed: that entry's offset is where the stream ended when the read
 * began. A reader that has read the entry before it has read everything
 * that was there. While nothing new is written the end stays unknown, and
 * the quiet stream ends the read by the idle rule, as before.
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';

/** RabbitMQ's header with a stream entry's offset, on every message a stream consumer is handed. */
export const STREAM_OFFSET_HEADER = 'x-stream-offset';

/** The offset of a delivery from a stream, or undefined when the broker named none. */
export function streamOffset(message: ConsumeMessage): number | undefined {
  const value = message.properties.headers?.[STREAM_OFFSET_HEADER] as unknown;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

export class StreamEnd {
  readonly #channel: Channel;
  #first: number | undefined;

  private constructor(channel: Channel) {
    this.#channel = channel;
  }

  /** Starts watching `stream`; call before the read subscribes, so that the end is not later than its start. */
  static async watch(connection: ChannelModel, stream: string): Promise<StreamEnd> {
    const channel = await connection.createChannel();
    const end = new StreamEnd(channel);
    try {
      await channel.prefetch(1);
      await channel.consume(
        stream,
        (message) => {
          if (message === null || end.#first !== undefined) return;
          end.#first = streamOffset(message);
          // One entry tells the end; the rest of the channel's life is its close.
          void channel.close().catch(() => undefined);
        },
        { arguments: { [STREAM_OFFSET_HEADER]: 'next' } },
      );
    } catch (error) {
      await channel.close().catch(() => undefined);
      throw error;
    }
    return end;
  }

  /** True once a reader that has read up to `lastRead` (an offset, or undefined for nothing) has read all there was. */
  reached(lastRead: number | undefined): boolean {
    if (this.#first === undefined) return false;
    return this.#first === 0 || (lastRead !== undefined && lastRead >= this.#first - 1);
  }

  async close(): Promise<void> {
    await this.#channel.close().catch(() => undefined);
  }
}
