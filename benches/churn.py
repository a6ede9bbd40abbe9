#!/usr/bin/env python3
"""Join/leave churn against a running broker, on loopback only.

Connects N bystanders that register names and read continuously, then runs
K churn loops, each as fast as it can for D seconds: connect, read HELLO,
`NAME churn<k>_<i>`, `QUIT`, read until the broker closes. Reports churn
cycles/s, connections refused with ERR SERVER_FULL per second (the
per-address connection rate, `conn_rate_per_sec`), the JOINED/LEFT frames
per second the bystanders received, and, given --broker-pid, the broker's
CPU use in cores (utime + stime from /proc/<pid>/stat over wall time).

Every process is its own OS process (multiprocessing), so the loops don't
share one GIL; the tool's own CPU use is reported too, because on a small
machine the tool competes with the broker for the same cores.

Bystanders connect from a second loopback address (--bystander-source,
default 127.0.0.2) so they don't spend the churn address's connection
tokens. Python 3.11 standard library only.

    cargo build --release -p broker
    ./target/release/broker --config /tmp/churn.toml --listen 127.0.0.1:7878 &
    python3 benches/churn.py --port 7878 --broker-pid $!
"""

import argparse
import ipaddress
import json
import multiprocessing as mp
import os
import resource
import selectors
import socket
import sys
import time

IO_TIMEOUT = 5.0  # seconds any one socket operation may take
SETUP_LIMIT = 60.0  # seconds the bystanders may take to register


def loopback(addr):
    if not ipaddress.ip_address(addr).is_loopback:
        raise argparse.ArgumentTypeError(f"{addr} is not a loopback address")
    return addr


def read_line(sock, buf):
    """Reads until one LF; returns (line, rest). Raises on EOF/timeout."""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest


def own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bystanders(index, count, args, ready, start_at, out):
    """Registers `count` bystanders, then counts churn presence frames."""
    socks = []
    try:
        deadline = time.monotonic() + SETUP_LIMIT
        for i in range(count):
            if time.monotonic() > deadline:
                raise TimeoutError("bystander setup too slow")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(IO_TIMEOUT)
            if args.bystander_source:
                s.bind((args.bystander_source, 0))
            s.connect((args.host, args.port))
            line, rest = read_line(s, b"")
            if not line.startswith(b"HELLO "):
                raise RuntimeError(f"bystander {i}: {line!r}")
            name = f"byst{index}_{i}"
            s.sendall(f"NAME {name}\n".encode())
            # JOINED lines of earlier bystanders may come first.
            while True:
                line, rest = read_line(s, rest)
                if line == f"OK NAME {name}".encode():
                    break
            s.setblocking(False)
            socks.append(s)
    except Exception as e:  # reported, not raised: the parent decides
        ready.put(("error", f"bystanders {index}: {e}"))
        return
    ready.put(("ready", index))
    start = start_at.get()  # the churn start, monotonic
    stop = start + args.duration
    sel = selectors.DefaultSelector()
    # Per socket: the tail of the last chunk, so a pattern cut between two
    # reads is still found (tails shorter than the pattern: no double count).
    j_pat, l_pat = b"\nJOINED churn", b"\nLEFT churn"
    for s in socks:
        sel.register(s, selectors.EVENT_READ, [b"\n", b"\n"])
    per_sec = [0] * (int(args.duration) + 2)
    total = closed = 0
    cpu0 = own_cpu()
    while True:
        now = time.monotonic()
        if now >= stop or not sel.get_map():
            break
        for key, _ in sel.select(timeout=min(0.2, stop - now)):
            s, tails = key.fileobj, key.data
            try:
                chunk = s.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(s)
                closed += 1
                continue
            jd, ld = tails[0] + chunk, tails[1] + chunk
            n = jd.count(j_pat) + ld.count(l_pat)
            tails[0] = jd[-(len(j_pat) - 1) :]
            tails[1] = ld[-(len(l_pat) - 1) :]
            total += n
            sec = int(time.monotonic() - start)
            if 0 <= sec < len(per_sec):
                per_sec[sec] += n
    out.put(
        {
            "kind": "bystanders",
            "frames": total,
            "per_sec": per_sec,
            "closed": closed,
            "cpu": own_cpu() - cpu0,
        }
    )
    for s in socks:
        s.close()


def churn(index, args, start_at, out):
    """One churn loop: connect, HELLO, NAME, QUIT, until EOF; repeat."""
    start = start_at.get()
    stop = start + args.duration
    cycles = refused = failed = i = 0
    cpu0 = own_cpu()
    while time.monotonic() < stop:
        i += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        try:
            s.connect((args.host, args.port))
            line, rest = read_line(s, b"")
            if line.startswith(b"ERR SERVER_FULL"):
                refused += 1
            elif line.startswith(b"HELLO "):
                s.sendall(f"NAME churn{index}_{i}\nQUIT\n".encode())
                while True:
                    line, rest = read_line(s, rest)
                    if line == b"BYE":
                        break
                cycles += 1
            else:
                failed += 1
            while s.recv(4096):  # until the broker closes
                pass
        except (OSError, EOFError):
            failed += 1
        finally:
            s.close()
    out.put(
        {
            "kind": "churn",
            "cycles": cycles,
            "refused": refused,
            "failed": failed,
            "wall": time.monotonic() - start,
            "cpu": own_cpu() - cpu0,
        }
    )


def broker_cpu(pid):
    """The broker's utime + stime in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the ")": state is field 3, utime 14 and stime 15 (1-based).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", type=loopback, default="127.0.0.1")
    p.add_argument("--port", type=int, default=7878)
    p.add_argument("--bystanders", type=int, default=500)
    p.add_argument("--bystander-procs", type=int, default=2)
    p.add_argument("--bystander-source", type=loopback, default="127.0.0.2",
                   help="source address of the bystanders ('' = default)")
    p.add_argument("--loops", type=int, default=4, help="churn loops (K)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (D)")
    p.add_argument("--broker-pid", type=int)
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args()
    if not 0 < args.duration <= 600:
        p.error("--duration must be in (0, 600]")

    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    starts = [ctx.Queue() for _ in range(args.bystander_procs + args.loops)]
    procs = []
    nb = args.bystander_procs
    for b in range(nb):
        share = args.bystanders // nb + (1 if b < args.bystanders % nb else 0)
        procs.append(ctx.Process(target=bystanders,
                                 args=(b, share, args, ready, starts[b], out)))
    for k in range(args.loops):
        procs.append(ctx.Process(target=churn,
                                 args=(k, args, starts[nb + k], out)))
    for pr in procs[:nb]:
        pr.start()
    for _ in range(nb):
        kind, what = ready.get(timeout=SETUP_LIMIT + 10)
        if kind != "ready":
            for pr in procs[:nb]:
                pr.kill()
            sys.exit(what)
    for pr in procs[nb:]:
        pr.start()

    start = time.monotonic() + 0.2  # everyone is waiting by then
    cpu0 = broker_cpu(args.broker_pid) if args.broker_pid else None
    for q in starts:
        q.put(start)
    time.sleep(max(0.0, start - time.monotonic()))
    wall0 = time.monotonic()
    results = [out.get(timeout=args.duration + 3 * IO_TIMEOUT + 10)
               for _ in procs]
    wall = time.monotonic() - wall0
    cpu1 = broker_cpu(args.broker_pid) if args.broker_pid else None
    for pr in procs:
        pr.join(timeout=IO_TIMEOUT)
        if pr.is_alive():
            pr.kill()

    ch = [r for r in results if r["kind"] == "churn"]
    by = [r for r in results if r["kind"] == "bystanders"]
    per_sec = [sum(x) for x in zip(*(r["per_sec"] for r in by))]
    d = args.duration
    report = {
        "bystanders": args.bystanders,
        "loops": args.loops,
        "duration_s": d,
        "cycles_per_s": round(sum(r["cycles"] for r in ch) / d, 1),
        "refused_per_s": round(sum(r["refused"] for r in ch) / d, 1),
        "failed": sum(r["failed"] for r in ch),
        "presence_frames_per_s": round(sum(r["frames"] for r in by) / d, 1),
        "presence_frames_peak_1s": max(per_sec[: int(d)] or [0]),
        "expected_frames_per_s": round(
            2 * args.bystanders * sum(r["cycles"] for r in ch) / d, 1),
        "bystanders_closed": sum(r["closed"] for r in by),
        "tool_cores": round(sum(r["cpu"] for r in results) / wall, 2),
        "churn_cores": round(sum(r["cpu"] for r in ch) / wall, 2),
        "bystander_cores": round(sum(r["cpu"] for r in by) / wall, 2),
        "broker_cores": (round((cpu1 - cpu0) / wall, 2)
                         if cpu0 is not None and cpu1 is not None else None),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
