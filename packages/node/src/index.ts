export * from './message/index.js';
export * from './reconciler/index.js';
export * from './router/index.js';
export * from './agent/index.js';
export * from './queues/index.js';
export * from './audit/index.js';
