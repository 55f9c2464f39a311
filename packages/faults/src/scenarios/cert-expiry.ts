/**
 * A client certificate expiring under traffic. The sender (bot-a) connects
 * with a certificate that lives `--cert-ttl` (90 s; issued by CentOps' own
 * CA, `World.issueShortLived`) and renews through CentOps as a client in
 * production does (the SDK's `renew`: at two thirds of the lifetime, then a
 * reconnect with the new certificate), while it sends. The old certificate
 * then expires; once it has, the broker cuts bot-a's connections (closed
 * through the management API, as an operator or a broker restart would):
 * the sender comes back only if it presents the renewed certificate, since
 * the broker refuses an expired one in the handshake. Healed = that cut.
 */
import { DmrError } from '@dmr/core';
import { hold, until, type Scenario } from '../scenario.js';
import type { World } from '../world.js';

interface BrokerConnection {
  name: string;
  user?: string;
  /** RabbitMQ's `<notBefore> - <notAfter>` of the certificate the client presented. */
  peer_cert_validity?: string;
}

/** bot-a's connections to its node's broker, with the validity of the certificate each presented. */
async function connectionsOf(world: World, clientId: string): Promise<BrokerConnection[]> {
  const node = world.client(clientId).node;
  const listed = await world.harness.management(world.brokerIndex(node)).request('GET', '/connections');
  if (!Array.isArray(listed)) return [];
  return (listed as BrokerConnection[]).filter((connection) => connection.user?.endsWith(`/client/${clientId}`));
}

/** Whether `connection` presented a certificate that expires at `notAfter` (whole seconds, as X.509 has them). */
function presents(connection: BrokerConnection, notAfter: Date): boolean {
  const end = notAfter.toISOString().replace(/\.\d+Z$/, 'Z');
  return connection.peer_cert_validity?.endsWith(` - ${end}`) === true;
}

export const certExpiry: Scenario = {
  name: 'cert-expiry',
  title: 'client certificate expiring under traffic',
  world: { nodes: 1, routers: 2 },
  traffic: 'sdk',
  async sender(world, settings) {
    const issued = await world.issueShortLived('bot-a', settings.certTtlMs);
    return { ...issued, renewApiUrl: world.centopsUrl };
  },
  async run({ world, say, flowing, traffic, sender, settings }) {
    if (sender === undefined) throw new DmrError('FAULT_SCENARIO_FAILED', 'the sender has no short-lived certificate');
    const expiresAt = sender.notAfter.getTime();
    say(`bot-a sends with a certificate valid until ${sender.notAfter.toISOString()}; waiting for its renewal`);
    await until(
      'the sender to renew its certificate',
      () => traffic.renewals.length > 0,
      expiresAt - Date.now() + 60_000,
    );
    const renewal = traffic.renewals[0];
    if (renewal === undefined || renewal.at >= expiresAt) {
      throw new DmrError('FAULT_SCENARIO_FAILED', 'the sender renewed only after its certificate had expired');
    }
    const aheadS = ((expiresAt - renewal.at) / 1000).toFixed(1);
    say(
      `renewed ${aheadS} s before expiry (in flight then: ${traffic.inFlight}); new certificate until ${renewal.notAfter.toISOString()}`,
    );
    await until(
      'the sender connected with the renewed certificate only',
      async () => {
        const connections = await connectionsOf(world, 'bot-a');
        return connections.length > 0 && connections.every((connection) => presents(connection, renewal.notAfter));
      },
      120_000,
    );
    // The fault's own duration: the old certificate runs out (one second more: X.509 has whole seconds).
    await hold(Math.max(0, expiresAt + 1_000 - Date.now()));
    const management = world.harness.management(world.brokerIndex(world.client('bot-a').node));
    const cut = await connectionsOf(world, 'bot-a');
    for (const connection of cut) {
      await management.request('DELETE', `/connections/${encodeURIComponent(connection.name)}`).catch(() => undefined);
    }
    const healedAt = Date.now();
    say(`old certificate expired; cut bot-a's ${cut.length} connection(s)`);
    await until(
      'the sender back with the renewed certificate',
      async () => {
        const connections = await connectionsOf(world, 'bot-a');
        return connections.some((connection) => presents(connection, renewal.notAfter));
      },
      120_000,
    );
    await flowing();
    return {
      healedAt,
      note:
        `bot-a's certificate expired ${Math.round(settings.certTtlMs / 1000)} s after issue; renewed through CentOps ` +
        `${aheadS} s before expiry, under traffic; after expiry ${cut.length} connection(s) cut, back with the renewed one`,
    };
  },
};
