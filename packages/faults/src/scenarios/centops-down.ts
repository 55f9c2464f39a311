/**
 * CentOps crashes (SIGKILL) and stays down: the nodes keep routing on their
 * last good configuration, retrying the feed with back-off. When CentOps is
 * back, the operator applies the change that waited for it (a new client
 * on node-1, `dmr ctl apply`), and every node must pick it up through its
 * feed and report it, while the traffic never stops. Healed = CentOps
 * listening again; the note says when every node ran the new revision.
 *
 * Not covered: a change stored while CentOps is down (there is no CentOps
 * to store it), or a node that restarts meanwhile (it starts from its last
 * good state on disk; the agent's own tests cover that).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';
import { hold, until, type Scenario } from '../scenario.js';

interface Status {
  revision: number;
  nodes: Array<{ id: string; appliedRevision: number | null; upToDate: boolean }>;
}

function isStatus(value: unknown): value is Status {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Status).revision === 'number' &&
    Array.isArray((value as Status).nodes)
  );
}

export const centopsDown: Scenario = {
  name: 'centops-down',
  title: 'CentOps down, a change waiting',
  world: { nodes: 2 },
  traffic: 'sdk',
  async run({ world, say, flowing, settings }) {
    await flowing(Math.ceil(settings.rate / 2));
    say(`SIGKILL CentOps; down for ${Math.round(settings.centopsDownMs / 1000)} s`);
    await world.killCentOps();
    const downAt = Date.now();
    await hold(settings.centopsDownMs);
    // The nodes routed the whole time on their last good configuration.
    await flowing();
    await world.startCentOps();
    const healedAt = Date.now();
    say(`CentOps back after ${((healedAt - downAt) / 1000).toFixed(0)} s; applying the waiting change`);
    const change = join(world.dir, 'waiting-change.yaml');
    await writeFile(
      change,
      [
        'kind: Client',
        'spec:',
        '  id: fault-late-bot',
        '  organisation: org-a',
        '  homeNode: node-1',
        '  roles: [chatbot]',
        '  labels: {}',
        '  status: active',
        '  certificateProfile: { keyAlgorithm: ecdsa-p256, lifetime: 24h, extraDns: [], extraIps: [] }',
        '',
      ].join('\n'),
    );
    const applied = (await world.ctl(['apply', '-f', change])) as { revision?: unknown };
    if (typeof applied.revision !== 'number') {
      throw new DmrError('FAULT_SCENARIO_FAILED', `dmr ctl apply answered no revision: ${JSON.stringify(applied)}`);
    }
    const revision = applied.revision;
    await until(
      `every node running revision ${revision}`,
      async () => {
        const status = await world.ctl(['status']).catch(() => undefined);
        return isStatus(status) && status.nodes.every((node) => (node.appliedRevision ?? 0) >= revision);
      },
      120_000,
    );
    const inSyncMs = Date.now() - healedAt;
    say(`every node runs revision ${revision}, ${(inSyncMs / 1000).toFixed(1)} s after CentOps came back`);
    await flowing();
    return {
      healedAt,
      note: `CentOps down ${Math.round((healedAt - downAt) / 1000)} s; the waiting change (revision ${revision}) ran on every node ${(inSyncMs / 1000).toFixed(1)} s after it came back`,
    };
  },
};
