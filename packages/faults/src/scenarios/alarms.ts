/**
 * RabbitMQ's resource alarms raised on the node's broker with rabbitmqctl:
 * a disk alarm (the free-disk limit set to 1 PB, far above the free space) or a
 * memory alarm (the high watermark set near zero). Either blocks every
 * publishing connection on the node — clients, routers, links — while
 * consumers go on. The sending service meets it as the bridge's 503 (no
 * confirm within `send.confirmTimeoutMs`) and retries with the same id;
 * nothing the bridge answered 202 for may be lost. Healed = the alarm's
 * limit set back (RabbitMQ's defaults, 50 MB free disk and a 0.4 memory
 * watermark).
 */
import { rabbitmqctlFor } from '@dmr/broker-harness';
import { hold, until, type BridgeContext, type Scenario, type ScenarioResult } from '../scenario.js';

const CTL_TIMEOUT_MS = 180_000;

function alarm(
  kind: 'disk' | 'memory',
  raise: readonly string[],
  clear: readonly string[],
): (context: BridgeContext) => Promise<ScenarioResult> {
  return async ({ world, traffic, say, flowing, settings }) => {
    const ctl = await rabbitmqctlFor(world.harness.dir, 0);
    await flowing(Math.ceil(settings.rate / 2));
    const before = traffic.answers['503'] ?? 0;
    say(`${kind} alarm on node-1's broker for ${settings.alarmMs / 1000} s (rabbitmqctl ${raise.join(' ')})`);
    // rabbitmqctl boots an Erlang VM per call: on a loaded machine that alone can take a minute.
    await ctl(raise, CTL_TIMEOUT_MS);
    await hold(settings.alarmMs);
    // The alarm must have blocked the publishers, or this row proves nothing.
    await until(
      `the bridge answering 503 under the ${kind} alarm`,
      () => (traffic.answers['503'] ?? 0) > before,
      30_000,
    );
    await ctl(clear, CTL_TIMEOUT_MS);
    const healedAt = Date.now();
    const refused = (traffic.answers['503'] ?? 0) - before;
    say(`alarm cleared; the bridge had answered 503 ${refused} times`);
    await flowing();
    return {
      healedAt,
      note: `${kind} alarm ${settings.alarmMs / 1000} s, publishers blocked: the service retried each 503 with the same id`,
    };
  };
}

export const diskAlarm: Scenario = {
  name: 'disk-alarm',
  title: 'RabbitMQ disk alarm',
  world: { nodes: 1, routers: 2 },
  traffic: 'bridge',
  run: alarm('disk', ['set_disk_free_limit', '1000000000000000'], ['set_disk_free_limit', '50MB']),
};

export const memoryAlarm: Scenario = {
  name: 'memory-alarm',
  title: 'RabbitMQ memory alarm',
  world: { nodes: 1, routers: 2 },
  traffic: 'bridge',
  run: alarm('memory', ['set_vm_memory_high_watermark', '0.0001'], ['set_vm_memory_high_watermark', '0.4']),
};
