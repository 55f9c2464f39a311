/**
 * The Bürokratt v1 message (docs/contract.md "Appendix: the Bürokratt v1 message"):
 * what existing Bürokratt services POST to their DMR agent and expect to be
 * POSTed back. The shapes are closed (`additionalProperties: false` at every
 * level) so a typo in a field name is a 400 naming the field, not a field
 * silently dropped on the way to another organisation.
 *
 * Mapping onto a DMR message (docs/bridge.md "Mapping"):
 * - `id` → AMQP `message_id`, lowercased (the node accepts lowercase UUIDs only);
 * - `recipientId` → header `dmr-recipient`; `type` → property `type`;
 * - the AMQP body is the v1 object without its routing field `recipientId`:
 *   `{id, timestamp, type, payload}` as JSON, so the original `timestamp` string
 *   survives (the AMQP timestamp is the publish time in whole seconds, which the
 *   node checks against its clock);
 * - on delivery, `id`, `type`, `recipientId` and `senderId` come from the
 *   authenticated AMQP metadata (never from the body), `timestamp` and `payload`
 *   from the body.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type ValueError } from '@sinclair/typebox/compiler';
import { ID_PATTERN_SOURCE } from '@dmr/core';

/** Any-case UUID: v1 senders may use uppercase; the bridge lowercases it for the node. */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
/** ISO 8601 date and time (RFC 3339 profile; seconds, fraction and zone optional). */
export const ISO_TIME_PATTERN =
  '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}(:?\\d{2})?)?$';

const Text = Type.String();
const Time = Type.String({ pattern: ISO_TIME_PATTERN, description: 'an ISO 8601 time' });
const closed = { additionalProperties: false } as const;

export const V1Chat = Type.Object(
  {
    id: Text,
    created: Time,
    endUserFirstName: Type.Optional(Text),
    endUserLastName: Type.Optional(Text),
    endUserId: Type.Optional(Text),
    endUserEmail: Type.Optional(Text),
    endUserPhone: Type.Optional(Text),
    customerSupportDisplayName: Type.Optional(Text),
    endUserOs: Type.Optional(Text),
    endUserUrl: Type.Optional(Text),
  },
  closed,
);

export const V1ChatMessage = Type.Object(
  {
    id: Text,
    chatId: Text,
    content: Text,
    authorTimestamp: Time,
    authorRole: Text,
    event: Type.Optional(Text),
    csaTitle: Type.Optional(Text),
    authorId: Type.Optional(Text),
    authorFirstName: Type.Optional(Text),
    authorLastName: Type.Optional(Text),
    forwardedByUser: Type.Optional(Text),
    forwardedFromCsa: Type.Optional(Text),
    forwardedToCsa: Type.Optional(Text),
    originalBaseId: Type.Optional(Text),
    originalCreated: Type.Optional(Text),
    rating: Type.Optional(Text),
    created: Type.Optional(Text),
    preview: Type.Optional(Text),
    updated: Type.Optional(Text),
    buttons: Type.Optional(Text),
    options: Type.Optional(Text),
  },
  closed,
);

export const V1Payload = Type.Object({ chat: V1Chat, messages: Type.Array(V1ChatMessage) }, closed);

/** The only type today's Bürokratt sends; widen here when another one appears. */
export const V1Type = Type.Literal('ChatMessage');

/** What `POST /v1/messages` accepts. */
export const V1Message = Type.Object(
  {
    id: Type.String({ pattern: UUID_PATTERN, description: 'a UUID' }),
    recipientId: Type.String({ pattern: ID_PATTERN_SOURCE, description: 'a DMR client id (2–63 of a-z, 0-9, -)' }),
    timestamp: Time,
    type: V1Type,
    payload: V1Payload,
  },
  closed,
);

/** What the bridge POSTs to the endpoint: the same fields plus the authenticated `senderId`. */
export const V1Delivered = Type.Object(
  {
    id: Type.String(),
    senderId: Type.String(),
    recipientId: Type.String(),
    timestamp: Time,
    type: V1Type,
    payload: V1Payload,
  },
  closed,
);

/**
 * The AMQP body the bridge sends (the v1 message minus `recipientId`). On
 * receipt only `payload` is required: a plain AMQP or SDK sender may leave out
 * the rest (`timestamp` then becomes the message's AMQP timestamp).
 */
export const V1Body = Type.Object(
  {
    id: Type.Optional(Type.String()),
    timestamp: Type.Optional(Time),
    type: Type.Optional(Type.String()),
    payload: V1Payload,
  },
  closed,
);

export type V1Message = Static<typeof V1Message>;
export type V1Delivered = Static<typeof V1Delivered>;
export type V1Body = Static<typeof V1Body>;
export type V1Payload = Static<typeof V1Payload>;

export interface FieldError {
  /** `body.payload.messages[0].authorRole`, the CentOps API's problem path style. */
  path: string;
  message: string;
}

function problemPath(error: ValueError, root: string): string {
  const segments = error.path
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
  return segments.reduce(
    (path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : `${path}.${segment}`),
    root,
  );
}

function problemMessage(error: ValueError): string {
  const schema: TSchema = error.schema;
  if (error.message === 'Unexpected property') return 'is not a known field';
  if (error.value === undefined) return 'is required';
  if (typeof schema.description === 'string' && typeof schema.pattern === 'string' && typeof error.value === 'string') {
    return `must be ${schema.description}`;
  }
  return error.message.charAt(0).toLowerCase() + error.message.slice(1);
}

function checker<T extends TSchema>(schema: T) {
  const compiled = TypeCompiler.Compile(schema);
  return (value: unknown, root = 'body'): { ok: true; value: Static<T> } | { ok: false; errors: FieldError[] } => {
    if (compiled.Check(value)) return { ok: true, value };
    const errors: FieldError[] = [];
    const seen = new Set<string>();
    for (const error of compiled.Errors(value)) {
      const item = { path: problemPath(error, root), message: problemMessage(error) };
      // A union or a literal can report one path several times; one line per path and message is enough.
      const key = `${item.path}\u0000${item.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      errors.push(item);
    }
    return { ok: false, errors };
  };
}

/** Every field error of a `POST /v1/messages` body (none: the body is a valid v1 message). */
export const checkV1Message = checker(V1Message);
export const checkV1Body = checker(V1Body);
export const checkV1Delivered = checker(V1Delivered);

/** The AMQP body for a v1 message (routing fields go to AMQP properties and headers). */
export function toAmqpBody(message: V1Message): V1Body {
  return { id: message.id.toLowerCase(), timestamp: message.timestamp, type: message.type, payload: message.payload };
}
