/**
 * Three nodes in a line; bot-a on node-1 talks to bot-b on node-3, so every
 * message is relayed by node-2. node-2's broker is SIGKILLed and booted
 * again: node-1's link (a shovel) buffers in its outbound queue and
 * reconnects, node-2's routers and its own link to node-3 come back.
 * Healed = node-2's broker ready again.
 */
import type { Scenario } from '../scenario.js';

export const peerBrokerKill: Scenario = {
  name: 'peer-broker-kill',
  title: 'mesh: relay node broker SIGKILL',
  world: { nodes: 3 },
  traffic: 'sdk',
  async run({ world, say, flowing, settings }) {
    await flowing(Math.ceil(settings.rate / 2));
    say("SIGKILL node-2's broker (the relay), then boot it again");
    const report = await world.harness.restartNode(world.brokerIndex('node-2'), { kill: true });
    const healedAt = Date.now();
    say(`node-2's broker ready again after ${(report.downMs / 1000).toFixed(1)} s down`);
    await flowing();
    return { healedAt, note: `relay broker down ${(report.downMs / 1000).toFixed(1)} s` };
  },
};
