/**
 * A router process SIGKILLed mid-stream, on a node running two router
 * shards: the messages it held unacked go back to its ingress shard, and
 * the agent starts a new router for that shard (with back-off). The other
 * shard keeps routing. Healed = the kill (the node heals itself).
 */
import { signalProcess } from '@dmr/broker-harness';
import { DmrError } from '@dmr/core';
import type { Scenario } from '../scenario.js';

export const routerKill: Scenario = {
  name: 'router-kill',
  title: 'router SIGKILL (1 of 2 shards)',
  world: { nodes: 1, routers: 2 },
  traffic: 'sdk',
  async run({ world, say, flowing, settings }) {
    const node = world.nodeIds[0] as string;
    const [victim] = await world.awaitRouters(node, 2);
    if (victim === undefined) throw new DmrError('FAULT_SCENARIO_FAILED', `${node} runs no router to kill`);
    await flowing(Math.ceil(settings.rate / 2));
    say(`SIGKILL router pid ${victim.pid} of ${node}`);
    if (!signalProcess(victim, 'SIGKILL')) {
      throw new DmrError('FAULT_SCENARIO_FAILED', `router pid ${victim.pid} was gone before the kill`);
    }
    const healedAt = Date.now();
    const routers = await world.awaitRouters(node, 2, victim);
    const restartedMs = Date.now() - healedAt;
    say(`the agent runs 2 routers again after ${restartedMs} ms`);
    await flowing();
    return {
      healedAt,
      note: `agent restarted the router in ${(restartedMs / 1000).toFixed(1)} s (pids now ${routers.map((ref) => ref.pid).join(', ')})`,
    };
  },
};
