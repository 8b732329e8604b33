#!/usr/bin/env bash
# A local single-node Apache Kafka broker (KRaft mode) without Docker, for development and the
# integration tests. Kafka is not packaged for Debian or PyPI, so its jars come from Maven Central.
#
# Usage: deploy/local/kafka.sh fetch|start [--secure]|stop|status|logs [-f]|grant PREFIX|TOOL ARGS...
#
#   fetch   copy the broker classpath into the cache (outside the repo); no-op when complete
#   start   fetch if needed, format storage once, start the broker, wait until it answers
#   start --secure   the same with SASL_SSL (SCRAM-SHA-512), a local CA and ACLs per role; see below
#   stop    SIGTERM, bounded wait, then SIGKILL; no-op when not running
#   status  print running/stopped; exit 0 when running, 1 otherwise
#   logs    print the end of the broker log (-f to follow it)
#   grant PREFIX    (secure) apply the role ACLs for another topic prefix (REMEDY_TOPIC_PREFIX)
#   consumer-groups|topics|acls ARGS...   Kafka's own tools against this broker (bootstrap and,
#           when secure, the admin user's --command-config filled in; REMEDY_KAFKA_TOOL_USER=ops
#           runs them as another role)
#
# Secure mode: the first `start --secure` on an empty data dir makes a CA and a broker certificate
# with openssl, one SCRAM user per role (admin, worker, upstream, fraud, finance, ops) with a random
# password, formats storage with those users and turns on the StandardAuthorizer. For each role,
# <data>/kafka/secure/ROLE.env holds the REMEDY_KAFKA_* settings (`set -a; . ROLE.env`) and
# ROLE.properties the same for Java tools; both are readable by their owner only. The ACLs:
#   worker    read, write, create the prefix's topics and changelogs; its consumer group
#   upstream  write (and describe) the input topics only: orders, incidents, remedy requests
#   fraud     write the policy topic and review decisions (on the requests topic); read the
#             policy and decisions topics
#   finance   nothing on Kafka (finance reads projections over HTTP)
#   ops       read and describe every topic of the prefix, describe the worker's group, write
#             the input topics (dead-letter replay)
# A data dir is secure or plain from its first start; `start` on a secure data dir starts it secure.
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
readonly SCRIPT_NAME=kafka.sh
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

readonly KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
readonly POM_FILE="$SCRIPT_DIR/kafka-pom.xml"
readonly TEMPLATE_FILE="$SCRIPT_DIR/server.properties.template"
readonly BROKER_LOG4J_FILE="$SCRIPT_DIR/log4j.properties"
readonly TOOLS_LOG4J_FILE="$SCRIPT_DIR/tools-log4j.properties"
readonly SECURE_TEMPLATE_FILE="$SCRIPT_DIR/server-secure.properties.template"

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
# Secure mode's certificates, credentials and ACL markers; its presence makes the data dir secure.
readonly SECURE_DIR="$DATA_DIR/secure"
# The SCRAM users of secure mode: admin is the broker's own (super) user, the others are roles.
readonly SECURE_USERS=(admin worker upstream fraud finance ops)
readonly TOPIC_PREFIX="${REMEDY_TOPIC_PREFIX:-remedy}"
# Certificates of the local CA: long enough for a development machine, renewed by deleting the data dir.
readonly CA_VALID_DAYS=3650
readonly BROKER_CERT_VALID_DAYS=825

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

# True when $1 is a live broker JVM started for this data dir (a recycled pid is not ours).
is_our_broker() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *" kafka.Kafka $PROPERTIES_FILE"* ]]
}

# A real Kafka protocol round trip: the broker answers ApiVersions on the client listener.
api_versions_answer() {
  timeout "$API_PROBE_TIMEOUT_S" "$JAVA_BIN" -Dlog4j.configuration="file:$TOOLS_LOG4J_FILE" \
    -cp "$LIBS_DIR/*" kafka.admin.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP_SERVER" $(client_config_args admin) >/dev/null 2>&1
}

is_secure() { [[ -d "$SECURE_DIR" ]]; }

# --command-config for a role's Java client properties, in secure mode only.
client_config_args() {
  if is_secure; then
    echo "--command-config $SECURE_DIR/$1.properties"
  fi
}

# The CA, the broker certificate (SAN IP:127.0.0.1 and DNS:localhost) and one password per user,
# made once; the files are readable by their owner only.
make_secure_material() {
  require_command openssl "apt-get install openssl"
  local work="$SECURE_DIR.partial"
  rm -rf "$work"
  mkdir -p "$work"
  chmod 700 "$work"
  say "secure mode: making a local CA, the broker certificate and SCRAM users (${SECURE_USERS[*]})"
  (
    cd "$work"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$CA_VALID_DAYS" -keyout ca.key -out ca.pem \
      -subj "/CN=Remedy Ledger local CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
      -days "$BROKER_CERT_VALID_DAYS" -extfile broker.ext -out broker.pem 2>/dev/null
    cat broker.key broker.pem ca.pem >broker-keystore.pem
    rm -f broker.csr broker.ext ca.srl
    local user
    for user in "${SECURE_USERS[@]}"; do
      openssl rand -hex 24 >"$user.password"
    done
  ) || fail "openssl could not make the secure mode's certificates"
  mv "$work" "$SECURE_DIR"
  write_client_files
}

# ROLE.env (REMEDY_KAFKA_* for this project's clients) and ROLE.properties (for Java tools).
write_client_files() {
  local user password
  for user in "${SECURE_USERS[@]}"; do
    password="$(<"$SECURE_DIR/$user.password")"
    (
      umask 077
      {
        echo "# Remedy Ledger's Kafka settings for the $user role on the local secure broker."
        echo "REMEDY_KAFKA_BOOTSTRAP=$BOOTSTRAP_SERVER"
        echo "REMEDY_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        echo "REMEDY_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
        echo "REMEDY_KAFKA_USERNAME=$user"
        echo "REMEDY_KAFKA_PASSWORD_FILE=$SECURE_DIR/$user.password"
        echo "REMEDY_KAFKA_CA_FILE=$SECURE_DIR/ca.pem"
      } >"$SECURE_DIR/$user.env"
      {
        echo "# Kafka client properties for the $user role (kafka-consumer-groups --command-config ...)."
        echo "security.protocol=SASL_SSL"
        echo "sasl.mechanism=SCRAM-SHA-512"
        echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$user\" password=\"$password\";"
        echo "ssl.truststore.type=PEM"
        echo "ssl.truststore.location=$SECURE_DIR/ca.pem"
      } >"$SECURE_DIR/$user.properties"
    )
  done
}

# One kafka-acls call: the principal (a role), then resource and operation arguments.
add_acl() {
  local user="$1"
  shift
  run_kafka_tool kafka.admin.AclCommand --bootstrap-server "$BOOTSTRAP_SERVER" \
    --command-config "$SECURE_DIR/admin.properties" --add --force --allow-principal "User:$user" "$@" >/dev/null \
    || fail "kafka-acls could not add the ACL for $user: $*"
}

# The role ACLs for a topic prefix (see the top of this file); applied once per prefix.
grant() {
  local prefix="${1:-$TOPIC_PREFIX}"
  is_secure || fail "grant: the broker in $DATA_DIR is not secure (start it with --secure)"
  [[ "$prefix" =~ ^[A-Za-z0-9._-]+$ ]] || fail "grant: topic prefix '$prefix' has characters Kafka topic names do not allow"
  local marker="$SECURE_DIR/acls-$prefix"
  if [[ -f "$marker" ]]; then
    say "role ACLs for topic prefix '$prefix' already applied"
    return 0
  fi
  local started_s=$SECONDS
  local orders="$prefix.orders.v1" incidents="$prefix.incidents.v1" requests="$prefix.remedy-requests.v1"
  local decisions="$prefix.remedy-decisions.v1" policy="$prefix.policy.v1" group="$prefix-worker"
  local assignments="$prefix.review-assignments.v1"
  say "applying the role ACLs for topic prefix '$prefix' with kafka-acls"
  add_acl worker --resource-pattern-type prefixed --topic "$prefix." --topic "$group-" \
    --operation Read --operation Write --operation Create --operation Describe --operation DescribeConfigs
  add_acl worker --resource-pattern-type prefixed --group "$group" --operation Read --operation Describe
  add_acl upstream --topic "$orders" --topic "$incidents" --topic "$requests" --operation Write --operation Describe
  add_acl fraud --topic "$policy" --topic "$requests" --operation Write --operation Describe
  add_acl fraud --topic "$policy" --topic "$decisions" --topic "$assignments" --operation Read --operation Describe
  add_acl ops --resource-pattern-type prefixed --topic "$prefix." --topic "$group-" \
    --operation Read --operation Describe --operation DescribeConfigs
  add_acl ops --topic "$orders" --topic "$incidents" --topic "$requests" --operation Write
  add_acl ops --resource-pattern-type prefixed --group "$group" --operation Describe
  touch "$marker"
  say "role ACLs for '$prefix' applied in $((SECONDS - started_s))s (finance has none: it reads nothing on Kafka)"
}

# Kafka's own command-line tools, pointed at this broker.
run_tool() {
  local name="$1"
  shift
  local class
  case "$name" in
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    acls) class=kafka.admin.AclCommand ;;
    *) fail "unknown tool $name" ;;
  esac
  fetch_is_complete || fail "no broker classpath yet; run '$0 fetch' first"
  local user="${REMEDY_KAFKA_TOOL_USER:-admin}"
  exec "$JAVA_BIN" -Dlog4j.configuration="file:$TOOLS_LOG4J_FILE" -cp "$LIBS_DIR/*" "$class" \
    --bootstrap-server "$BOOTSTRAP_SERVER" $(client_config_args "$user") "$@"
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

# Prints a template with its placeholders filled; a placeholder left unfilled is an error.
render_template() {
  local file="$1" template
  template="$(<"$file")"
  # The replacements are quoted so that bash 5.2 does not expand '&' inside them.
  template="${template//@KAFKA_PORT@/"$KAFKA_PORT"}"
  template="${template//@CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
  template="${template//@LOG_DIRS@/"$SEGMENTS_DIR"}"
  if is_secure; then
    template="${template//@SECURE_DIR@/"$SECURE_DIR"}"
    template="${template//@ADMIN_PASSWORD@/"$(<"$SECURE_DIR/admin.password")"}"
  fi
  if [[ "$template" =~ @[A-Z_]+@ ]]; then
    fail "$file has a placeholder kafka.sh does not fill: ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$template"
}

# server.properties: the template, then in secure mode the secure template (its keys win, being
# later); owner-readable only, as the secure part holds the admin password.
render_properties() {
  (
    umask 077
    render_template "$TEMPLATE_FILE" >"$PROPERTIES_FILE.tmp"
    if is_secure; then
      printf '\n' >>"$PROPERTIES_FILE.tmp"
      render_template "$SECURE_TEMPLATE_FILE" >>"$PROPERTIES_FILE.tmp"
    fi
  ) || exit 1
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
  local scram_args=()
  if is_secure; then
    local user
    for user in "${SECURE_USERS[@]}"; do
      scram_args+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(<"$SECURE_DIR/$user.password")]")
    done
  fi
  run_kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPERTIES_FILE" "${scram_args[@]}" \
    || fail "kafka.tools.StorageTool format failed"
}

start() {
  local secure_wanted=false
  if [[ "${1:-}" == "--secure" ]]; then
    secure_wanted=true
  elif [[ -n "${1:-}" ]]; then
    fail "start: unknown option $1 (only --secure)"
  fi
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

  if $secure_wanted && ! is_secure; then
    if [[ -f "$SEGMENTS_DIR/meta.properties" ]]; then
      fail "the broker data in $DATA_DIR was formatted without --secure; use another REMEDY_DATA_DIR or delete it"
    fi
    make_secure_material
  elif is_secure && ! $secure_wanted; then
    say "the data in $DATA_DIR is a secure broker's: starting it secure"
  fi
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
  if is_secure; then
    grant "$TOPIC_PREFIX"
    say "secure: SASL_SSL with SCRAM-SHA-512; each role's settings are in $SECURE_DIR/ROLE.env"
  fi
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

usage() {
  sed -n '5,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    fetch) fetch ;;
    start) start "$@" ;;
    stop) stop ;;
    status) status ;;
    logs) show_log "$SERVER_LOG_FILE" broker "$@" ;;
    grant) grant "$@" ;;
    consumer-groups|topics|acls) run_tool "$command" "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
