/** Every scenario, in the order the table shows them. */
import type { Scenario } from '../scenario.js';
import { diskAlarm, memoryAlarm } from './alarms.js';
import { bridgeKill } from './bridge-kill.js';
import { brokerKill } from './broker-kill.js';
import { centopsDown } from './centops-down.js';
import { clockAhead, clockBehind } from './clock-skew.js';
import { endpointDown } from './endpoint-down.js';
import { linkCut } from './link-cut.js';
import { peerBrokerKill } from './peer-broker-kill.js';
import { routerKill } from './router-kill.js';
import { certExpiry } from './cert-expiry.js';

export const SCENARIOS: readonly Scenario[] = [
  routerKill,
  endpointDown,
  bridgeKill,
  brokerKill,
  diskAlarm,
  memoryAlarm,
  centopsDown,
  linkCut,
  clockAhead,
  clockBehind,
  certExpiry,
  peerBrokerKill,
];
