import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from './ledger.js';

function clock(): { now: () => number; at: (t: number) => void } {
  let time = 0;
  return { now: () => time, at: (t) => (time = t) };
}

describe('Ledger', () => {
  it('counts an accepted message that never arrived and has no report as lost, and a reported one as not', () => {
    const ledger = new Ledger();
    for (const id of ['a', 'b', 'c', 'd']) ledger.sent(id);
    ledger.accepted('a');
    ledger.accepted('b');
    ledger.accepted('c');
    ledger.notAccepted('d', 'MESSAGE_NOT_ACCEPTED');
    ledger.delivered('a');
    ledger.reported('b', 'POLICY_DENIED');
    assert.deepEqual(ledger.counts(), {
      sent: 4,
      confirmed: 3,
      delivered: 1,
      reported: 1,
      lost: 1,
      duplicates: 0,
      redeliveries: 0,
      notAccepted: 1,
    });
    assert.deepEqual(ledger.outstanding(), ['c']);
    assert.deepEqual(ledger.reportReasons(), [['POLICY_DENIED', 1]]);
    assert.deepEqual(ledger.notAcceptedReasons(), [['MESSAGE_NOT_ACCEPTED', 1]]);
  });

  it('counts every handling after the first as a duplicate, and ids it never sent as foreign', () => {
    const ledger = new Ledger();
    ledger.sent('a');
    ledger.accepted('a');
    ledger.delivered('a');
    ledger.delivered('a');
    ledger.delivered('a');
    ledger.delivered('someone-else');
    assert.equal(ledger.counts().duplicates, 2);
    assert.equal(ledger.counts().delivered, 1);
    assert.equal(ledger.foreign, 1);
  });

  it('counts a repeat the application dropped by its dedup as a redelivery, not a duplicate', () => {
    const ledger = new Ledger();
    ledger.sent('a');
    ledger.accepted('a');
    ledger.delivered('a');
    ledger.repeated('a');
    ledger.repeated('a');
    ledger.delivered('a');
    const counts = ledger.counts();
    assert.equal(counts.duplicates, 1);
    assert.equal(counts.redeliveries, 3);
    assert.equal(counts.delivered, 1);
  });

  it('a message delivered without a confirm (the confirm was lost with the connection) is delivered, not lost', () => {
    const ledger = new Ledger();
    ledger.sent('a');
    ledger.delivered('a');
    assert.deepEqual(ledger.counts(), {
      sent: 1,
      confirmed: 0,
      delivered: 1,
      reported: 0,
      lost: 0,
      duplicates: 0,
      redeliveries: 0,
      notAccepted: 0,
    });
  });

  it('recovery ends when everything accepted before the heal arrived and the first later message did', () => {
    const time = clock();
    const ledger = new Ledger(time.now);
    time.at(0);
    ledger.sent('before');
    ledger.accepted('before');
    time.at(100);
    ledger.sent('after');
    ledger.accepted('after');
    time.at(150);
    ledger.delivered('after');
    assert.equal(ledger.recoveryMs(50), undefined, 'an accepted message still missing: not recovered');
    time.at(400);
    ledger.delivered('before');
    assert.equal(ledger.recoveryMs(50), 350);
  });

  it('no recovery without a message sent after the heal', () => {
    const time = clock();
    const ledger = new Ledger(time.now);
    ledger.sent('a');
    ledger.accepted('a');
    time.at(10);
    ledger.delivered('a');
    assert.equal(ledger.recoveryMs(20), undefined);
  });
});
