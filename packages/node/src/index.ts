export * from './message/index.js';
export * from './reconciler/index.js';
