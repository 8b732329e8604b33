#!/usr/bin/env bash
# A local single-node Apache Kafka broker (KRaft mode) without Docker, for development and the
# integration tests. Kafka is not packaged for Debian or PyPI, so its jars come from Maven Central.
#
# Usage: deploy/local/kafka.sh fetch|start|stop|status|logs [-f]
#
#   fetch   copy the broker classpath into the cache (outside the repo); no-op when complete
#   start   fetch if needed, format storage once, start the broker, wait until it answers
#   stop    SIGTERM, bounded wait, then SIGKILL; no-op when not running
#   status  print running/stopped; exit 0 when running, 1 otherwise
#   logs    print the end of the broker log (-f to follow it)
#
# Environment (all optional):
#   KAFKA_VERSION                  broker version, default 3.9.1 (the pom's logging deps fit 3.9.x)
#   REMEDY_CACHE_DIR               jar cache root, default ~/.cache/remedy-ledger
#   REMEDY_DATA_DIR                data root, default <repo>/.data; the broker uses <root>/kafka
#   REMEDY_KAFKA_PORT              client (PLAINTEXT) port on 127.0.0.1, default 9092
#   REMEDY_KAFKA_CONTROLLER_PORT   KRaft controller port, default client port + 1
#   REMEDY_KAFKA_START_TIMEOUT_S   start-up wait limit, default 90
#
# A second broker for tests needs its own REMEDY_DATA_DIR and REMEDY_KAFKA_PORT; the controller
# port follows the client port unless set.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
readonly REPO_ROOT

readonly KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
readonly POM_FILE="$SCRIPT_DIR/kafka-pom.xml"
readonly TEMPLATE_FILE="$SCRIPT_DIR/server.properties.template"
readonly BROKER_LOG4J_FILE="$SCRIPT_DIR/log4j.properties"
readonly TOOLS_LOG4J_FILE="$SCRIPT_DIR/tools-log4j.properties"

CACHE_DIR="$(realpath -m "${REMEDY_CACHE_DIR:-$HOME/.cache/remedy-ledger}/kafka-$KAFKA_VERSION")"
readonly CACHE_DIR
readonly LIBS_DIR="$CACHE_DIR/libs"
readonly FETCH_MARKER_FILE="$CACHE_DIR/fetch-complete"

DATA_DIR="$(realpath -m "${REMEDY_DATA_DIR:-$REPO_ROOT/.data}/kafka")"
readonly DATA_DIR
readonly SEGMENTS_DIR="$DATA_DIR/data"
readonly SERVER_LOG_DIR="$DATA_DIR/logs"
readonly SERVER_LOG_FILE="$SERVER_LOG_DIR/server.log"
readonly CONSOLE_LOG_FILE="$DATA_DIR/kafka.out"
readonly PROPERTIES_FILE="$DATA_DIR/server.properties"
readonly CLUSTER_ID_FILE="$DATA_DIR/cluster-id"
readonly PID_FILE="$DATA_DIR/kafka.pid"
readonly LOCK_FILE="$DATA_DIR/kafka.lock"

readonly KAFKA_PORT="${REMEDY_KAFKA_PORT:-9092}"
readonly CONTROLLER_PORT="${REMEDY_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
readonly BOOTSTRAP_SERVER="127.0.0.1:$KAFKA_PORT"

# Limits. Every wait below is bounded by one of these.
# A cold fetch (57 jars, 46 MB, empty ~/.m2) took 8-14 s here; 600 s only stops a hung download.
readonly FETCH_TIMEOUT_S=600
# A second fetch or start on the same cache or data dir waits for the first; fetch is its bound.
readonly LOCK_TIMEOUT_S=660
# A start took 5-9 s here (2 cores); 90 s leaves room for a loaded CI machine.
readonly START_TIMEOUT_S="${REMEDY_KAFKA_START_TIMEOUT_S:-90}"
# A single-node controlled shutdown takes a few seconds; after 30 s the broker is stuck.
readonly STOP_TIMEOUT_S=30
# After SIGKILL the kernel frees the process at once; 5 s covers a machine under load.
readonly KILL_TIMEOUT_S=5
# One probe a second notices readiness quickly without keeping a core busy.
readonly POLL_INTERVAL_S=1
# A loopback connect answers or is refused at once; 2 s means the broker is not accepting.
readonly PORT_PROBE_TIMEOUT_S=2
# The ApiVersions round trip is a JVM start (~2 s) plus one request; 30 s means it is not answering.
readonly API_PROBE_TIMEOUT_S=30
# Enough of the log to see why a start failed without flooding the terminal.
readonly FAILURE_LOG_LINES=40
# What `logs` prints before following.
readonly LOGS_TAIL_LINES=100
# A dev broker's heap: room for test traffic, small enough to share the machine with the tests.
readonly HEAP_OPTS=(-Xms256m -Xmx768m)

JAVA_BIN="${JAVA_HOME:+$JAVA_HOME/bin/}java"

say() { echo "kafka.sh: $*"; }
fail() { echo "kafka.sh: error: $*" >&2; exit 1; }

require_command() {
  command -v "$1" >/dev/null 2>&1 || fail "'$1' is not installed ($2)"
}

# Waits for an exclusive lock on $1 through file descriptor 9; a broker must never inherit fd 9.
take_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  flock -w "$LOCK_TIMEOUT_S" 9 || fail "another kafka.sh holds $1 for more than ${LOCK_TIMEOUT_S}s"
}

release_lock() { exec 9>&-; }

pom_digest() { sha256sum "$POM_FILE" | cut -d' ' -f1; }

fetch_is_complete() {
  [[ -d "$LIBS_DIR" && -f "$FETCH_MARKER_FILE" ]] && grep -qx "pom_sha256=$(pom_digest)" "$FETCH_MARKER_FILE"
}

fetch() {
  if fetch_is_complete; then
    say "Kafka $KAFKA_VERSION classpath already in $LIBS_DIR"
    return 0
  fi
  require_command mvn "apt-get install maven"
  require_command "$JAVA_BIN" "apt-get install openjdk-17-jre-headless"
  take_lock "$CACHE_DIR.lock"
  if fetch_is_complete; then
    say "Kafka $KAFKA_VERSION classpath was fetched meanwhile into $LIBS_DIR"
    release_lock
    return 0
  fi
  local partial_dir="$CACHE_DIR/libs.partial"
  rm -rf "$partial_dir" "$FETCH_MARKER_FILE"
  mkdir -p "$partial_dir"
  say "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies from Maven Central"
  say "(Maven's own cache is ~/.m2/repository; timeout ${FETCH_TIMEOUT_S}s)"
  local started_s=$SECONDS
  # Maven runs from the cache dir so that nothing it writes lands in the repository. Debian's
  # Maven 3.8.7 prints bare ANSI resets even with -B -q; sed strips them (pipefail keeps Maven's status).
  (cd "$CACHE_DIR" && timeout "$FETCH_TIMEOUT_S" mvn -B -q -Dstyle.color=never -f "$POM_FILE" \
      -Dkafka.version="$KAFKA_VERSION" \
      -Dremedy.kafka.libs.dir="$partial_dir" \
      dependency:copy-dependencies 2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g') \
    || fail "Maven could not resolve Kafka $KAFKA_VERSION (see its output above)"
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
             "kafka-raft-$KAFKA_VERSION.jar" "kafka-metadata-$KAFKA_VERSION.jar" \
             slf4j-reload4j-*.jar reload4j-*.jar; do
    compgen -G "$partial_dir/$jar" >/dev/null || fail "fetched classpath lacks $jar"
  done
  say "checking that the classpath runs (kafka.tools.StorageTool random-uuid)"
  "$JAVA_BIN" -Dlog4j.configuration="file:$TOOLS_LOG4J_FILE" -cp "$partial_dir/*" \
      kafka.tools.StorageTool random-uuid >/dev/null \
    || fail "the fetched classpath does not run kafka.tools.StorageTool"
  rm -rf "$LIBS_DIR"
  mv "$partial_dir" "$LIBS_DIR"
  # The marker is written last: its presence means the libs dir is complete.
  {
    echo "kafka_version=$KAFKA_VERSION"
    echo "pom_sha256=$(pom_digest)"
    echo "jar_count=$(find "$LIBS_DIR" -name '*.jar' | wc -l)"
  } >"$FETCH_MARKER_FILE.tmp"
  mv "$FETCH_MARKER_FILE.tmp" "$FETCH_MARKER_FILE"
  release_lock
  say "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1)) into $LIBS_DIR in $((SECONDS - started_s))s"
}

# Runs a one-shot Kafka tool class on the cached classpath.
run_kafka_tool() {
  "$JAVA_BIN" -Dlog4j.configuration="file:$TOOLS_LOG4J_FILE" -cp "$LIBS_DIR/*" "$@"
}

read_pid() {
  [[ -f "$PID_FILE" ]] && cat "$PID_FILE" || true
}

# True when $1 is a live broker JVM started for this data dir (a recycled pid is not ours).
is_our_broker() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *" kafka.Kafka $PROPERTIES_FILE"* ]]
}

# True while $1 runs; a broker that died as our child stays a zombie, which kill -0 still finds.
process_alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

port_answers() {
  timeout "$PORT_PROBE_TIMEOUT_S" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# A real Kafka protocol round trip: the broker answers ApiVersions on the client listener.
api_versions_answer() {
  timeout "$API_PROBE_TIMEOUT_S" "$JAVA_BIN" -Dlog4j.configuration="file:$TOOLS_LOG4J_FILE" \
    -cp "$LIBS_DIR/*" kafka.admin.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP_SERVER" >/dev/null 2>&1
}

# True once the server log, read from byte offset $1 (where this start began), says it started.
started_line_logged() {
  local offset="$1"
  [[ -f "$SERVER_LOG_FILE" ]] || return 1
  if (( $(stat -c %s "$SERVER_LOG_FILE") < offset )); then
    offset=0  # The log rolled over during start-up: everything in the new file is this run's.
  fi
  tail -c "+$((offset + 1))" "$SERVER_LOG_FILE" | grep -q "Kafka Server started"
}

print_failure_logs() {
  local file
  for file in "$SERVER_LOG_FILE" "$CONSOLE_LOG_FILE"; do
    if [[ -s "$file" ]]; then
      echo "----- last $FAILURE_LOG_LINES lines of $file -----" >&2
      tail -n "$FAILURE_LOG_LINES" "$file" >&2
    fi
  done
}

render_properties() {
  local template
  template="$(<"$TEMPLATE_FILE")"
  # The replacements are quoted so that bash 5.2 does not expand '&' inside them.
  template="${template//@KAFKA_PORT@/"$KAFKA_PORT"}"
  template="${template//@CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
  template="${template//@LOG_DIRS@/"$SEGMENTS_DIR"}"
  if [[ "$template" =~ @[A-Z_]+@ ]]; then
    fail "$TEMPLATE_FILE has a placeholder kafka.sh does not fill: ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$template" >"$PROPERTIES_FILE.tmp"
  mv "$PROPERTIES_FILE.tmp" "$PROPERTIES_FILE"
}

format_storage_once() {
  if [[ -f "$SEGMENTS_DIR/meta.properties" ]]; then
    say "storage already formatted (cluster id $(cat "$CLUSTER_ID_FILE" 2>/dev/null || echo unknown))"
    return 0
  fi
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    run_kafka_tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  local cluster_id
  cluster_id="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
  say "formatting KRaft storage in $SEGMENTS_DIR (cluster id $cluster_id)"
  run_kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPERTIES_FILE" \
    || fail "kafka.tools.StorageTool format failed"
}

start() {
  fetch
  require_command flock "apt-get install util-linux"
  take_lock "$LOCK_FILE"
  mkdir -p "$SEGMENTS_DIR" "$SERVER_LOG_DIR"

  local pid
  pid="$(read_pid)"
  if is_our_broker "$pid"; then
    if port_answers "$KAFKA_PORT"; then
      say "already running (pid $pid, $BOOTSTRAP_SERVER); nothing to do"
      return 0
    fi
    say "pid $pid is alive but $BOOTSTRAP_SERVER does not answer yet; waiting for it"
    wait_until_ready "$pid" 0
    return 0
  fi
  if [[ -n "$pid" ]]; then
    say "removing stale pid file (pid $pid is not a running broker)"
    rm -f "$PID_FILE"
  fi
  local port
  for port in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
    if port_answers "$port"; then
      fail "127.0.0.1:$port is in use by another process; choose REMEDY_KAFKA_PORT / REMEDY_KAFKA_CONTROLLER_PORT"
    fi
  done

  render_properties
  format_storage_once

  local log_offset=0
  [[ -f "$SERVER_LOG_FILE" ]] && log_offset="$(stat -c %s "$SERVER_LOG_FILE")"
  [[ -f "$CONSOLE_LOG_FILE" ]] && mv "$CONSOLE_LOG_FILE" "$CONSOLE_LOG_FILE.previous"

  say "starting Kafka $KAFKA_VERSION on $BOOTSTRAP_SERVER (controller 127.0.0.1:$CONTROLLER_PORT, data $DATA_DIR)"
  # setsid detaches the broker from this terminal's session so Ctrl-C here does not reach it;
  # 9>&- keeps the start lock from being inherited (and held) by the broker.
  setsid nohup "$JAVA_BIN" "${HEAP_OPTS[@]}" \
    -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$SERVER_LOG_DIR" \
    -Dlog4j.configuration="file:$BROKER_LOG4J_FILE" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$PROPERTIES_FILE" \
    </dev/null >"$CONSOLE_LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  release_lock
  wait_until_ready "$pid" "$log_offset"
}

# Waits until the broker logged its start and answers ApiVersions, bounded by START_TIMEOUT_S.
wait_until_ready() {
  local pid="$1" log_offset="$2"
  local started_s=$SECONDS
  local deadline_s=$((SECONDS + START_TIMEOUT_S))
  say "waiting up to ${START_TIMEOUT_S}s for the broker to answer"
  while (( SECONDS < deadline_s )); do
    if ! process_alive "$pid"; then
      echo "kafka.sh: error: the broker (pid $pid) exited during start-up" >&2
      print_failure_logs
      rm -f "$PID_FILE"
      exit 1
    fi
    if started_line_logged "$log_offset" && port_answers "$KAFKA_PORT" && api_versions_answer; then
      say "running (pid $pid, $BOOTSTRAP_SERVER), ready after $((SECONDS - started_s))s"
      return 0
    fi
    sleep "$POLL_INTERVAL_S"
  done
  echo "kafka.sh: error: the broker did not answer on $BOOTSTRAP_SERVER within ${START_TIMEOUT_S}s" >&2
  print_failure_logs
  say "stopping the broker that failed to start"
  stop_pid "$pid"
  exit 1
}

# SIGTERM (controlled shutdown), bounded wait, then SIGKILL.
stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline_s=$((SECONDS + STOP_TIMEOUT_S))
  while process_alive "$pid" && (( SECONDS < deadline_s )); do
    sleep "$POLL_INTERVAL_S"
  done
  if process_alive "$pid"; then
    say "pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline_s=$((SECONDS + KILL_TIMEOUT_S))
    while process_alive "$pid" && (( SECONDS < deadline_s )); do
      sleep "$POLL_INTERVAL_S"
    done
    process_alive "$pid" && fail "pid $pid survived SIGKILL for ${KILL_TIMEOUT_S}s"
  fi
  rm -f "$PID_FILE"
}

stop() {
  if [[ ! -f "$PID_FILE" ]]; then
    say "not running (data $DATA_DIR); nothing to do"
    return 0
  fi
  take_lock "$LOCK_FILE"
  local pid
  pid="$(read_pid)"
  if ! is_our_broker "$pid"; then
    rm -f "$PID_FILE"
    say "not running (data $DATA_DIR); nothing to do"
    return 0
  fi
  say "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT_S}s)"
  local started_s=$SECONDS
  stop_pid "$pid"
  say "stopped after $((SECONDS - started_s))s"
}

status() {
  local pid
  pid="$(read_pid)"
  if is_our_broker "$pid"; then
    if port_answers "$KAFKA_PORT"; then
      echo "running (pid $pid, $BOOTSTRAP_SERVER, data $DATA_DIR)"
      return 0
    fi
    echo "not answering (pid $pid alive, $BOOTSTRAP_SERVER closed, data $DATA_DIR)"
    return 1
  fi
  echo "stopped (data $DATA_DIR)"
  return 1
}

logs() {
  [[ -f "$SERVER_LOG_FILE" ]] || fail "no broker log yet at $SERVER_LOG_FILE"
  if [[ "${1:-}" == "-f" ]]; then
    # Following is interactive: the user ends it with Ctrl-C.
    exec tail -n "$LOGS_TAIL_LINES" -F "$SERVER_LOG_FILE"
  fi
  tail -n "$LOGS_TAIL_LINES" "$SERVER_LOG_FILE"
}

usage() {
  sed -n '5,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    fetch) fetch ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    logs) logs "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
