#!/usr/bin/env bash
# The broker's IRC door next to two IRC servers, ngIRCd and InspIRCd, under
# the same load-generator IRC workloads (loadgen --door irc: plain RFC 2812
# clients, NICK/USER, JOIN, PRIVMSG, PING/PONG).
#
#   benches/irc-compare.sh [RUNS]      # default 3 runs per server and workload
#   DURATION=2 WARMUP=0.5 PORT_BASE=7931 benches/irc-compare.sh 5
#   BIN_DIR=/tmp/old benches/irc-compare.sh   # a prebuilt broker and loadgen
#   SERVERS=broker benches/irc-compare.sh 5    # only some of the servers
#
# Servers: broker (as it ships: every IRC client also sits in #all),
# broker-nochan (irc_join_all = false: a client is in no channel it did not
# join, as on the other two), ngircd, inspircd.
#
# Workloads, 500 IRC clients each (CLIENTS=N for another count), 64 B
# payloads, closed loop, window 8:
#   room    4 senders PRIVMSG a channel (#load) that all 500 joined
#   direct  500 senders, each PRIVMSG to one random other nick
# Runs are interleaved (run 1 of every workload on every server, then run
# 2, ...), so a slow minute on a shared machine hits all servers alike; each
# run gets a freshly started server.
#
# Reported per server and workload (medians over the runs):
#   deliveries/s over the measured window, p99 latency (send to receipt),
#   deliveries per server CPU-second, and RSS per connection: the server's
#   VmRSS once all clients are registered (and in the channel), minus its
#   VmRSS before they connected, over the number of clients. What a server
#   holds per thread whatever the count (allocator caches) is in that
#   figure too; runs at two counts (CLIENTS=500 and 1500) tell the two
#   apart. Before that baseline, WARM (20)
#   clients send direct messages for half a second and leave, so what a
#   server pays once (code paged in, first allocations) is not counted per
#   connection; WARM=0 measures from a cold server.
#
# The servers: ngIRCd and InspIRCd from Debian (installed with apt-get if
# missing; on a host with systemd their packages may also start the
# system-wide daemons on 6667, which this script leaves alone), each with a
# minimal config written to a temp dir: loopback only, no DNS or ident
# lookups, no connection limits per IP, flood protection off (ngIRCd:
# MaxPenaltyTime = 0; InspIRCd: threshold and commandrate far out of reach,
# fakelag off, big send/receive queues). Our broker runs with
# benches/broker-perf.toml (flood control off) without its database (no room
# history carried from one run into the next), its IRC door on loopback.
#
# Caveats: ngIRCd and InspIRCd are single-threaded, the broker uses both
# cores; all three share the machine's cores with the load generator.
# ngIRCd listens with a backlog of 10, so the load generator connects to it
# 4 clients at a time per thread (--handshakes 4; the others get 128): this
# changes only the connect phase, not the measured window. Latency in a
# closed loop follows throughput (Little's law).
#
# Output: benches/results/<date>-<HHMM>-irc-compare.jsonl (one JSON object
# per run: server, workload, RSS before, loadgen's --json report) and a
# table on stdout. Loopback only; every wait is bounded; every server this
# script starts is stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

runs=${1:-${RUNS:-3}}
duration=${DURATION:-2}
warmup=${WARMUP:-0.5}
base=${PORT_BASE:-7931}
clients=${CLIENTS:-500}
case "$clients" in '' | *[!0-9]*) echo "CLIENTS must be a number" >&2; exit 2 ;; esac
[ "$clients" -ge 10 ] && [ "$clients" -le 5000 ] || { echo "CLIENTS must be 10 to 5000" >&2; exit 2; }
case "$runs" in '' | *[!0-9]*) echo "RUNS must be a number" >&2; exit 2 ;; esac
[ "$runs" -ge 1 ] && [ "$runs" -le 50 ] || { echo "RUNS must be 1 to 50" >&2; exit 2; }

ngircd_bin=/usr/sbin/ngircd
inspircd_bin=/usr/sbin/inspircd
if [ ! -x "$ngircd_bin" ] || [ ! -x "$inspircd_bin" ]; then
  echo "installing ngircd and inspircd (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 600 apt-get install -y -q ngircd inspircd >/dev/null
fi

# BIN_DIR: a directory with a prebuilt `broker` and `loadgen` (another
# commit's, say); without it this tree's release build is used.
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
  [ -x "$bin/broker" ] && [ -x "$bin/loadgen" ] || { echo "no broker and loadgen in $bin" >&2; exit 2; }
else
  cargo build --release -q -p broker -p loadgen
  bin=./target/release
fi

tmp=$(mktemp -d /tmp/irc-compare.XXXXXX)
chmod 755 "$tmp" # ngIRCd reads its config as root, then runs as nobody
# The broker: broker-perf.toml without the embedded database. With it, room
# history outlives each run in ./data and the next run's JOIN #load
# replays it, which the load generator counts as duplicated and reordered
# messages (and the other servers keep no history either).
{ cat benches/broker-perf.toml; echo 'data_dir = ""'; } > "$tmp/broker.toml"
# broker-nochan: the same, and IRC clients are not put in #all, so they are
# in the channels they join and no other, as on ngIRCd and InspIRCd.
{ cat "$tmp/broker.toml"; echo 'irc_join_all = false'; } > "$tmp/broker-nochan.toml"
# The one server running now (servers run one at a time); cleared once it
# is stopped and reaped, so the exit trap never signals a reused pid.
running=""
cleanup() {
  if [ -n "$running" ]; then
    kill -KILL "$running" 2>/dev/null || true
    wait "$running" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The servers and the load generator need a descriptor per client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

broker_port=$base      # the broker's native door (unused, but it must listen)
broker_irc=$((base + 1))
ngircd_port=$((base + 2))
inspircd_port=$((base + 3))

cat > "$tmp/ngircd.conf" <<EOF
# ngIRCd for benches/irc-compare.sh: loopback, no lookups, no limits.
[Global]
	Name = irc.ngircd.test
	Info = loadgen comparison
	AdminInfo1 = loadgen
	AdminInfo2 = loadgen
	AdminEMail = loadgen@localhost
	Listen = 127.0.0.1
	Ports = $ngircd_port
	MotdPhrase = "loadgen"
[Limits]
	# 0: unlimited connections, from any one address too; any channel count.
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	# 0 turns the penalty (command and byte throttling) off altogether.
	MaxPenaltyTime = 0
	PingTimeout = 120
	PongTimeout = 60
[Options]
	DNS = no
	Ident = no
	PAM = no
	IncludeDir = $tmp/ngircd.conf.d
EOF

cat > "$tmp/inspircd.conf" <<EOF
# InspIRCd 3 for benches/irc-compare.sh: loopback, no lookups, no limits.
<server name="irc.inspircd.test" description="loadgen comparison" network="loadgen">
<admin name="loadgen" nick="loadgen" email="loadgen@localhost">
<path configdir="$tmp" datadir="$tmp" logdir="$tmp" runtimedir="$tmp"
      moduledir="/usr/lib/inspircd/modules">
<pid file="$tmp/inspircd.pid">
<bind address="127.0.0.1" port="$inspircd_port" type="clients">
# threshold/commandrate out of reach and fakelag off: no flood limits;
# localmax/globalmax/limit: 500 clients from 127.0.0.1 are fine.
<connect name="loadgen" allow="127.0.0.1" timeout="60" pingfreq="120"
         threshold="1000000" commandrate="100000000" fakelag="no"
         hardsendq="16777216" softsendq="1048576" recvq="1048576"
         localmax="100000" globalmax="100000" limit="100000" maxchans="20"
         resolvehostnames="no" useident="no">
<performance softlimit="4096" somaxconn="1024" quietbursts="yes">
<dns timeout="1">
<security maxtargets="20">
EOF

# wait_port PORT: up to 5 s for a listener on 127.0.0.1:PORT.
wait_port() {
  local _
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start SERVER: starts it in the background; sets $spid and $sport.
start() {
  case "$1" in
    broker | broker-nochan)
      # No web door: its default port (7880) may be taken on a shared
      # machine, and nothing here uses it.
      "$bin/broker" --config "$tmp/$1.toml" \
        --listen "127.0.0.1:$broker_port" --irc-listen "127.0.0.1:$broker_irc" \
        --http-listen "" \
        </dev/null >"$tmp/$1.log" 2>&1 &
      sport=$broker_irc ;;
    ngircd)
      "$ngircd_bin" --nodaemon --passive --config "$tmp/ngircd.conf" \
        </dev/null >"$tmp/ngircd.log" 2>&1 &
      sport=$ngircd_port ;;
    inspircd)
      "$inspircd_bin" --nofork --runasroot --config="$tmp/inspircd.conf" \
        </dev/null >"$tmp/inspircd.log" 2>&1 &
      sport=$inspircd_port ;;
  esac
  spid=$!
  running=$spid
}

# stop SERVER PID: the broker shuts down gracefully (SIGINT); the others get
# SIGTERM; anything still there after 5 s is killed.
stop() {
  if [ "${1%-nochan}" = broker ]; then
    stop_broker "$2"
  else
    kill -TERM "$2" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
  fi
  running=""
}

# Which servers to run (all four unless SERVERS names fewer, e.g. when
# trying a change to the broker alone).
servers=${SERVERS:-broker broker-nochan ngircd inspircd}
for s in $servers; do
  case "$s" in broker | broker-nochan | ngircd | inspircd) ;; *) echo "unknown server $s in SERVERS" >&2; exit 2 ;; esac
done

# Clients of a short run before the baseline (0: none, as before 2026-12-05).
warm=${WARM:-20}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

suffix=""
[ "$clients" = 500 ] || suffix="-$clients"
out="benches/results/$(date -u +%Y-%m-%d-%H%M)-irc-compare$suffix.jsonl"
: > "$out"
# workload: name mode senders
workloads="room room 4
direct direct $clients"

for run in $(seq 1 "$runs"); do
  while read -r name mode senders; do
    for server in $servers; do
      start "$server"
      if ! wait_port "$sport"; then
        echo "$server did not listen on 127.0.0.1:$sport; its log:" >&2
        tail -5 "$tmp/$server.log" >&2 || true
        stop "$server" "$spid"
        printf '{"server":"%s","workload":"%s","n":%s,"report":{"error":"no listener"}}\n' \
          "$server" "$name" "$run" >> "$out"
        continue
      fi
      handshakes=128
      [ "$server" = ngircd ] && handshakes=4
      if [ "$warm" -gt 0 ]; then
        # A few clients first, so that what every server pays once (code
        # paged in, first allocations) is not counted per connection.
        # Direct messages: a room would leave its history behind for the
        # measured joiners.
        timeout 60 "$bin/loadgen" --door irc --irc-addr "127.0.0.1:$sport" \
          --mode direct --clients "$warm" --senders "$warm" \
          --size 64 --window 8 --duration 0.5 --warmup 0.2 --drain 1 --handshakes "$handshakes" \
          </dev/null >/dev/null 2>&1 || true
      fi
      sleep 0.3 # let the probe connection go away before the baseline
      before=$(rss_kib "$spid")
      json=$(timeout 180 "$bin/loadgen" --door irc --irc-addr "127.0.0.1:$sport" \
        --mode "$mode" --clients "$clients" --senders "$senders" --size 64 --window 8 \
        --duration "$duration" --warmup "$warmup" --drain 5 --handshakes "$handshakes" \
        --broker-pid "$spid" --json </dev/null 2>/dev/null || true)
      stop "$server" "$spid"
      [ -n "$json" ] || json='{"error":"loadgen failed"}'
      printf '{"server":"%s","workload":"%s","n":%s,"clients":%s,"senders":%s,"rss_before_kib":%s,"report":%s}\n' \
        "$server" "$name" "$run" "$clients" "$senders" "$before" "$json" >> "$out"
      echo "run $run/$runs: $name on $server done" >&2
    done
  done <<< "$workloads"
done

python3 - "$out" "$duration" "$clients" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault((d["workload"], d["server"]), []).append(d)
med = statistics.median
print(f"IRC servers, {sys.argv[3]} clients, 64 B, closed loop window 8, {sys.argv[2]} s measured; medians")
print(f"{'workload':9} {'server':13} | {'deliveries/s':>12} {'range':>19} | {'p99 ms':>7} | "
      f"{'per CPU-s':>10} | {'RSS/conn KiB':>12} | {'lost':>4} | ok runs")
for (work, server), ds in rows.items():
    ok = [d for d in ds if d["report"].get("ok")]
    bad = len(ds) - len(ok)
    if not ok:
        why = next((d["report"].get("problems") or [d["report"].get("error")] for d in ds), [""])
        print(f"{work:9} {server:13} | failed: {'; '.join(map(str, why))[:100]}")
        continue
    rep = [d["report"] for d in ok]
    dps = [r["deliveries_per_sec"] for r in rep]
    p99 = med(r["latency_us"]["p99"] for r in rep) / 1000
    eff = med((r.get("deliveries_per_broker_cpu_s") or 0) for r in rep)
    per_conn = [
        (r["broker_rss_connected_mib"] * 1024 - d["rss_before_kib"]) / d["clients"]
        for d, r in zip(ok, rep)
        if r.get("broker_rss_connected_mib")
    ]
    rss = f"{med(per_conn):12.1f}" if per_conn else f"{'n/a':>12}"
    lost = sum(r["lost"] + r["duplicates"] + r["reordered"] for r in rep)
    rng = f"{min(dps):,.0f}-{max(dps):,.0f}"
    print(f"{work:9} {server:13} | {med(dps):>12,.0f} {rng:>19} | {p99:>7.1f} | {eff:>10,.0f} | "
          f"{rss} | {lost:>4} | {len(ok)}/{len(ds)}")
PY
echo "raw results: $out"
