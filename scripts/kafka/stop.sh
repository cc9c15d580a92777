#!/usr/bin/env bash
# Stops the broker started by start.sh: SIGTERM, then SIGKILL after 30 s.
# Idempotent: stopping a stopped broker is not an error.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! pid="$(broker_pid)"; then
  log "not running"
  rm -f "$KAFKA_PID"
  exit 0
fi
log "stopping pid $pid"
kill -TERM "$pid"
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$KAFKA_PID"; log "stopped"; exit 0; }
  sleep 0.5
done
log "still running after 30s; sending SIGKILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$KAFKA_PID"
