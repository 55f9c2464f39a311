export * from './duration.js';
export * from './errors.js';
export * from './ids.js';
export * from './stats.js';
export * from './ack-batcher.js';
export * from './backoff.js';
export * from './reconnect.js';
export * from './canonical-json.js';
