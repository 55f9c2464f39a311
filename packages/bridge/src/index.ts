export * from './bridge.js';
export * from './config.js';
export * from './delivery.js';
export * from './metrics.js';
export * from './v1.js';
export * from './verdicts.js';
