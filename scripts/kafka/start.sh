#!/usr/bin/env bash
# Starts a single-node Kafka broker (KRaft, broker and controller in one JVM)
# on 127.0.0.1:$LAYERCACHE_KAFKA_PORT and waits until it accepts clients.
# Idempotent: if our broker is already running it says so and exits 0.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT_S="${LAYERCACHE_KAFKA_START_TIMEOUT:-120}"

if pid="$(broker_pid)"; then
  log "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
  exit 0
fi
if port_open "$KAFKA_PORT"; then
  log "port $KAFKA_PORT is taken by another process; set LAYERCACHE_KAFKA_PORT or KAFKA_BROKERS"
  exit 1
fi

bash "$ROOT_DIR/scripts/kafka/install.sh"
mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"

cat >"$KAFKA_PROPS" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
PROPS

if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
  # A base64url id; one that starts with "-" would read as an option (Kafka's own ids never do).
  cluster_id="-"
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  log "formatting $KAFKA_DATA (cluster $cluster_id)"
  java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$KAFKA_PROPS" >"$KAFKA_LOGS/format.log" 2>&1 ||
    { cat "$KAFKA_LOGS/format.log" >&2; exit 1; }
fi

started_ms="$(date +%s%3N)"
nohup java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -Djava.awt.headless=true \
  "-Dkafka.logs.dir=$KAFKA_LOGS" \
  "-Dlog4j.configuration=file:$ROOT_DIR/scripts/kafka/log4j.properties" \
  -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" >"$KAFKA_LOGS/stdout.log" 2>&1 &
echo $! >"$KAFKA_PID"
log "starting (pid $!), logs in $KAFKA_LOGS"

deadline=$((SECONDS + TIMEOUT_S))
until port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_LOGS/server.log" 2>/dev/null; do
  if ! broker_pid >/dev/null; then
    log "broker exited during start-up; last lines of its log:"
    tail -n 30 "$KAFKA_LOGS/server.log" "$KAFKA_LOGS/stdout.log" >&2 || true
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "not ready after ${TIMEOUT_S}s; see $KAFKA_LOGS/server.log"
    exit 1
  fi
  sleep 0.5
done
elapsed_ms=$(($(date +%s%3N) - started_ms))
log "ready on 127.0.0.1:$KAFKA_PORT after $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))s"
