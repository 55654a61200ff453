#!/usr/bin/env python3
"""/metrics at the limit: two dockwatch builds beside nginx on the same body, no dockerd needed.

    benches/serve.py --base PATH [--new PATH] [--daemons 7,35] [--rounds 3] [--seconds 10]
                     [--connections 100] [--gzip] [--markdown FILE]

A replay fleet (benches/replay.py: answers captured from the test bed's dockerd A)
stands in for the daemons, so the body is a real one: each replay daemon adds about
13 KB and 150 series (7 make about today's ~90 KB body, 35 about five times the
series, the 500-container body of issue 18). For each size, both builds watch the
same N daemons at the shipped 15 s interval (so bodies change as polls land, and
process_* every second, as in production), and nginx (Debian's, `worker_processes
auto`, `sendfile on`, as benches/fleet.py starts it; `gzip_static` for the gzip
rounds) serves the new build's body as a static file. Then `wrk -t2 -cC -dSs
--latency` against each of the three, R rounds, rotating which goes first; the
table has the medians of the rounds (req/s, p50, p99) and the ratios of the new
build to nginx and to the base build. Nothing fails on a missed target, only on a
broken measurement (wrk errors, a build not ready).
"""

from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fleet as fl  # noqa: E402  (Dockwatch, wrk, nginx)
import fleet_scale as fs  # noqa: E402  (replay config, gzip wrk and nginx)


def log(msg: str) -> None:
    print(f"[serve] {msg}", file=sys.stderr, flush=True)


WRK_LAT = fl.WRK_LAT


def wrk(url: str, seconds: int, connections: int, gz: bool) -> dict:
    """fleet.py's wrk, but socket errors are counted (and shown), not fatal;
    a non-2xx answer still is."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd += (["-H", "Accept-Encoding: gzip"] if gz else []) + [url]
    text = fl.run(cmd).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        fl.die(f"no Requests/sec in wrk's output:\n{text}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {q: float(v) * scale[u] for q, v, u in WRK_LAT.findall(text)}
    if re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        fl.die(f"wrk against {url} saw answers other than 200:\n{text}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(map(int, sock.groups())) if sock else 0
    return {"rps": float(rps.group(1)), "p50": lat["50"], "p99": lat["99"], "errors": errors}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--base", required=True, help="the build before the change (a release binary)")
    ap.add_argument("--new", default=str(fl.ROOT / "target/release/dockwatch"), help="default target/release")
    ap.add_argument("--daemons", default="7,35", help="replay daemons per size, comma-separated (default 7,35)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    ap.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=100, help="wrk connections (default 100)")
    ap.add_argument("--gzip", action="store_true", help="also rounds with Accept-Encoding: gzip")
    ap.add_argument("--markdown", help="write the table here too")
    args = ap.parse_args()
    sizes = [int(n) for n in args.daemons.split(",")]
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            fl.die(f"{tool} not found")
    work = Path(tempfile.mkdtemp(prefix="dw-serve."))
    os.chmod(work, 0o755)  # nginx's workers run as nobody/www-data
    cleanups: list = []
    try:
        table = bench(args, sizes, work, cleanups)
    finally:
        for c in reversed(cleanups):
            try:
                c()
            except Exception as e:  # noqa: BLE001  (clean up the rest regardless)
                log(f"cleanup: {e}")
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def bench(args, sizes: list[int], work: Path, cleanups: list) -> str:
    fleet_dir = work / "fleet"
    replay = subprocess.Popen(
        [sys.executable, str(HERE / "replay.py"), "serve", "--count", str(max(sizes)), "--dir", str(fleet_dir)],
        stdout=subprocess.DEVNULL, stderr=open(work / "replay.log", "w"), start_new_session=True)
    cleanups.append(lambda: (replay.terminate(), replay.wait(20)))
    deadline = time.monotonic() + 60
    while not (fleet_dir / "endpoints.json").exists():
        if replay.poll() is not None or time.monotonic() > deadline:
            fl.die(f"the replay fleet did not start; see {work / 'replay.log'}")
        time.sleep(0.2)
    endpoints = json.loads((fleet_dir / "endpoints.json").read_text())
    builds = {"base": Path(args.base), "new": Path(args.new)}
    for who, path in builds.items():
        shutil.copy2(path, work / f"dockwatch-{who}")
    modes = [False, True] if args.gzip else [False]
    rows = []
    for n in sizes:
        daemons = [(e["name"], e["host"]) for e in endpoints[:n]]
        dws = {}
        for who in builds:
            cfg = work / f"{who}-{n}.toml"
            fs.write_config(cfg, fl.free_port(), daemons, {"interval": "15s"})
            dws[who] = fl.Dockwatch(work / f"dockwatch-{who}", cfg, work / f"{who}-{n}.log")
        for dw in dws.values():
            cleanups.append(dw.stop)
            dw.wait_ready(timeout=60)
        time.sleep(2)
        status, body = fl.http_get(dws["new"].url + "/metrics")
        if status != 200:
            fl.die(f"/metrics answered {status}")
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        ndir = work / f"nginx-{n}"
        ndir.mkdir()
        nginx, port = fs.start_nginx(ndir, body)
        cleanups.append(lambda p=nginx: (p.terminate(), p.wait(10)))
        time.sleep(2)  # the workers from before the reload (gzip_static) gone
        urls = {"nginx": f"http://127.0.0.1:{port}/metrics", "base": dws["base"].url + "/metrics",
                "new": dws["new"].url + "/metrics"}
        log(f"{n} daemons: body {len(body):,} bytes, {series:,} series; load {load()}")
        for gz in modes:
            runs: dict[str, list[dict]] = {k: [] for k in urls}
            for r in range(args.rounds):
                order = list(urls)[r % 3:] + list(urls)[:r % 3]
                for who in order:
                    res = wrk(urls[who], args.seconds, args.connections, gz)
                    runs[who].append(res)
                    log(f"{n} daemons{' gzip' if gz else ''}, round {r + 1}, {who}: {res['rps']:,.0f} req/s, "
                        f"p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms, socket errors {res['errors']}; load {load()}")
            med = {who: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99")}
                   for who, rs in runs.items()}
            rows.append((n, len(body), series, gz, med, runs))
        nginx.terminate()
        nginx.wait(10)
        for dw in dws.values():
            dw.stop()
    return render(args, rows)


def render(args, rows) -> str:
    out = ["| body | encoding | nginx req/s (p50 / p99 ms) | base req/s (p50 / p99 ms) | new req/s (p50 / p99 ms) "
           "| new ÷ nginx | new ÷ base | p99 new ÷ nginx |",
           "|---|---|---|---|---|---|---|---|"]
    for n, size, series, gz, med, _ in rows:
        def cell(who: str) -> str:
            m = med[who]
            return f"{m['rps']:,.0f} ({m['p50']:.2f} / {m['p99']:.2f})"
        out.append(f"| {size / 1000:,.0f} KB, {series:,} series ({n} daemons) | {'gzip' if gz else 'plain'} "
                   f"| {cell('nginx')} | {cell('base')} | {cell('new')} "
                   f"| {med['new']['rps'] / med['nginx']['rps']:.2f} | {med['new']['rps'] / med['base']['rps']:.2f} "
                   f"| {med['new']['p99'] / med['nginx']['p99']:.2f} |")
    out.append("")
    out.append("Rounds (req/s / p99 ms, and wrk's socket errors where there were any):")
    for n, _, _, gz, _, runs in rows:
        for who, rs in runs.items():
            out.append(f"- {n} daemons {'gzip' if gz else 'plain'}, {who}: "
                       + ", ".join(f"{r['rps']:,.0f} / {r['p99']:.2f}" + (f" ({r['errors']} errors)" if r["errors"] else "")
                                   for r in rs))
    out.append("")
    out.append(f"wrk -t2 -c{args.connections} -d{args.seconds}s --latency, {args.rounds} rotating rounds, medians; "
               f"{os.cpu_count()} CPUs; load at the end {load()}")
    return "\n".join(out)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fl.BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.exit(130)
