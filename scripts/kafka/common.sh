# Shared settings for the single-node Kafka broker scripts. Sourced, not run.
# Every path and port can be overridden from the environment.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_HOME="${LAYERCACHE_KAFKA_HOME:-$ROOT_DIR/.kafka}"
KAFKA_PORT="${LAYERCACHE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${LAYERCACHE_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${LAYERCACHE_KAFKA_HEAP:-512m}"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_LOGS="$KAFKA_HOME/logs"
KAFKA_PID="$KAFKA_HOME/broker.pid"
KAFKA_PROPS="$KAFKA_HOME/server.properties"

log() { printf '[kafka] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

broker_pid() {
  if [[ -f "$KAFKA_PID" ]]; then
    local pid
    pid="$(cat "$KAFKA_PID")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
  fi
  return 1
}
