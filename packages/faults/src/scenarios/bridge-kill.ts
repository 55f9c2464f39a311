/**
 * The receiving bridge SIGKILLed while deliveries are in flight (the
 * endpoint answers slowly, so up to `delivery.concurrency` POSTs are under
 * way): no drain, no hand-back. Its unacked messages go back to the queue
 * when the connection dies; a new bridge process delivers them. A POST the
 * endpoint took whose ack died with the bridge is delivered again by the
 * wire — the bridge's dedup cannot know it, so the endpoint may see it
 * twice (the duplicates column says whether it did). Healed = the new
 * bridge healthy.
 */
import type { Scenario } from '../scenario.js';

export const bridgeKill: Scenario = {
  name: 'bridge-kill',
  title: 'bridge SIGKILL, deliveries in flight',
  world: { nodes: 1, routers: 2 },
  traffic: 'bridge',
  async run({ traffic, say, flowing, settings }) {
    traffic.endpoint.delayMs = 500;
    await flowing(Math.ceil(settings.rate / 2));
    say(`SIGKILL the receiving bridge (pid ${traffic.receiver.pid ?? '?'})`);
    await traffic.receiver.kill();
    await traffic.receiver.start();
    const healedAt = Date.now();
    traffic.endpoint.delayMs = 0;
    say('a new receiving bridge is healthy');
    await flowing();
    return { healedAt, note: 'endpoint answering in 500 ms during the kill; bridge restarted at once' };
  },
};
