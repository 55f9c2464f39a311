export * from './model.js';
export * from './store/index.js';
