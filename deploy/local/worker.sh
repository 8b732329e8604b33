#!/usr/bin/env bash
# Starts and stops a local `remedy-ledger worker` in the background (used by `make run`).
# Usage: deploy/local/worker.sh start|stop|status
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
data_dir="${REMEDY_DATA_DIR:-$repo/.data}"
pid_file="$data_dir/worker.pid"
log_file="$data_dir/worker.log"
url="http://${REMEDY_WEB_HOST:-127.0.0.1}:${REMEDY_WEB_PORT:-6066}/health"
# A cold worker creates topics, opens ClickHouse and restores its state: 90 s is ample on 2 cores.
START_WAIT_S_MAX=90
# The worker finishes its in-flight batches and commits on SIGTERM (up to 20 s); 30 s covers it.
STOP_WAIT_S_MAX=30

running() { [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "worker already running (pid $(cat "$pid_file"))"; exit 0; fi
    mkdir -p "$data_dir"
    REMEDY_DATA_DIR="$data_dir" setsid nohup remedy-ledger worker >"$log_file" 2>&1 &
    echo $! >"$pid_file"
    echo -n "starting worker (pid $(cat "$pid_file")), log $log_file "
    for _ in $(seq "$START_WAIT_S_MAX"); do
      if curl -fsS "$url" >/dev/null 2>&1; then echo " up"; exit 0; fi
      if ! running; then echo " died:"; tail -n 40 "$log_file"; exit 1; fi
      echo -n "."; sleep 1
    done
    echo " not answering after ${START_WAIT_S_MAX}s:"; tail -n 40 "$log_file"; exit 1
    ;;
  stop)
    if ! running; then echo "worker not running"; rm -f "$pid_file"; exit 0; fi
    pid="$(cat "$pid_file")"; kill -TERM "$pid"
    for _ in $(seq "$STOP_WAIT_S_MAX"); do
      if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pid_file"; echo "worker stopped"; exit 0; fi
      sleep 1
    done
    echo "worker did not stop in ${STOP_WAIT_S_MAX}s; killing"; kill -KILL "$pid" || true; rm -f "$pid_file"
    ;;
  status)
    if running; then echo "worker running (pid $(cat "$pid_file"))"; else echo "worker stopped"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
