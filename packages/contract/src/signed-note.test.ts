import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { MAX_CHECKPOINT_BYTES, formatCheckpoint, nodeOfWriter, parseCheckpoint } from './checkpoint.js';
import { leafHash } from './merkle.js';
import { NoteSigner, ecdsaKeyId, noteVerifier, openNote, parseNote } from './signed-note.js';

const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const isCode = (code: string) => (error: unknown) => error instanceof DmrError && error.code === code;

describe('signed notes (C2SP, ECDSA type 0x02)', () => {
  it('signs, countersigns and opens a checkpoint; the key id is SHA-256 of the SPKI', () => {
    const node = p256();
    const witness = p256();
    const text = formatCheckpoint({
      origin: 'dmr.test/audit/node-1/router-0',
      size: 5,
      root: leafHash(Buffer.from('x')),
    });
    const note = new NoteSigner('dmr.test/centops/witness', witness.privateKey).cosign(
      new NoteSigner('dmr.test/node/node-1', node.privateKey).sign(text),
    );
    assert.match(
      note,
      /^dmr\.test\/audit\/node-1\/router-0\n5\n[A-Za-z0-9+/]{43}=\n\n— dmr\.test\/node\/node-1 \S+\n— /,
    );
    const spki = node.publicKey.export({ type: 'spki', format: 'der' });
    assert.equal(ecdsaKeyId(node.publicKey), createHash('sha256').update(spki).digest().readUInt32BE(0));

    const nodeKey = noteVerifier('dmr.test/node/node-1', node.publicKey);
    const witnessKey = noteVerifier('dmr.test/centops/witness', witness.publicKey);
    const opened = openNote(note, [nodeKey, witnessKey]);
    assert.equal(opened.text, text);
    assert.deepEqual(opened.signedBy, [nodeKey, witnessKey]);
    assert.deepEqual(parseCheckpoint(opened.text).size, 5);
    // Only the witness known: the node's signature is ignored, the witness' is enough.
    assert.deepEqual(openNote(note, [witnessKey]).signedBy, [witnessKey]);
  });

  it('refuses an edited text, a known key whose signature fails, no known key, and malformed notes', () => {
    const node = p256();
    const key = noteVerifier('dmr.test/node/node-1', node.publicKey);
    const note = new NoteSigner('dmr.test/node/node-1', node.privateKey).sign('origin\n1\nAAAA\n');
    assert.throws(() => openNote(note.replace('\n1\n', '\n2\n'), [key]), isCode('AUDIT_CHECKPOINT_INVALID'));
    // Same name, another key: an unknown key, so nothing known signed it.
    assert.throws(() => openNote(note, [noteVerifier('dmr.test/node/node-1', p256().publicKey)]), /no known key/);
    // Same name and key id, but the key does not match the signature: refused as a failed signature.
    const impostor = { ...key, publicKey: createPublicKey(p256().privateKey) };
    assert.throws(() => openNote(note, [impostor]), /does not verify/);
    for (const bad of [
      'no blank line\n— a AAAAAAA=\n',
      'text\n\n— a b c\n',
      'text\n\n- a AAAAAAAA\n',
      'text\u0007\n\n— a AAAAAAAA\n',
      'text\n\n— a AAAAAAAA',
      `text\n\n${'— a AAAAAAAA\n'.repeat(17)}`,
    ]) {
      assert.throws(() => parseNote(bad), isCode('AUDIT_CHECKPOINT_INVALID'), JSON.stringify(bad));
    }
  });

  it('parses only well-formed checkpoints', () => {
    const root = leafHash(Buffer.from('r'));
    const text = formatCheckpoint({ origin: 'o.example/log', size: 0, root, extensions: ['ext a'] });
    assert.deepEqual(parseCheckpoint(text), { origin: 'o.example/log', size: 0, root, extensions: ['ext a'] });
    for (const bad of [
      'o\n01\nAAAA\n',
      `o\n-1\n${root.toString('base64')}\n`,
      `o\n1\n${root.toString('base64').slice(4)}\n`,
      `o\n1\n${root.toString('base64')}`,
      `o o\n1\n${root.toString('base64')}\n`,
      `o\n1\n${root.toString('base64')}\n\n`,
      // Well formed but larger than any checkpoint DMR writes: refused unread.
      `o\n1\n${root.toString('base64')}\n${'x'.repeat(MAX_CHECKPOINT_BYTES)}\n`,
    ]) {
      assert.throws(() => parseCheckpoint(bad), isCode('AUDIT_CHECKPOINT_INVALID'), JSON.stringify(bad));
    }
    assert.equal(nodeOfWriter('node-1/router-0'), 'node-1');
    assert.equal(nodeOfWriter('node-1'), undefined);
    assert.equal(nodeOfWriter('../x/router-0'), undefined);
  });
});
