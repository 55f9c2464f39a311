import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkV1Body, checkV1Message, toAmqpBody, type V1Message } from './v1.js';

const valid: V1Message = {
  id: '6F9619FF-8B86-D011-B42D-00C04FC964FF',
  recipientId: 'ppa-bot',
  timestamp: '2026-11-27T17:00:00Z',
  type: 'ChatMessage',
  payload: {
    chat: { id: 'c1', created: '2026-11-27T16:00:00.5+02:00' },
    messages: [{ id: 'm1', chatId: 'c1', content: 'tere', authorTimestamp: '2026-11-27T16:00:01Z', authorRole: 'bot' }],
  },
};

describe('v1 message schema', () => {
  it('accepts the appendix shape, any-case UUID and ISO 8601 times', () => {
    assert.equal(checkV1Message(valid).ok, true);
    assert.equal(checkV1Message({ ...valid, payload: { ...valid.payload, messages: [] } }).ok, true);
  });

  it('lists every field error with a readable path', () => {
    const result = checkV1Message({
      ...valid,
      recipientId: 'PPA BOT',
      type: 'Other',
      extra: 1,
      payload: { chat: { id: 3 }, messages: [{}], more: true },
    });
    assert.equal(result.ok, false);
    if (result.ok) return;
    const byPath = new Map(result.errors.map((error) => [error.path, error.message]));
    assert.equal(byPath.get('body.extra'), 'is not a known field');
    assert.equal(byPath.get('body.payload.more'), 'is not a known field');
    assert.equal(byPath.get('body.payload.chat.created'), 'is required');
    assert.ok(byPath.has('body.payload.chat.id'));
    assert.ok(byPath.has('body.recipientId'));
    assert.ok(byPath.has('body.type'));
    for (const field of ['id', 'chatId', 'content', 'authorTimestamp', 'authorRole']) {
      assert.equal(byPath.get(`body.payload.messages[0].${field}`), 'is required', field);
    }
  });

  it('refuses a non-object body and optional fields that are not strings', () => {
    assert.equal(checkV1Message('hello').ok, false);
    assert.equal(checkV1Message(null).ok, false);
    const result = checkV1Message({
      ...valid,
      payload: { ...valid.payload, chat: { ...valid.payload.chat, endUserEmail: 42 } },
    });
    assert.equal(result.ok, false);
  });

  it('maps to the AMQP body without the routing field and with a lowercase id', () => {
    const body = toAmqpBody(valid);
    assert.deepEqual(Object.keys(body), ['id', 'timestamp', 'type', 'payload']);
    assert.equal(body.id, valid.id.toLowerCase());
    assert.equal(checkV1Body(body).ok, true);
    assert.equal(checkV1Body({ payload: valid.payload }).ok, true, 'a plain AMQP sender may send only payload');
  });
});
