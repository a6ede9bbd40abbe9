#!/usr/bin/env bash
# Interleaved A/B of two builds on one workload: short runs, A then B, N
# times; prints both medians and the median of the per-pair ratios B/A,
# which a slow minute on a shared machine affects on both sides alike.
#
#   benches/ab.sh DIR_A DIR_B N MODE [loadgen args...]
#   benches/ab.sh /tmp/old/target/release target/release 10 direct --senders 500
#   CONFIG_A=irc.toml CONFIG_B=irc.toml benches/ab.sh A B 10 direct --senders 500 \
#     --door irc --irc-addr 127.0.0.1:7925     # irc.toml: irc_listen on 7925
#
# DIR_A and DIR_B each hold a `broker` and a `loadgen` binary (build the
# older commit in a worktree with its own target dir). 500 clients, 64 B,
# window 8, 0.5 s warm-up, 1.5 s measured, broker-perf.toml; loopback only.
# CONFIG_A / CONFIG_B give each side its own config file (an older broker
# refuses keys it doesn't know).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
[ $# -ge 4 ] || { sed -n 2,11p "$0"; exit 2; }
a=$1; b=$2; n=$3; shift 3
port=${PORT:-7924}
# Another door's address comes from the arguments (`--door irc --irc-addr
# ...`, with a config that opens it); the native one is ours.
addr=(--addr "127.0.0.1:$port")
case " $* " in *" --door irc "* | *" --door web "*) addr=() ;; esac
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq 1 "$n"); do
  for side in A B; do
    if [ $side = A ]; then dir=$a; conf=${CONFIG_A:-benches/broker-perf.toml}
    else dir=$b; conf=${CONFIG_B:-benches/broker-perf.toml}; fi
    "$dir/broker" --config "$conf" --listen "127.0.0.1:$port" 2>/dev/null &
    bpid=$!
    sleep 0.2
    timeout 60 "$dir/loadgen" "${addr[@]}" --clients 500 --size 64 --window 8 \
      --duration 1.5 --warmup 0.5 --broker-pid "$bpid" --json --mode "$@" 2>/dev/null \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["deliveries_per_sec"], d["deliveries_per_broker_cpu_s"] or 0, d["latency_us"]["p99"])' \
      >> "$out" || echo "nan nan nan" >> "$out"
    stop_broker "$bpid"
  done
done
python3 - "$out" "$*" <<'PY'
import math, statistics, sys
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
pairs = [(a, b) for a, b in zip(rows[0::2], rows[1::2]) if not any(map(math.isnan, a + b))]
if not pairs:
    sys.exit("no complete pairs")
med = lambda xs: statistics.median(xs)
print(f"workload: {sys.argv[2]}  ({len(pairs)} pairs)")
for name, i in (("A", 0), ("B", 1)):
    side = [p[i] for p in pairs]
    print(f"  {name}: {med(s[0] for s in side):,.0f} deliveries/s, "
          f"{med(s[1] for s in side):,.0f} per broker CPU-s, p99 {med(s[2] for s in side) / 1000:.1f} ms")
ratios = [b[0] / a[0] for a, b in pairs]
print(f"  B/A per pair: median {med(ratios):.3f}, range {min(ratios):.2f}-{max(ratios):.2f}, "
      f"B ahead in {sum(r > 1 for r in ratios)} of {len(ratios)}")
eff = [b[1] / a[1] for a, b in pairs if a[1] > 0]
if eff:
    print(f"  B/A per broker CPU-s per pair: median {med(eff):.3f}, B ahead in {sum(r > 1 for r in eff)} of {len(eff)}")
lat = [b[2] / a[2] for a, b in pairs if a[2] > 0]
if lat:
    print(f"  B/A p99 per pair: median {med(lat):.3f}, B lower in {sum(r < 1 for r in lat)} of {len(lat)}")
PY
