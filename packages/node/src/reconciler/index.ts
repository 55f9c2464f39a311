export * from './layout.js';
export * from './apply.js';
