/**
 * The node's RabbitMQ SIGKILLed (every process of it: a crash, connections
 * break unannounced, unsynced writes may be lost) and booted again on the
 * same data directory. Publishers, routers and the receiver reconnect;
 * whatever was confirmed is on disk in quorum queues. Healed = the broker
 * ready again.
 */
import type { Scenario } from '../scenario.js';

export const brokerKill: Scenario = {
  name: 'broker-kill',
  title: 'broker SIGKILL + restart',
  world: { nodes: 1, routers: 2 },
  traffic: 'sdk',
  async run({ world, say, flowing, settings }) {
    await flowing(Math.ceil(settings.rate / 2));
    say('SIGKILL the broker of node-1, then boot it again');
    const report = await world.harness.restartNode(0, { kill: true });
    const healedAt = Date.now();
    say(`broker ready again after ${(report.downMs / 1000).toFixed(1)} s down`);
    await flowing();
    return {
      healedAt,
      note: `broker down ${(report.downMs / 1000).toFixed(1)} s (boot ${(report.bootMs / 1000).toFixed(1)} s)`,
    };
  },
};
