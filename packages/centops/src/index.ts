export * from './model.js';
export * from './store/index.js';
export * from './feed/index.js';
export * from './server/index.js';
export * from './policy/index.js';
