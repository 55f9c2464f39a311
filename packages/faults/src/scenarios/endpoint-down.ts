/**
 * The receiving bridge's endpoint (the Bürokratt service) stops listening:
 * every delivery attempt is a refused connection. The bridge keeps the
 * messages unacked and retries with back-off; once the endpoint listens
 * again everything arrives. Healed = the endpoint listening again.
 */
import { hold, type Scenario } from '../scenario.js';

export const endpointDown: Scenario = {
  name: 'endpoint-down',
  title: 'endpoint down',
  world: { nodes: 1, routers: 2 },
  traffic: 'bridge',
  async run({ traffic, say, flowing, settings }) {
    await flowing(Math.ceil(settings.rate / 2));
    say(`endpoint down for ${settings.endpointDownMs / 1000} s`);
    await traffic.endpoint.down();
    await hold(settings.endpointDownMs);
    await traffic.endpoint.up();
    const healedAt = Date.now();
    say('endpoint up again');
    await flowing();
    return { healedAt, note: `endpoint refused connections for ${settings.endpointDownMs / 1000} s` };
  },
};
