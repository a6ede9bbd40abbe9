# Shared by the benchmark scripts (source it).

# stop_broker PID: SIGINT, then up to 5 s for the graceful shutdown; a
# broker still running after that is reported and killed so it can't hold
# the port for the next run.
stop_broker() {
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    echo "broker $1 did not exit within 5 s of SIGINT; killing it" >&2
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}
