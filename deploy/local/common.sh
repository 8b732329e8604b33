#!/usr/bin/env bash
# Helpers shared by deploy/local/kafka.sh and deploy/local/registry.sh (sourced, never run).
# The sourcing script sets SCRIPT_NAME first, and the constants these read when called:
# LOCK_TIMEOUT_S, POM_FILE, PID_FILE, PORT_PROBE_TIMEOUT_S, STOP_TIMEOUT_S, KILL_TIMEOUT_S,
# POLL_INTERVAL_S, LOGS_TAIL_LINES.

say() { echo "$SCRIPT_NAME: $*"; }

fail() { echo "$SCRIPT_NAME: error: $*" >&2; exit 1; }

require_command() {
  command -v "$1" >/dev/null 2>&1 || fail "'$1' is not installed ($2)"
}

# Waits for an exclusive lock on $1 through file descriptor 9; a broker must never inherit fd 9.
take_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  flock -w "$LOCK_TIMEOUT_S" 9 || fail "another $SCRIPT_NAME holds $1 for more than ${LOCK_TIMEOUT_S}s"
}

release_lock() { exec 9>&-; }

pom_digest() { sha256sum "$POM_FILE" | cut -d' ' -f1; }

read_pid() {
  [[ -f "$PID_FILE" ]] && cat "$PID_FILE" || true
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

# The end of a log file ($1, what it is in $2); with -f as $3, follow it (the user ends it with Ctrl-C).
show_log() {
  [[ -f "$1" ]] || fail "no $2 log yet at $1"
  if [[ "${3:-}" == "-f" ]]; then
    exec tail -n "$LOGS_TAIL_LINES" -F "$1"
  fi
  tail -n "$LOGS_TAIL_LINES" "$1"
}
