#!/usr/bin/env bash
# A local Apicurio Registry (a schema registry with a Confluent-compatible API) without Docker, for
# registry mode (REMEDY_SCHEMA_REGISTRY_URL; schemas/README.md) and its integration tests. Apicurio
# is not packaged for Debian or PyPI, so its distribution comes from Maven Central.
#
# Usage: deploy/local/registry.sh fetch|start|stop|status|url|logs [-f]
#
#   fetch   unpack the registry distribution into the cache (outside the repo); no-op when complete
#   start   fetch if needed, start the registry on loopback, wait until its Confluent API answers
#   stop    SIGTERM, bounded wait, then SIGKILL; no-op when not running
#   status  print running/stopped and the URL; exit 0 when running, 1 otherwise
#   url     print the REMEDY_SCHEMA_REGISTRY_URL of this registry (its Confluent-compatible API)
#   logs    print the end of the registry log (-f to follow it)
#
# Listeners: the HTTP API on 127.0.0.1:REMEDY_REGISTRY_PORT (quarkus.http.host), and the one the
# transaction manager (Narayana) opens on first write, on a random port of localhost. `start` checks
# with ss that every listening socket of the registry is on loopback, and stops it if one is not.
# Storage: an H2 database file under the data dir, so schema ids survive a restart (records on
# Kafka carry them for ever); delete the data dir to start empty.
#
# Environment (all optional):
#   APICURIO_VERSION                  registry version, default 2.6.13.Final (runs on Java 17; 3.x needs 21)
#   REMEDY_CACHE_DIR                  cache root, default ~/.cache/remedy-ledger
#   REMEDY_DATA_DIR                   data root, default <repo>/.data; the registry uses <root>/registry
#   REMEDY_REGISTRY_PORT              HTTP port on 127.0.0.1, default 8081
#   REMEDY_REGISTRY_START_TIMEOUT_S   start-up wait limit, default 120
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
readonly REPO_ROOT
readonly SCRIPT_NAME=registry.sh
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

readonly APICURIO_VERSION="${APICURIO_VERSION:-2.6.13.Final}"
readonly POM_FILE="$SCRIPT_DIR/registry-pom.xml"

CACHE_DIR="$(realpath -m "${REMEDY_CACHE_DIR:-$HOME/.cache/remedy-ledger}/apicurio-registry-$APICURIO_VERSION")"
readonly CACHE_DIR
readonly DIST_DIR="$CACHE_DIR/dist"
readonly RUNNER_JAR="$DIST_DIR/apicurio-registry-app-$APICURIO_VERSION-runner.jar"
readonly FETCH_MARKER_FILE="$CACHE_DIR/fetch-complete"

DATA_DIR="$(realpath -m "${REMEDY_DATA_DIR:-$REPO_ROOT/.data}/registry")"
readonly DATA_DIR
readonly DATABASE_DIR="$DATA_DIR/db"
readonly TMP_DIR="$DATA_DIR/tmp"
readonly LOG_FILE="$DATA_DIR/registry.log"
readonly PID_FILE="$DATA_DIR/registry.pid"
readonly LOCK_FILE="$DATA_DIR/registry.lock"

readonly REGISTRY_PORT="${REMEDY_REGISTRY_PORT:-8081}"
readonly BASE_URL="http://127.0.0.1:$REGISTRY_PORT"
# What REMEDY_SCHEMA_REGISTRY_URL and Confluent's serializers take.
readonly CCOMPAT_URL="$BASE_URL/apis/ccompat/v7"

# Limits. Every wait below is bounded by one of these.
# A cold fetch (one 140 MB tar.gz, empty ~/.m2) is a minute or two; 600 s only stops a hung download.
readonly FETCH_TIMEOUT_S=600
# A second fetch or start on the same cache or data dir waits for the first; fetch is its bound.
readonly LOCK_TIMEOUT_S=660
# Ready after 2-19 s here (2 cores, busier machine: slower); 120 s leaves room for a loaded CI machine.
readonly START_TIMEOUT_S="${REMEDY_REGISTRY_START_TIMEOUT_S:-120}"
# Quarkus shuts down in about a second; after 30 s it is stuck.
readonly STOP_TIMEOUT_S=30
# After SIGKILL the kernel frees the process at once; 5 s covers a machine under load.
readonly KILL_TIMEOUT_S=5
# One probe every half second notices readiness quickly without keeping a core busy.
readonly POLL_INTERVAL_S=0.5
# A loopback HTTP request answers at once; 5 s means the registry is not answering.
readonly PROBE_TIMEOUT_S=5
readonly PORT_PROBE_TIMEOUT_S="$PROBE_TIMEOUT_S"  # common.sh port_answers
# Enough of the log to see why a start failed without flooding the terminal.
readonly FAILURE_LOG_LINES=40
# What `logs` prints before following.
readonly LOGS_TAIL_LINES=100
# Heap: the registry's RSS is about 250 MB with this; its schemas are a few kB each.
readonly HEAP_OPTS=(-Xms64m -Xmx384m)

JAVA_BIN="${JAVA_HOME:+$JAVA_HOME/bin/}java"

fetch_is_complete() {
  [[ -f "$RUNNER_JAR" && -f "$FETCH_MARKER_FILE" ]] && grep -qx "pom_sha256=$(pom_digest)" "$FETCH_MARKER_FILE"
}

fetch() {
  if fetch_is_complete; then
    say "Apicurio Registry $APICURIO_VERSION already in $DIST_DIR"
    return 0
  fi
  require_command mvn "apt-get install maven"
  require_command "$JAVA_BIN" "apt-get install openjdk-17-jre-headless"
  take_lock "$CACHE_DIR.lock"
  if fetch_is_complete; then
    say "Apicurio Registry $APICURIO_VERSION was fetched meanwhile into $DIST_DIR"
    release_lock
    return 0
  fi
  local partial_dir="$CACHE_DIR/dist.partial"
  rm -rf "$partial_dir" "$FETCH_MARKER_FILE"
  mkdir -p "$partial_dir"
  say "unpacking io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all from Maven Central"
  say "(Maven's own cache is ~/.m2/repository; timeout ${FETCH_TIMEOUT_S}s)"
  local started_s=$SECONDS
  # Maven runs from the cache dir so that nothing it writes lands in the repository. Debian's
  # Maven 3.8.7 prints bare ANSI resets even with -B -q; sed strips them (pipefail keeps Maven's status).
  (cd "$CACHE_DIR" && timeout "$FETCH_TIMEOUT_S" mvn -B -q -Dstyle.color=never -f "$POM_FILE" \
      -Dapicurio.version="$APICURIO_VERSION" \
      -Dremedy.registry.unpack.dir="$partial_dir" \
      -Dremedy.registry.markers.dir="$CACHE_DIR/markers" \
      dependency:unpack 2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g') \
    || fail "Maven could not fetch Apicurio Registry $APICURIO_VERSION (see its output above)"
  [[ -f "$partial_dir/$(basename "$RUNNER_JAR")" && -d "$partial_dir/lib" ]] \
    || fail "the unpacked distribution lacks $(basename "$RUNNER_JAR") or lib/"
  rm -rf "$DIST_DIR"
  mv "$partial_dir" "$DIST_DIR"
  # The marker is written last: its presence means the dist dir is complete.
  {
    echo "apicurio_version=$APICURIO_VERSION"
    echo "pom_sha256=$(pom_digest)"
  } >"$FETCH_MARKER_FILE.tmp"
  mv "$FETCH_MARKER_FILE.tmp" "$FETCH_MARKER_FILE"
  release_lock
  say "fetched $(du -sh "$DIST_DIR" | cut -f1) into $DIST_DIR in $((SECONDS - started_s))s"
}

# True when $1 is a live registry JVM started for this data dir (a recycled pid is not ours).
is_our_registry() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"-Dremedy.registry.data=$DATA_DIR "* ]]
}

# Ready: Quarkus says so, and the Confluent-compatible API lists subjects.
api_answers() {
  curl -sf -o /dev/null --max-time "$PROBE_TIMEOUT_S" "$BASE_URL/health/ready" \
    && curl -sf -o /dev/null --max-time "$PROBE_TIMEOUT_S" "$CCOMPAT_URL/subjects"
}

# Fails naming every listening socket of pid $1 that is not on loopback (no ss: says it cannot check).
check_loopback_only() {
  local pid="$1"
  if ! command -v ss >/dev/null 2>&1; then
    say "ss (iproute2) is not installed: cannot check that every listener is on loopback"
    return 0
  fi
  local listeners outside
  listeners="$(ss -Hltnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}')" || true
  outside="$(grep -vE '^(127\.[0-9.]+|\[::ffff:127\.[0-9.]+\]|\[::1\]):[0-9]+$' <<<"$listeners" || true)"
  if [[ -n "$outside" ]]; then
    echo "registry.sh: error: the registry listens beyond loopback: $(tr '\n' ' ' <<<"$outside")" >&2
    return 1
  fi
  say "listening on loopback only: $(tr '\n' ' ' <<<"$listeners")"
}

print_failure_log() {
  if [[ -s "$LOG_FILE" ]]; then
    echo "----- last $FAILURE_LOG_LINES lines of $LOG_FILE -----" >&2
    tail -n "$FAILURE_LOG_LINES" "$LOG_FILE" >&2
  fi
}

start() {
  [[ -z "${1:-}" ]] || fail "start: takes no option (got $1)"
  fetch
  require_command flock "apt-get install util-linux"
  require_command curl "apt-get install curl"
  take_lock "$LOCK_FILE"
  mkdir -p "$DATABASE_DIR" "$TMP_DIR"

  local pid
  pid="$(read_pid)"
  if is_our_registry "$pid"; then
    if api_answers; then
      say "already running (pid $pid, $CCOMPAT_URL); nothing to do"
      return 0
    fi
    say "pid $pid is alive but $BASE_URL does not answer yet; waiting for it"
    wait_until_ready "$pid"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    say "removing stale pid file (pid $pid is not a running registry)"
    rm -f "$PID_FILE"
  fi
  if port_answers "$REGISTRY_PORT"; then
    fail "127.0.0.1:$REGISTRY_PORT is in use by another process; choose REMEDY_REGISTRY_PORT"
  fi
  [[ -f "$LOG_FILE" ]] && mv "$LOG_FILE" "$LOG_FILE.previous"

  say "starting Apicurio Registry $APICURIO_VERSION on $BASE_URL (data $DATA_DIR)"
  # setsid detaches the registry from this terminal's session so Ctrl-C here does not reach it;
  # 9>&- keeps the start lock from being inherited (and held) by the registry. The tmp and Vert.x
  # cache dirs are the data dir's, not /tmp. -Dremedy.registry.data marks the process as ours.
  setsid nohup "$JAVA_BIN" "${HEAP_OPTS[@]}" -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dremedy.registry.data="$DATA_DIR" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.datasource.jdbc.url="jdbc:h2:file:$DATABASE_DIR/registry" \
    -Djava.io.tmpdir="$TMP_DIR" -Dvertx.cacheDirBase="$TMP_DIR/vertx-cache" \
    -jar "$RUNNER_JAR" \
    </dev/null >"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  release_lock
  wait_until_ready "$pid"
}

# Waits until the registry answers its health check and its Confluent API, bounded by START_TIMEOUT_S.
wait_until_ready() {
  local pid="$1"
  local started_s=$SECONDS
  local deadline_s=$((SECONDS + START_TIMEOUT_S))
  say "waiting up to ${START_TIMEOUT_S}s for the registry to answer"
  while (( SECONDS < deadline_s )); do
    if ! process_alive "$pid"; then
      echo "registry.sh: error: the registry (pid $pid) exited during start-up" >&2
      print_failure_log
      rm -f "$PID_FILE"
      exit 1
    fi
    if api_answers; then
      if ! check_loopback_only "$pid"; then
        say "stopping the registry"
        stop_pid "$pid"
        exit 1
      fi
      say "running (pid $pid), ready after $((SECONDS - started_s))s"
      say "REMEDY_SCHEMA_REGISTRY_URL=$CCOMPAT_URL"
      return 0
    fi
    sleep "$POLL_INTERVAL_S"
  done
  echo "registry.sh: error: the registry did not answer on $BASE_URL within ${START_TIMEOUT_S}s" >&2
  print_failure_log
  say "stopping the registry that failed to start"
  stop_pid "$pid"
  exit 1
}

stop() {
  if [[ ! -f "$PID_FILE" ]]; then
    say "not running (data $DATA_DIR); nothing to do"
    return 0
  fi
  take_lock "$LOCK_FILE"
  local pid
  pid="$(read_pid)"
  if ! is_our_registry "$pid"; then
    rm -f "$PID_FILE"
    say "not running (data $DATA_DIR); nothing to do"
    return 0
  fi
  say "stopping registry pid $pid (SIGTERM, up to ${STOP_TIMEOUT_S}s)"
  local started_s=$SECONDS
  stop_pid "$pid"
  say "stopped after $((SECONDS - started_s))s"
}

status() {
  local pid
  pid="$(read_pid)"
  if is_our_registry "$pid"; then
    if port_answers "$REGISTRY_PORT"; then
      echo "running (pid $pid, $CCOMPAT_URL, data $DATA_DIR)"
      return 0
    fi
    echo "not answering (pid $pid alive, $BASE_URL closed, data $DATA_DIR)"
    return 1
  fi
  echo "stopped (data $DATA_DIR)"
  return 1
}

usage() {
  sed -n '5,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    fetch) fetch ;;
    start) start "$@" ;;
    stop) stop ;;
    status) status ;;
    url) echo "$CCOMPAT_URL" ;;
    logs) show_log "$LOG_FILE" registry "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
