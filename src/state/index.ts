/**
 * Shared cache state across replicas, in Redis: the snapshot store and its
 * watcher, the trainer lease, and the stream of training examples. Design and
 * reasons in docs/sharing.md.
 */
export { stateKeys, type StateKeys } from "./keys.ts";
export { layoutOf, type StateLayout } from "./layout.ts";
export {
  StateConnection,
  describeRedisUrl,
  type ConnectionRole,
  type StateConnectionOptions,
} from "./redis-connection.ts";
export {
  RedisStateStore,
  type FencingSource,
  type PublishOutcome,
  type PublishReason,
  type RedisStateStoreOptions,
} from "./redis-store.ts";
export type { AuditCount, SharedSnapshot, SnapshotProvenance } from "./snapshot-codec.ts";
export { SnapshotWatcher, type SnapshotListener, type WatchOptions } from "./watcher.ts";
export {
  TrainerLease,
  type CampaignHandlers,
  type LeaseListener,
  type TrainerLeaseOptions,
} from "./lease.ts";
export {
  ExampleForwarder,
  ExampleStream,
  deliverExample,
  type ExampleStreamOptions,
  type ForwarderOptions,
  type ProducerStats,
  type TrainingExample,
} from "./examples.ts";
export {
  ExampleConsumer,
  TRAINER_GROUP,
  type ConsumerOptions,
  type ConsumerStats,
  type ReceivedAudit,
  type ReceivedEntry,
  type ReceivedExample,
} from "./example-consumer.ts";
export type { AuditRecord, ExampleKind } from "./example-codec.ts";
