export * from './layout.js';
export * from './apply.js';
export * from './links.js';
