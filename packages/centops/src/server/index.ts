export { startServer, type CentOpsServer, type StartOptions } from './app.js';
// Principal itself is exported by the feed (the same shape); exporting it twice would hide both.
export { READERS, WRITERS, actorOf, requireNode, requireRole } from './auth.js';
export * from './config.js';
export { initCentOps, type InitCentOpsOptions, type InitCentOpsResult } from './init.js';
export { serve, type ServeOptions } from './serve.js';
export { addOperator, type AddOperatorOptions, type AddOperatorResult } from './operators.js';
export { rotateSigner, type RotateSignerResult, type SignerName } from './signers.js';
export { CentOpsMetrics, type CentOpsMetricsSources } from './metrics.js';
