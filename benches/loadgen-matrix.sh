#!/usr/bin/env bash
# Runs the load generator against a separately started release broker and
# keeps every run's JSON report. Loopback only; every run is bounded.
#
#   benches/loadgen-matrix.sh targets   # the speed-target workloads, 5 runs each
#   benches/loadgen-matrix.sh matrix    # 100/500/2000 clients x all/direct/multi/room x 64 B/1 KiB,
#                                       # plus room/direct over the IRC door, 3 runs
#   REFILL=4 benches/loadgen-matrix.sh targets   # pipelining senders (loadgen --refill 4)
#
# Workloads: all/direct/multi/room on the native door, and `irc` rows (room
# and direct over the broker's IRC door, loadgen --door irc). The broker's
# IRC door listens on 127.0.0.1:$IRC_PORT (default PORT + 1).
#
# Output: benches/results/<date>-<HHMM>-<set>[-refill<M>].jsonl (one JSON object per run, with
# the workload added under "run") and a median table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
set_name=${1:-targets}
runs=${RUNS:-}
port=${PORT:-7911}
irc_port=${IRC_PORT:-$((port + 1))}
refill=${REFILL:-1}
cargo build --release -q -p broker -p loadgen
suffix=""
[ "$refill" = 1 ] || suffix="-refill$refill"
out="benches/results/$(date -u +%Y-%m-%d-%H%M)-${set_name}${suffix}.jsonl"
: > "$out"

# One line per workload: mode clients senders targets size door.
workloads() {
  case "$set_name" in
    targets)
      echo "all 500 4 0 64 native"
      echo "direct 500 500 0 64 native"
      echo "multi 500 50 10 64 native"
      echo "room 500 4 0 64 native"
      echo "room 500 4 0 64 irc"
      echo "direct 500 500 0 64 irc"
      ;;
    matrix)
      for size in 64 1024; do
        for n in 100 500 2000; do
          echo "all $n 4 0 $size native"
          echo "direct $n $n 0 $size native"
          echo "multi $n $((n / 10)) 10 $size native"
          echo "room $n 4 0 $size native"
          # IRC lines are at most 512 bytes: the 1 KiB rows are native only.
          if [ "$size" -le 400 ]; then
            echo "room $n 4 0 $size irc"
            echo "direct $n $n 0 $size irc"
          fi
        done
      done
      ;;
    *) echo "unknown set $set_name" >&2; exit 2 ;;
  esac
}
[ -n "$runs" ] || { [ "$set_name" = targets ] && runs=5 || runs=3; }

# Runs go round-robin over the workloads (not all runs of one workload in a
# row), so a slow minute on a shared machine hits every workload alike.
for run in $(seq 1 "$runs"); do
  workloads | while read -r mode clients senders targets size door; do
    ./target/release/broker --config benches/broker-perf.toml --listen "127.0.0.1:$port" \
      --irc-listen "127.0.0.1:$irc_port" 2>/dev/null &
    bpid=$!
    sleep 0.3
    extra=()
    [ "$mode" = multi ] && extra=(--targets "$targets")
    if [ "$door" = irc ]; then
      target=(--door irc --irc-addr "127.0.0.1:$irc_port")
    else
      target=(--addr "127.0.0.1:$port")
    fi
    json=$(timeout 120 ./target/release/loadgen "${target[@]}" --clients "$clients" \
      --senders "$senders" --mode "$mode" --size "$size" --window 8 --refill "$refill" \
      --duration "${DURATION:-5}" --warmup 1 --broker-pid "$bpid" --json "${extra[@]}" 2>/dev/null || true)
    stop_broker "$bpid"
    [ -n "$json" ] || json='{"error":"loadgen failed"}'
    printf '{"run":{"mode":"%s","door":"%s","clients":%s,"senders":%s,"targets":%s,"size":%s,"refill":%s,"n":%s},"report":%s}\n' \
      "$mode" "$door" "$clients" "$senders" "$targets" "$size" "$refill" "$run" "$json" >> "$out"
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    r, rep = d["run"], d["report"]
    # Files from before the IRC rows have no "door": they were native.
    key = (r["mode"], r.get("door", "native"), r["clients"], r["senders"], r["targets"], r["size"])
    rows.setdefault(key, []).append(rep)
print(f"{'mode':7} {'door':6} {'clients':>7} {'senders':>7} {'size':>5} | {'deliv/s (median)':>16} {'min':>10} {'max':>10} | {'p99 ms':>7} | {'per broker CPU-s':>16} | {'lost':>4} | runs")
for key, reps in rows.items():
    ok = [x for x in reps if "deliveries_per_sec" in x]
    if not ok:
        print(key, "failed"); continue
    d = [x["deliveries_per_sec"] for x in ok]
    p99 = statistics.median(x["latency_us"]["p99"] for x in ok) / 1000
    eff = statistics.median((x.get("deliveries_per_broker_cpu_s") or 0) for x in ok)
    lost = sum(x["lost"] + x["duplicates"] + x["reordered"] for x in ok)
    mode, door, clients, senders, targets, size = key
    print(f"{mode:7} {door:6} {clients:>7} {senders:>7} {size:>5} | {statistics.median(d):>16,.0f} {min(d):>10,.0f} {max(d):>10,.0f} | {p99:>7.1f} | {eff:>16,.0f} | {lost:>4} | {len(ok)}")
PY
echo "raw results: $out"
