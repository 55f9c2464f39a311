/**
 * Hand-made AMQP 0-9-1 frames for hostile-input tests: a basic.publish whose
 * content header carries a field table amqplib itself would refuse to encode
 * (over its 64 KiB buffer, any tag RabbitMQ accepts, repeated keys, nesting).
 *
 * The frames go into the write buffer amqplib keeps for one of its own
 * channels (`connection.channels[ch].buffer`), so they are muxed onto the
 * socket in order with that channel's other frames; follow a raw publish
 * with a synchronous call on the same channel (e.g. `checkQueue`) to know
 * the broker has processed it. Encodings follow the AMQP 0-9-1 spec and
 * RabbitMQ's field-table errata (tags b B s u I i l f d D S x t T V A F).
 * Test-only: not exported from the package index.
 */
import type { Channel, ChannelModel } from 'amqplib';

export type WireValue =
  | { t: 'S'; v: string | Buffer }
  | { t: 'x'; v: Buffer }
  | { t: 'b' | 'B' | 's' | 'u' | 'I' | 'i'; v: number }
  | { t: 'l' | 'T'; v: bigint }
  | { t: 'f' | 'd'; v: number }
  | { t: 'D'; places: number; digits: number }
  | { t: 't'; v: boolean }
  | { t: 'V' }
  | { t: 'A'; v: WireValue[] }
  | { t: 'F'; v: WireTable };

/** Entries in wire order; keys may repeat (a hostile client can send that). */
export type WireTable = Array<[string, WireValue]>;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function shortstr(value: string | Buffer): Buffer {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
  if (bytes.length > 255) throw new RangeError('shortstr over 255 bytes');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

export function encodeWireValue(value: WireValue): Buffer {
  const tag = Buffer.from(value.t, 'latin1');
  let payload: Buffer;
  switch (value.t) {
    case 'S':
    case 'x': {
      const bytes = Buffer.isBuffer(value.v) ? value.v : Buffer.from(value.v, 'utf8');
      payload = Buffer.concat([u32(bytes.length), bytes]);
      break;
    }
    case 'b':
      payload = Buffer.alloc(1);
      payload.writeInt8(value.v);
      break;
    case 'B':
      payload = Buffer.from([value.v]);
      break;
    case 's':
      payload = Buffer.alloc(2);
      payload.writeInt16BE(value.v);
      break;
    case 'u':
      payload = Buffer.alloc(2);
      payload.writeUInt16BE(value.v);
      break;
    case 'I':
      payload = Buffer.alloc(4);
      payload.writeInt32BE(value.v);
      break;
    case 'i':
      payload = u32(value.v);
      break;
    case 'l':
      payload = Buffer.alloc(8);
      payload.writeBigInt64BE(value.v);
      break;
    case 'T':
      payload = Buffer.alloc(8);
      payload.writeBigUInt64BE(value.v);
      break;
    case 'f':
      payload = Buffer.alloc(4);
      payload.writeFloatBE(value.v);
      break;
    case 'd':
      payload = Buffer.alloc(8);
      payload.writeDoubleBE(value.v);
      break;
    case 'D':
      payload = Buffer.concat([Buffer.from([value.places]), u32(value.digits)]);
      break;
    case 't':
      payload = Buffer.from([value.v ? 1 : 0]);
      break;
    case 'V':
      payload = Buffer.alloc(0);
      break;
    case 'A': {
      const items = Buffer.concat(value.v.map(encodeWireValue));
      payload = Buffer.concat([u32(items.length), items]);
      break;
    }
    case 'F':
      payload = encodeWireTable(value.v);
      break;
  }
  return Buffer.concat([tag, payload]);
}

/** A field table: 4-byte length, then shortstr key + tagged value per entry. */
export function encodeWireTable(table: WireTable): Buffer {
  const entries = Buffer.concat(table.map(([key, value]) => Buffer.concat([shortstr(key), encodeWireValue(value)])));
  return Buffer.concat([u32(entries.length), entries]);
}

/** Basic properties a raw publish may carry; `headers` is a raw table; a Buffer is sent as is (any bytes). */
export interface RawProperties {
  contentType?: string | Buffer;
  contentEncoding?: string | Buffer;
  headers?: WireTable;
  deliveryMode?: number;
  priority?: number;
  correlationId?: string | Buffer;
  replyTo?: string | Buffer;
  expiration?: string | Buffer;
  messageId?: string | Buffer;
  /** POSIX seconds. */
  timestamp?: number;
  type?: string | Buffer;
  userId?: string | Buffer;
  appId?: string | Buffer;
}

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([0xce])]);
}

/** The frames of one basic.publish: method, content header, body frames of at most `frameMax` each. */
export function publishFrames(
  channel: number,
  exchange: string,
  routingKey: string,
  properties: RawProperties,
  body: Buffer,
  frameMax = 131_072,
): Buffer {
  const method = Buffer.concat([
    Buffer.from([0, 60, 0, 40, 0, 0]), // class basic, method publish, reserved short
    shortstr(exchange),
    shortstr(routingKey),
    Buffer.from([0]), // mandatory = immediate = false
  ]);
  let flags = 0;
  const list: Buffer[] = [];
  const add = (bit: number, bytes: Buffer): void => {
    flags |= 1 << bit;
    list.push(bytes);
  };
  if (properties.contentType !== undefined) add(15, shortstr(properties.contentType));
  if (properties.contentEncoding !== undefined) add(14, shortstr(properties.contentEncoding));
  if (properties.headers !== undefined) add(13, encodeWireTable(properties.headers));
  if (properties.deliveryMode !== undefined) add(12, Buffer.from([properties.deliveryMode]));
  if (properties.priority !== undefined) add(11, Buffer.from([properties.priority]));
  if (properties.correlationId !== undefined) add(10, shortstr(properties.correlationId));
  if (properties.replyTo !== undefined) add(9, shortstr(properties.replyTo));
  if (properties.expiration !== undefined) add(8, shortstr(properties.expiration));
  if (properties.messageId !== undefined) add(7, shortstr(properties.messageId));
  if (properties.timestamp !== undefined) {
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(properties.timestamp));
    add(6, ts);
  }
  if (properties.type !== undefined) add(5, shortstr(properties.type));
  if (properties.userId !== undefined) add(4, shortstr(properties.userId));
  if (properties.appId !== undefined) add(3, shortstr(properties.appId));
  const header = Buffer.alloc(14);
  header.writeUInt16BE(60, 0);
  header.writeUInt16BE(0, 2);
  header.writeBigUInt64BE(BigInt(body.length), 4);
  header.writeUInt16BE(flags, 12);
  const frames = [frame(1, channel, method), frame(2, channel, Buffer.concat([header, ...list]))];
  const maxBody = frameMax - 8;
  for (let offset = 0; offset < body.length; offset += maxBody) {
    frames.push(frame(3, channel, body.subarray(offset, Math.min(body.length, offset + maxBody))));
  }
  return Buffer.concat(frames);
}

interface AmqplibInternals {
  connection: { channels: Array<{ buffer: { write(bytes: Buffer): boolean } } | undefined>; frameMax: number };
}

/**
 * Publishes raw frames on `channel` (a plain, non-confirm channel of
 * `model`), then waits for a synchronous round trip on it, so the broker has
 * handled the publish when this resolves (or the channel closed: rejects).
 */
export async function rawPublish(
  model: ChannelModel,
  channel: Channel,
  exchange: string,
  properties: RawProperties,
  body: Buffer,
  roundTripQueue: string,
): Promise<void> {
  const internals = model as unknown as AmqplibInternals;
  const number = (channel as unknown as { ch: number }).ch;
  const slot = internals.connection.channels[number];
  if (slot === undefined) throw new Error(`channel ${number} is not open`);
  slot.buffer.write(publishFrames(number, exchange, '', properties, body, internals.connection.frameMax));
  await channel.checkQueue(roundTripQueue);
}
