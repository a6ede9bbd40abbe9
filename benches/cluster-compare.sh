#!/usr/bin/env bash
# One broker against a cluster of three on this machine, under the same
# load: native clients, 64 B, window 8, closed loop.
#
#   benches/cluster-compare.sh [RUNS]        # default 3 runs per setup and mode
#   CLIENTS=300 DURATION=3 PORT_BASE=7941 REDIS_PORT=6441 benches/cluster-compare.sh 5
#
# Setups (each run starts fresh brokers and a fresh redis-server):
#   single   one broker, no cluster
#   one      one broker in a cluster (Redis up, no other node)
#   three    three brokers in a cluster; client i on node i mod 3
# Modes: all (4 senders, every message to everyone), room (everyone in
# #load, 4 senders to it; a room message goes to every node and to the
# room's history list in Redis) and direct (every client sends to one
# other, so two in three messages cross nodes).
# Runs are interleaved (run 1 of every setup and mode, then run 2, ...).
#
# Reported per setup and mode (medians): deliveries/s, deliveries per
# broker CPU-second (all brokers' CPU summed), p99 (and same-node and
# cross-node p99 with three nodes), and the Redis server's CPU-seconds
# per second of the run. Loopback only; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
runs=${1:-3}
clients=${CLIENTS:-300}
duration=${DURATION:-3}
warmup=${WARMUP:-0.5}
base=${PORT_BASE:-7941}
rport=${REDIS_PORT:-6441}
command -v redis-server >/dev/null || { echo "redis-server is missing (./test.sh installs it)" >&2; exit 2; }
cargo build --release -q -p broker -p loadgen
bin=target/release
tmp=$(mktemp -d)
out=$tmp/rows
trap 'rm -rf "$tmp"' EXIT
conf=$tmp/broker.toml
{ grep -v '^#' benches/broker-perf.toml; printf 'http_listen = ""\ndata_dir = ""\n'; } > "$conf"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() {
  local setup=$1 mode=$2 n=1 pids=() addrs=() redis=""
  [ "$setup" = three ] && n=3
  if [ "$setup" != single ]; then
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    redis=$!
    for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  fi
  for k in $(seq 1 "$n"); do
    local port=$((base + k)) extra=()
    [ -n "$redis" ] && extra=(--cluster "redis://127.0.0.1:$rport" --node "n$k")
    "$bin/broker" --config "$conf" --listen "127.0.0.1:$port" "${extra[@]}" 2>/dev/null &
    pids+=($!)
    addrs+=("127.0.0.1:$port")
  done
  sleep 0.5
  local senders=4
  [ "$mode" = direct ] && senders=$clients
  local r0=0
  [ -n "$redis" ] && r0=$(ticks "$redis")
  local t0
  t0=$(date +%s.%N)
  timeout 120 "$bin/loadgen" --addr "$(IFS=,; echo "${addrs[*]}")" --clients "$clients" \
    --mode "$mode" --senders "$senders" --size 64 --window 8 --duration "$duration" \
    --warmup "$warmup" --broker-pid "$(IFS=,; echo "${pids[*]}")" --json 2>/dev/null \
    > "$tmp/run.json" || echo '{}' > "$tmp/run.json"
  local t1 r1=0
  t1=$(date +%s.%N)
  [ -n "$redis" ] && r1=$(ticks "$redis")
  for p in "${pids[@]}"; do stop_broker "$p"; done
  if [ -n "$redis" ]; then kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; fi
  python3 - "$tmp/run.json" "$setup" "$mode" "$r0" "$r1" "$t0" "$t1" "$(getconf CLK_TCK)" >> "$out" <<'PY'
import json, sys
path, setup, mode, r0, r1, t0, t1, hz = sys.argv[1:]
try:
    d = json.load(open(path))
except ValueError:
    d = {}
def p99(k):
    v = d.get(k) or {}
    return v.get("p99")
row = {
    "setup": setup, "mode": mode,
    "dps": d.get("deliveries_per_sec"),
    "per_cpu": d.get("deliveries_per_broker_cpu_s"),
    "p99": p99("latency_us"), "p99_same": p99("latency_same_us"), "p99_cross": p99("latency_cross_us"),
    "lost": d.get("lost"),
    "redis_cpu_per_s": (int(r1) - int(r0)) / int(hz) / max(float(t1) - float(t0), 1e-9),
}
print(json.dumps(row))
PY
}

for i in $(seq 1 "$runs"); do
  for mode in all room direct; do
    for setup in single one three; do
      echo "run $i: $setup $mode" >&2
      one_run "$setup" "$mode"
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(x, unit=""):
    if x is None: return "-"
    if x >= 1e6: return f"{x/1e6:.2f} M{unit}"
    if x >= 1e3: return f"{x/1e3:.0f} k{unit}"
    return f"{x:.2f}{unit}"
print("| mode | setup | deliveries/s | per broker CPU-s | p99 | p99 same / cross | Redis CPU-s per s | lost |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for mode in ("all", "room", "direct"):
    for setup in ("single", "one", "three"):
        rs = [r for r in rows if r["mode"] == mode and r["setup"] == setup]
        if not rs: continue
        ms = lambda k: med([r[k] for r in rs])
        p = lambda k: "-" if ms(k) is None else f"{ms(k)/1000:.1f} ms"
        split = "-" if ms("p99_same") is None else f"{p('p99_same')} / {p('p99_cross')}"
        red = "-" if setup == "single" else f"{ms('redis_cpu_per_s'):.2f}"
        lost = sum(r["lost"] or 0 for r in rs)
        print(f"| {mode} | {setup} | {f(ms('dps'))} | {f(ms('per_cpu'))} | {p('p99')} | {split} | {red} | {lost} |")
PY
