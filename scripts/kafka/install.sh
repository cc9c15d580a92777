#!/usr/bin/env bash
# Resolves Apache Kafka (see pom.xml) and a logging backend from Maven Central
# into $LAYERCACHE_KAFKA_HOME/libs. Needs Java 17 and Maven. Idempotent: a
# second run with the same pom.xml does nothing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

POM="$ROOT_DIR/scripts/kafka/pom.xml"
STAMP="$KAFKA_LIBS/.pom.sha256"
want="$(sha256sum "$POM" | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  log "jars already in $KAFKA_LIBS"
  exit 0
fi

command -v java >/dev/null || { log "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }
command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }

rm -rf "$KAFKA_LIBS"
mkdir -p "$KAFKA_LIBS"
log "resolving Kafka jars with Maven into $KAFKA_LIBS"
mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
echo "$want" >"$STAMP"
log "$(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars installed"
