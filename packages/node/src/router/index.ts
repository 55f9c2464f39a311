export * from './audit.js';
export * from './envelope.js';
export * from './metrics.js';
export { Router, type BackoffOptions, type RouterOptions } from './router.js';
export * from './audit-checkpointer.js';
