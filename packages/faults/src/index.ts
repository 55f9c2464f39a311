export { Ledger, type LedgerCounts, type LedgerEntry } from './ledger.js';
export { isBad, renderTable, type Row } from './report.js';
export { runScenario, runScenarios, type RunOptions } from './run.js';
export { FULL_SETTINGS, type Scenario, type Settings, type WorldSpec } from './scenario.js';
export { SCENARIOS } from './scenarios/index.js';
export { World, type WorldOptions } from './world.js';
