/**
 * The link between two nodes cut in the kernel: node-1's link (its shovel
 * to node-2) is routed through a network namespace (NetnsPartition of
 * @dmr/broker-harness; needs root), which is then partitioned — every
 * packet of the path dropped, both ways, the interfaces up: silence, as on
 * a WAN. node-1 buffers in its outbound queue; the agent restarts a link
 * that holds unacknowledged messages without progress. Healed = the
 * partition removed.
 *
 * The shovel's destination is rewritten in place (same definition, host
 * and port of the namespace's endpoint), as the mesh partition test does:
 * CentOps' registry names node-2 by its loopback address, and a node
 * certificate names only that. The original definition is put back before
 * the namespace goes, so the drain after the fault runs on the real link.
 */
import { NetnsPartition, netnsUnavailable } from '@dmr/broker-harness';
import { DmrError } from '@dmr/core';
import { hold, until, type Scenario } from '../scenario.js';

export const linkCut: Scenario = {
  name: 'link-cut',
  title: 'mesh: link cut (network namespace)',
  world: { nodes: 2 },
  traffic: 'sdk',
  needsRoot: true,
  async run({ world, say, flowing, settings }) {
    const why = netnsUnavailable();
    if (why !== undefined) throw new DmrError('FAULT_SCENARIO_FAILED', `link-cut needs network namespaces: ${why}`);
    const from = world.harness.management(world.brokerIndex('node-1'));
    const vhost = 'dmr-node-1';
    const target = world.harness.node(world.brokerIndex('node-2')).amqpsPort;
    const partition = await NetnsPartition.start({ onProgress: (line) => say(`  ${line}`) });
    const put = (name: string, value: Record<string, unknown>): Promise<unknown> => {
      // The definition came from the management API as JSON, and goes back as JSON.
      const body = { component: 'shovel', vhost, name, value } as unknown as Parameters<typeof from.request>[2];
      return from.request('PUT', `/parameters/shovel/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`, body);
    };
    let original: { name: string; value: Record<string, unknown> } | undefined;
    try {
      const endpoint = await partition.expose(target);
      let shovel: string | undefined;
      for (const status of await from.shovelStatuses(vhost)) {
        const definition = await from.getShovel(vhost, status.name);
        const uri = definition?.['dest-uri'];
        if (typeof uri !== 'string' || !uri.includes(`:${target}/`)) continue;
        shovel = status.name;
        const rerouted = uri.replace(/^amqps:\/\/[^/]+\//, `amqps://${endpoint.host}:${endpoint.port}/`);
        original = { name: status.name, value: { ...definition } };
        // The stored definition as it is, one key changed.
        await put(status.name, { ...definition, 'dest-uri': rerouted });
      }
      if (shovel === undefined) throw new DmrError('FAULT_SCENARIO_FAILED', 'node-1 has no link to node-2 to reroute');
      const name = shovel;
      await until(
        `${name} running through the namespace`,
        async () => (await from.shovelStatus(vhost, name))?.state === 'running' && endpoint.stats.accepted > 0,
        60_000,
      );
      await flowing(Math.ceil(settings.rate / 2));
      say(`link node-1 → node-2 cut (packets dropped) for ${settings.partitionMs / 1000} s`);
      await partition.partition('drop');
      await hold(settings.partitionMs);
      await partition.heal();
      const healedAt = Date.now();
      say('link healed');
      await flowing();
      return { healedAt, note: `packets of node-1's link dropped for ${settings.partitionMs / 1000} s` };
    } finally {
      // The link goes back to its own address before the namespace (and the endpoint in it) goes away.
      if (original !== undefined) await put(original.name, original.value).catch(() => undefined);
      await partition.stop();
    }
  },
};
