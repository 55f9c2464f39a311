// The back-off is @dmr/core's; re-exported because Client's `backoff` option takes its options.
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '@dmr/core';
export { checkPeerCertificate, describeCertificate, type CertificateInfo } from './certificates.js';
export * from './client.js';
export * from './dedup.js';
export * from './directory.js';
export * from './enrolment.js';
export * from './protect.js';
export * from './report.js';
export * from './tls.js';
