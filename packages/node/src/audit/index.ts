export * from './export-file.js';
export * from './export.js';
export * from './verify.js';
export * from './prove.js';
export * from './trace.js';
