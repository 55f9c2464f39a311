export * from './message.js';
export * from './layout.js';
export * from './report.js';
export * from './hops.js';
export * from './node-config.js';
export * from './node-config-signature.js';
export * from './status.js';
export * from './policy.js';
