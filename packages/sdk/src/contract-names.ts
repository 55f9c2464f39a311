/**
 * The wire contract's names the SDK exports (docs/contract.md): @dmr/contract's, two of them under the
 * SDK's own names. One list: the client's public exports and the internal wire module both take it here.
 */
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
