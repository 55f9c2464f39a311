import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeliveryReport } from '@dmr/sdk';
import { Verdicts } from './verdicts.js';

function report(messageId: string, reason: DeliveryReport['reason'] = 'RECIPIENT_UNKNOWN'): DeliveryReport {
  return { messageId, status: 'rejected', reason, detail: 'test', node: 'node-a', at: new Date() };
}

describe('Verdicts', () => {
  it('a first message waits; silence trusts the recipient', async () => {
    const verdicts = new Verdicts({ waitMs: 20, cacheMs: 60_000 });
    assert.equal(verdicts.mustWait('rik-bot'), true);
    verdicts.sent('a', 'rik-bot');
    assert.equal(await verdicts.listen('a').wait(), undefined);
    assert.equal(verdicts.mustWait('rik-bot'), false);
  });

  it('a report (even one that beat the confirm) is the verdict; a refusal un-trusts the recipient', async () => {
    const verdicts = new Verdicts({ waitMs: 5_000, cacheMs: 60_000 });
    verdicts.sent('b', 'nobody');
    const pending = verdicts.listen('b');
    assert.deepEqual(verdicts.onReport(report('b')), { recipient: 'nobody', awaited: true });
    assert.equal((await pending.wait())?.reason, 'RECIPIENT_UNKNOWN');
    // Trusted, then a late refusal for a message nobody waited for.
    verdicts.sent('c', 'rik-bot');
    await new Verdicts({ waitMs: 0, cacheMs: 0 }).listen('x').wait();
    const quick = new Verdicts({ waitMs: 1, cacheMs: 60_000 });
    quick.sent('d', 'rik-bot');
    await quick.listen('d').wait();
    assert.equal(quick.mustWait('rik-bot'), false);
    quick.sent('e', 'rik-bot');
    assert.deepEqual(quick.onReport(report('e')), { recipient: 'rik-bot', awaited: false });
    assert.equal(quick.mustWait('rik-bot'), true);
  });

  it('waitMs 0 never waits', () => {
    assert.equal(new Verdicts({ waitMs: 0, cacheMs: 0 }).mustWait('x'), false);
  });
});
