export { queueRole, refusalOf, type QueueOperation, type QueueRole } from './roles.js';
export {
  listNodeQueues,
  peekQueue,
  purgeEvidence,
  replayDeadLetters,
  summarize,
  type DeathRecord,
  type PeekOptions,
  type PeekedSummary,
  type QueueRow,
  type ReplayOptions,
  type DeadLetterReplay,
} from './queue-tools.js';
