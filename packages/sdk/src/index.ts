export * from './backoff.js';
export { checkPeerCertificate, describeCertificate, type CertificateInfo } from './certificates.js';
export * from './client.js';
// The contract names the SDK has always exported, now spelt once in @dmr/contract.
export {
  CONTRACT_VERSION,
  HOPS_HEADER,
  INGRESS_EXCHANGE,
  ORIGIN_HEADER,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  VERSION_HEADER,
  clientQueueName as clientQueue,
  vhostName as nodeVhost,
  type Hop,
} from '@dmr/contract';
export * from './dedup.js';
export * from './directory.js';
export * from './enrolment.js';
export * from './protect.js';
export * from './report.js';
export * from './tls.js';
