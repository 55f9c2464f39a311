/**
 * Delivery reports: what the node sends to a sender's own queue when it
 * refuses a message or when a delivered message dead-letters. The SDK never
 * hands them to the receive handler; they become `report` events. The body
 * and its parser are the wire contract's (@dmr/contract report.ts).
 */
export {
  DELIVERY_REPORT_TYPE,
  parseDeliveryReport,
  type ReceivedDeliveryReport as DeliveryReport,
} from '@dmr/contract';
