#!/usr/bin/env python3
"""A thousand daemons from one agent: dockwatch against a replay fleet, side by side with baselines.

    benches/fleet_scale.py [--count N] [--window S] [--hung K] [--real N] [--markdown FILE]
                           [--binary PATH] [--smoke] ...   (--help lists all)

One run, four phases, one table:

 1. N replay endpoints (benches/replay.py: answers and timings captured from the
    test bed's dockerd A and Podman; every 10th answers as Podman) watched by one
    dockwatch at the shipped 15 s interval with 2 filter groups (7 calls a poll):
    over a quiet window, dockwatch's CPU (cores, /proc/PID/stat) and RSS, polls
    that finished within their interval (counted by the replay fleet, per
    endpoint), how bunched the poll starts are, the most calls in progress at
    once; a "Prometheus" scrape with gzip every interval meanwhile. Every
    endpoint's numbers in /metrics must equal what its capture says.
 2. K of the N endpoints hung (accepting, never answering), set at run time:
    polls on time of the other N-K, dockwatch's CPU and RSS, and one
    scraper's /metrics latency (wrk -c1) next to the same probe in phase 1;
    then the K are healthy again and must all come back up.
 3. /metrics: body size (plain and gzip), series, and the time a scrape takes
    after a change (encode, then compress) and for a cached body, measured
    while the fleet is frozen (SIGSTOP) so nothing changes between the scrapes;
    then wrk (throughput, p50/p99) against dockwatch and against nginx serving
    the same bytes (gzip_static for the gzip rounds), alternating rounds.
 4. R real dockerd (--bridge=none --iptables=false, own roots, a tiny imported
    image, a created and an exited container each), watched by a second
    dockwatch: all up, counts equal to the docker CLI's, RSS.

Nothing here fails on a missed target, only on a broken measurement (a count
that disagrees, wrk errors, a daemon that does not come up). --smoke runs every
phase at a tiny scale in a few seconds (the test command runs it); its figures
mean nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fleet as fl  # noqa: E402  (the /proc, metrics, wrk and docker helpers)
import replay as rp  # noqa: E402  (the fixtures and the filter emulation)

ROOT = HERE.parent
MIB = 1 << 20
FILTERS = [("cache", {"label": ["dwtest.group=cache"]}), ("ci", {"reference": ["ci/*"]})]


def log(msg: str) -> None:
    print(f"[fleet-scale] {msg}", file=sys.stderr, flush=True)


die = fl.die


def ctl(path: Path, req: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(120)
        s.connect(str(path))
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    out = json.loads(buf)
    if "error" in out:
        die(f"replay control: {out['error']}")
    return out


def scrape(url: str, gz: bool, timeout: float = 60) -> tuple[bytes, float, float, bool]:
    """One GET: the body (decompressed), time to the first byte and to the
    end (s), and whether it came compressed."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        first = time.monotonic() - t
        raw = r.read()
        total = time.monotonic() - t
        zipped = r.headers.get("Content-Encoding") == "gzip"
        if r.status != 200:
            die(f"{url} answered {r.status}")
    return (gzip.decompress(raw) if zipped else raw), first, total, zipped


def write_config(path: Path, port: int, daemons: list[tuple[str, str]], poll: dict) -> None:
    out = ["[server]", f'listen = "127.0.0.1:{port}"', "", "[poll]"]
    out += [f"{k} = {json.dumps(v)}" for k, v in poll.items()]
    for name, filters in FILTERS:
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in filters.items())
        out += ["", "[[image_filters]]", f'name = "{name}"', f"filters = {{ {inline} }}"]
    for name, host in daemons:
        out += ["", "[[daemons]]", f'name = "{name}"', f'host = "{host}"']
    path.write_text("\n".join(out) + "\n")


class Sampler:
    """VmRSS of a process every 0.5 s until stopped."""

    def __init__(self, pid: int):
        self.pid, self.samples, self.stop_ev = pid, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            try:
                self.samples.append(fl.status_kib(self.pid, "VmRSS"))
            except (OSError, fl.BenchError):
                return
            self.stop_ev.wait(0.5)

    def stop(self) -> list[int]:
        self.stop_ev.set()
        self.thread.join()
        return self.samples


def expected_numbers(engine: rp.Engine) -> dict:
    """What dockwatch must say of an endpoint answering as `engine`."""
    states: dict[str, int] = {}
    for c in engine.containers:
        states[c["State"]] = states.get(c["State"], 0) + 1
    return {
        "images": len(engine.images),
        "dangling": len(rp.filter_images(engine.images, json.dumps({"dangling": ["true"]}))),
        "filters": {n: len(rp.filter_images(engine.images, json.dumps(f))) for n, f in FILTERS},
        "containers": states,
    }


def check_numbers(samples, endpoints: list[dict], engines: dict, skip: set[str]) -> int:
    """Every healthy endpoint up, with its capture's numbers; returns how many."""
    want = {name: expected_numbers(e) for name, e in engines.items()}
    checked = 0
    by = {}
    for n, l, v in samples:
        if n in ("dockwatch_daemon_up", "dockwatch_images", "dockwatch_images_dangling",
                 "dockwatch_image_filter_matches", "dockwatch_containers"):
            by[(n, l.get("daemon"), l.get("filter") or l.get("state"))] = v
    for ep in endpoints:
        d = ep["name"]
        if d in skip:
            if by.get(("dockwatch_daemon_up", d, None)) != 0:
                die(f"{d} hangs, but dockwatch_daemon_up is {by.get(('dockwatch_daemon_up', d, None))}")
            continue
        w = want[ep["engine"]]
        got = {
            "up": by.get(("dockwatch_daemon_up", d, None)),
            "images": by.get(("dockwatch_images", d, None)),
            "dangling": by.get(("dockwatch_images_dangling", d, None)),
        }
        exp = {"up": 1, "images": w["images"], "dangling": w["dangling"]}
        for f, n in w["filters"].items():
            got[f"filter {f}"], exp[f"filter {f}"] = by.get(("dockwatch_image_filter_matches", d, f)), n
        for s, n in w["containers"].items():
            got[f"containers {s}"], exp[f"containers {s}"] = by.get(("dockwatch_containers", d, s)), n
        if got != exp:
            die(f"{d} ({ep['engine']}): dockwatch says {got}, its capture {exp}")
        checked += 1
    return checked


def start_nginx(work: Path, body: bytes) -> tuple[subprocess.Popen, int]:
    """fleet.py's nginx, with the gzip form beside the body (gzip_static)."""
    proc, port = fl.start_nginx(work, body)
    root = work / "nginx"
    (root / "www" / "metrics.gz").write_bytes(gzip.compress(body, compresslevel=1, mtime=0))
    os.chmod(root / "www" / "metrics.gz", 0o644)
    conf = (root / "nginx.conf").read_text().replace("sendfile on;", "sendfile on;\n  gzip_static on;")
    (root / "nginx.conf").write_text(conf)
    proc.send_signal(signal.SIGHUP)  # reread the config
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            got, _, _, zipped = scrape(f"http://127.0.0.1:{port}/metrics", True)
            if zipped and got == body:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    die("nginx did not serve the gzip form")
    return proc, port


def wrk(url: str, seconds: int, connections: int, gz: bool) -> dict:
    if not gz:
        return fl.wrk(url, seconds, connections)
    # fleet.wrk with the header: wrk takes -H before the URL
    orig = fl.run
    try:
        fl.run = lambda cmd, **kw: orig(cmd[:-1] + ["-H", "Accept-Encoding: gzip", cmd[-1]], **kw)
        return fl.wrk(url, seconds, connections)
    finally:
        fl.run = orig


# ------------------------------------------------------------------ real dockerd


class RealDaemons:
    """R dockerd of the bench's own, as tests/common OwnDaemon starts them."""

    def __init__(self, base: Path, count: int, cli: str):
        self.base, self.count, self.cli = base, count, cli
        self.procs: list[subprocess.Popen] = []
        self.dirs = [base / f"r{i:02d}" for i in range(count)]

    def host(self, d: Path) -> str:
        return f"unix://{d}/docker.sock"

    def start(self) -> None:
        for d in self.dirs:
            d.mkdir(parents=True)
            self.procs.append(subprocess.Popen(
                ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                 "--pidfile", str(d / "dockerd.pid"), "-H", self.host(d),
                 "--bridge=none", "--iptables=false", "--ip-masq=false"],
                stdout=subprocess.DEVNULL, stderr=open(d / "dockerd.log", "w"), start_new_session=True))
        deadline = time.monotonic() + 120
        for d, p in zip(self.dirs, self.procs):
            while True:
                try:
                    if rp.unix_get(str(d / "docker.sock"), "/_ping")[2] == b"OK":
                        break
                except OSError:
                    pass
                if p.poll() is not None or time.monotonic() > deadline:
                    die(f"dockerd in {d} did not answer /_ping; log {d / 'dockerd.log'}")
                time.sleep(0.2)

    def docker(self, d: Path) -> fl.Docker:
        (self.base / "cli").mkdir(exist_ok=True)
        return fl.Docker(self.cli, self.host(d), None, self.base / "cli")

    def seed(self, tar: Path) -> None:
        def one(d: Path) -> None:
            dk = self.docker(d)
            dk("import", str(tar), "fleet/tiny:1")
            dk("import", str(tar))  # untagged: dangling
            dk("create", "--network", "none", "--name", "made", "fleet/tiny:1", "/bin/busybox", "true")
            dk("run", "--network", "none", "--name", "ran", "fleet/tiny:1", "/bin/busybox", "true")

        with cf.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, self.dirs))

    def truth(self, d: Path) -> dict:
        dk = self.docker(d)
        states: dict[str, int] = {}
        for s in dk("ps", "-a", "--format", "{{.State}}").split():
            states[s] = states.get(s, 0) + 1
        return {"images": dk.count("images", "-q"),
                "dangling": dk.count("images", "-q", "--filter", "dangling=true"),
                "containers": states}

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for d in self.dirs:
            subprocess.run(["sh", "-c", f"grep -o ' {d}/[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                           check=False, capture_output=True)


def tiny_rootfs_tar(path: Path) -> None:
    import tarfile
    import io
    with tarfile.open(path, "w") as t:
        data = Path("/bin/busybox").read_bytes()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        t.addfile(ti, io.BytesIO(data))


# ------------------------------------------------------------------ the bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--count", type=int, default=1000, help="replay endpoints (default 1000)")
    ap.add_argument("--podman-every", type=int, default=10, help="every K-th answers as Podman (default 10)")
    ap.add_argument("--interval", default="15s", help="poll interval (default 15s, as shipped)")
    ap.add_argument("--timeout", default="5s", help="call timeout (default 5s, as shipped)")
    ap.add_argument("--max-calls", type=int, default=0, help="[poll].max_concurrent_calls (default: dockwatch's)")
    ap.add_argument("--window", type=int, default=180, help="seconds of the healthy window (default 180)")
    ap.add_argument("--hung-window", type=int, default=120, help="seconds of the hung window (default 120)")
    ap.add_argument("--hung", type=int, default=100, help="endpoints hung in phase 2 (default 100)")
    ap.add_argument("--real", type=int, default=20, help="real dockerd in phase 4 (default 20; 0 skips)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="each wrk run (default 10)")
    ap.add_argument("--wrk-rounds", type=int, default=3, help="alternating nginx/dockwatch rounds (default 3)")
    ap.add_argument("--only-polls", action="store_true",
                    help="phases 1 and 2 only (a binary without gzip, say): prints their figures")
    ap.add_argument("--binary", type=Path, help="dockwatch binary (default: cargo build --release)")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--smoke", action="store_true", help="tiny scale, short windows: keeps the script working")
    args = ap.parse_args()
    if args.smoke:
        args.count, args.interval, args.timeout = 50, "2s", "1s"
        args.window, args.hung_window, args.hung, args.real = 6, 6, 5, 2
        args.wrk_seconds, args.wrk_rounds, args.connections = 1, 1, 4
    if not 0 <= args.hung < args.count:
        die("--hung must be less than --count")
    for tool in ("wrk", "nginx", "dockerd"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            die(f"{tool} not found: tests/testbed.sh install installs what the bench needs")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dwfs.", dir="/tmp"))
    cleanups: list = []
    try:
        report = bench(args, work, cleanups)
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:  # cleanup goes on whatever one step did
                log(f"cleanup step failed: {e}")
        shutil.rmtree(work, ignore_errors=True)
    report += f"\nbench wall time: {time.monotonic() - started:.0f} s\n"
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 0


def seconds(text: str) -> float:
    units = {"ms": 1e-3, "s": 1, "m": 60}
    for u in ("ms", "s", "m"):
        if text.endswith(u) and text[: -len(u)].replace(".", "").isdigit():
            return float(text[: -len(u)]) * units[u]
    die(f"cannot read the duration {text!r}")
    return 0.0


def report_polls(args, healthy, hung_stats, probe_healthy, probe_hung, prom_healthy, prom_hung, dw) -> str:
    """Phases 1 and 2 alone, as lines of text."""
    out = [f"# phases 1 and 2 only: {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}"]
    for name, st, probe, prom in (("healthy", healthy, probe_healthy, prom_healthy),
                                  (f"{args.hung} hung, the others", hung_stats, probe_hung, prom_hung)):
        out.append(f"{name}: CPU {st['cpu']:.3f} cores (replay {st['replay_cpu']:.3f}), RSS max "
                   f"{st['rss_max'] / 1024:.1f} MiB median {st['rss_median'] / 1024:.1f}, polls on time "
                   f"{st['on_time_pct']:.2f}% ({st['on_time']} of {st['polls'] + st['missed']}), poll p50/p99/max "
                   f"{st['poll_p50']:.3f}/{st['poll_p99']:.3f}/{st['poll_max']:.3f} s, most starts in 100 ms "
                   f"{st['starts_most_in_100ms']}, most calls at once {st['peak']}, one scraper p50/p99 "
                   f"{probe['p50']:.2f}/{probe['p99']:.2f} ms, interval scrape median "
                   f"{statistics.median(prom['total']) * 1e3 if prom['total'] else float('nan'):.1f} ms")
    out.append(f"open fds {len(os.listdir(f'/proc/{dw.pid}/fd'))}")
    return "\n".join(out) + "\n"


def bench(args, work: Path, cleanups: list) -> str:
    interval = seconds(args.interval)
    # ---------------------------------------------------------- binary
    if args.binary:
        binary, profile = args.binary.resolve(), f"given: {args.binary}"
    else:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary, profile = ROOT / "target/release/dockwatch", "release"
    shutil.copy2(binary, work / "dockwatch")
    binary = work / "dockwatch"

    # ---------------------------------------------------------- the replay fleet
    fleet_dir = work / "fleet"
    replay_log = open(work / "replay.log", "w")
    replay = subprocess.Popen(
        [sys.executable, str(HERE / "replay.py"), "serve", "--count", str(args.count), "--dir", str(fleet_dir),
         "--podman-every", str(args.podman_every), "--check"] + (["--event-every", "0.5"] if args.smoke else []),
        stdout=subprocess.DEVNULL, stderr=replay_log, start_new_session=True)

    def stop_replay() -> None:
        replay.send_signal(signal.SIGCONT)
        replay.terminate()
        try:
            replay.wait(20)
        except subprocess.TimeoutExpired:
            replay.kill()
            replay.wait()

    cleanups.append(stop_replay)
    deadline = time.monotonic() + 120
    while not (fleet_dir / "endpoints.json").exists():
        if replay.poll() is not None or time.monotonic() > deadline:
            die(f"the replay fleet did not start; its log: {(work / 'replay.log').read_text()[-2000:]}")
        time.sleep(0.2)
    endpoints = json.loads((fleet_dir / "endpoints.json").read_text())
    control = fleet_dir / "control.sock"
    engines = {"dockerd": rp.Engine(rp.FIXTURES / "dockerd-20.10.json"),
               "podman": rp.Engine(rp.FIXTURES / "podman-4.3.json")}
    log(f"{len(endpoints)} replay endpoints up ({sum(e['engine'] == 'podman' for e in endpoints)} as Podman)")

    # ---------------------------------------------------------- dockwatch
    cfg = work / "fleet.toml"
    poll = {"interval": args.interval, "timeout": args.timeout}
    if args.max_calls:
        poll["max_concurrent_calls"] = args.max_calls
    write_config(cfg, fl.free_port(), [(e["name"], e["host"]) for e in endpoints], poll)
    dw = fl.Dockwatch(binary, cfg, work / "dockwatch.log")
    cleanups.append(dw.stop)
    t_start = time.monotonic()
    dw.wait_ready(timeout=max(120, 4 * interval))
    ready_after = time.monotonic() - t_start
    log(f"dockwatch ready after {ready_after:.1f} s (every daemon polled once); settling one interval")
    time.sleep(interval + 1)

    # ---------------------------------------------------------- 1. healthy window
    prom = {"ttfb": [], "total": []}  # the "Prometheus" scrapes, gzip

    def prometheus(stop: threading.Event) -> None:
        while not stop.wait(interval):
            _, first, total, _ = scrape(dw.url + "/metrics", True)
            prom["ttfb"].append(first)
            prom["total"].append(total)

    def window(seconds_: float, names=None) -> dict:
        stop = threading.Event()
        th = threading.Thread(target=prometheus, args=(stop,), daemon=True)
        sampler = Sampler(dw.pid)
        ctl(control, {"cmd": "peak"})
        c0, r0, t0 = fl.cpu_seconds(dw.pid), fl.cpu_seconds(replay.pid), time.monotonic()
        th.start()
        time.sleep(seconds_)
        c1, r1, t1 = fl.cpu_seconds(dw.pid), fl.cpu_seconds(replay.pid), time.monotonic()
        stop.set()
        th.join()
        rss = sampler.stop()
        stats = ctl(control, {"cmd": "stats", "t0": t0, "t1": t1, "interval": interval, "names": names})
        stats.update(cpu=(c1 - c0) / (t1 - t0), replay_cpu=(r1 - r0) / (t1 - t0), rss_max=max(rss),
                     rss_median=statistics.median(rss), peak=ctl(control, {"cmd": "peak"})["peak"],
                     seconds=t1 - t0)
        return stats

    log(f"phase 1: {args.count} healthy endpoints, {args.window} s window")
    prom["ttfb"].clear()
    healthy = window(args.window)
    prom_healthy = dict(prom)
    prom = {"ttfb": [], "total": []}
    log(f"phase 1: CPU {healthy['cpu']:.3f} cores, RSS max {healthy['rss_max'] / 1024:.1f} MiB, polls on time "
        f"{healthy['on_time_pct']:.2f}% ({healthy['on_time']} of {healthy['polls'] + healthy['missed']}), "
        f"poll p50/p99 {healthy['poll_p50']:.3f}/{healthy['poll_p99']:.3f} s, most starts in 100 ms "
        f"{healthy['starts_most_in_100ms']}, most calls at once {healthy['peak']}")
    samples = dw.metrics()
    checked = check_numbers(samples, endpoints, engines, set())
    log(f"every endpoint's numbers equal its capture ({checked} endpoints)")
    if args.smoke:
        ctl(control, {"cmd": "events", "every": 0})
        time.sleep(1)
        sent = ctl(control, {"cmd": "sent"})
        samples = dw.metrics()
        for ep in endpoints:
            got = fl.metric_sum(samples, "dockwatch_events_total", daemon=ep["name"])
            if got != sent[ep["name"]]:
                die(f"{ep['name']}: the fleet sent {sent[ep['name']]} events, dockwatch counted {got:.0f}")
        log(f"every event sent was counted ({sum(sent.values())})")
    # one scraper's latency, healthy (compared with phase 2)
    probe_seconds = max(args.wrk_seconds, 2)
    probe_healthy = wrk(dw.url + "/metrics", probe_seconds, 1, True)

    # ---------------------------------------------------------- 2. some hung
    order = rp.spread_order(args.count)
    hung = sorted(endpoints[i]["name"] for i in order[: args.hung])
    rest = [e["name"] for e in endpoints if e["name"] not in set(hung)]
    ctl(control, {"cmd": "set", "names": hung, "mode": "hang"})
    log(f"phase 2: {len(hung)} endpoints hung; settling {interval + seconds(args.timeout) + 2:.0f} s")
    time.sleep(interval + seconds(args.timeout) + 2)
    hung_stats = window(args.hung_window, rest)
    prom_hung = dict(prom)
    probe_hung = wrk(dw.url + "/metrics", probe_seconds, 1, True)
    samples = dw.metrics()
    check_numbers(samples, endpoints, engines, set(hung))
    # back to health before the /metrics figures: every endpoint up again
    ctl(control, {"cmd": "set", "names": hung, "mode": "ok"})
    time.sleep(interval + seconds(args.timeout) + 2)
    check_numbers(dw.metrics(), endpoints, engines, set())
    log(f"phase 2: the other {len(rest)}: polls on time {hung_stats['on_time_pct']:.2f}% "
        f"({hung_stats['on_time']} of {hung_stats['polls'] + hung_stats['missed']}), CPU {hung_stats['cpu']:.3f} "
        f"cores, RSS max {hung_stats['rss_max'] / 1024:.1f} MiB; one scraper p50/p99 "
        f"{probe_hung['p50']:.2f}/{probe_hung['p99']:.2f} ms (healthy: {probe_healthy['p50']:.2f}/"
        f"{probe_healthy['p99']:.2f} ms)")
    # ---------------------------------------------------------- 3. /metrics
    if args.only_polls:
        return report_polls(args, healthy, hung_stats, probe_healthy, probe_hung, prom_healthy, prom_hung, dw)
    body, _, _, _ = scrape(dw.url + "/metrics", False)
    series = sum(1 for l in body.decode().splitlines() if l and not l.startswith("#"))
    # Frozen fleet: no call ends, so nothing changes for a few seconds (the
    # timeouts of the calls in progress come only after the call timeout).
    os.kill(replay.pid, signal.SIGSTOP)
    timing = {"encode": [], "cached": [], "compress": [], "cached_gz": []}
    try:
        time.sleep(0.3)
        for _ in range(3):
            time.sleep(1.05)  # past the process figures' 1 s: the next scrape encodes
            _, first, _, _ = scrape(dw.url + "/metrics", False)
            timing["encode"].append(first)
            _, first, _, _ = scrape(dw.url + "/metrics", False)
            timing["cached"].append(first)
            _, first, _, zipped = scrape(dw.url + "/metrics", True)
            timing["compress"].append(first)
            if not zipped:
                die("dockwatch did not gzip /metrics for a scraper that asked")
            _, first, _, _ = scrape(dw.url + "/metrics", True)
            timing["cached_gz"].append(first)
    finally:
        os.kill(replay.pid, signal.SIGCONT)
    gz_size = len(gzip.compress(body, compresslevel=1, mtime=0))
    timing = {k: statistics.median(v) for k, v in timing.items()}
    log(f"/metrics: {len(body):,} bytes ({gz_size:,} gzip), {series:,} series; first byte after a change "
        f"{timing['encode'] * 1e3:.1f} ms, cached {timing['cached'] * 1e3:.2f} ms, gzip of it "
        f"{timing['compress'] * 1e3:.1f} ms, cached gzip {timing['cached_gz'] * 1e3:.2f} ms")
    nginx, nginx_port = start_nginx(work, body)
    cleanups.append(lambda: (nginx.terminate(), nginx.wait(10)))
    urls = {"nginx": f"http://127.0.0.1:{nginx_port}/metrics", "dockwatch": dw.url + "/metrics"}
    web = {}
    for gz in (True, False):
        runs = {"nginx": [], "dockwatch": []}
        for r in range(args.wrk_rounds):
            order = ("nginx", "dockwatch") if r % 2 == 0 else ("dockwatch", "nginx")
            for who in order:
                res = wrk(urls[who], args.wrk_seconds, args.connections, gz)
                runs[who].append(res)
                log(f"wrk {'gzip' if gz else 'plain'} round {r + 1} {who}: {res['rps']:.0f} req/s, "
                    f"p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms")
        web[gz] = {who: {k: statistics.median([x[k] for x in rs]) for k in ("rps", "p50", "p99")}
                   for who, rs in runs.items()}
    nginx.terminate()
    nginx.wait(10)

    fds = len(os.listdir(f"/proc/{dw.pid}/fd"))
    rss_after_wrk = fl.status_kib(dw.pid, "VmRSS")
    threads = fl.status_kib(dw.pid, "Threads")
    dw.stop()
    stop_replay()

    # ---------------------------------------------------------- 4. real dockerd
    real = None
    if args.real:
        log(f"phase 4: {args.real} real dockerd")
        base = Path(tempfile.mkdtemp(prefix="dwr.", dir="/tmp"))  # short: socket paths
        daemons = RealDaemons(base, args.real, shutil.which("docker") or "/usr/bin/docker")
        cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
        cleanups.append(daemons.stop)
        t0 = time.monotonic()
        daemons.start()
        tar = base / "tiny.tar"
        tiny_rootfs_tar(tar)
        daemons.seed(tar)
        log(f"{args.real} dockerd up and seeded in {time.monotonic() - t0:.0f} s")
        cfg = work / "real.toml"
        write_config(cfg, fl.free_port(), [(d.name, daemons.host(d)) for d in daemons.dirs], poll)
        dw2 = fl.Dockwatch(binary, cfg, work / "real.log")
        cleanups.append(dw2.stop)
        dw2.wait_ready(timeout=max(120, 4 * interval))
        sampler = Sampler(dw2.pid)
        time.sleep(2 * interval + 1)
        s = dw2.metrics()
        rss = sampler.stop()
        up = 0
        for d in daemons.dirs:
            truth = daemons.truth(d)
            got = {"images": fl.metric_sum(s, "dockwatch_images", daemon=d.name),
                   "dangling": fl.metric_sum(s, "dockwatch_images_dangling", daemon=d.name),
                   "containers": {st: int(fl.metric_sum(s, "dockwatch_containers", daemon=d.name, state=st))
                                  for st in truth["containers"]}}
            if fl.metric_sum(s, "dockwatch_daemon_up", daemon=d.name) != 1:
                die(f"real daemon {d.name} is not up in dockwatch")
            if got != truth:
                die(f"real daemon {d.name}: dockwatch says {got}, the docker CLI {truth}")
            up += 1
        real = {"count": args.real, "up": up, "rss_max": max(rss), "rss": fl.status_kib(dw2.pid, "VmRSS"),
                "truth": daemons.truth(daemons.dirs[0])}
        log(f"phase 4: {up} of {args.real} up, counts equal the docker CLI's {real['truth']}, RSS max "
            f"{real['rss_max'] / 1024:.1f} MiB")
        dw2.stop()
        daemons.stop()

    # ---------------------------------------------------------- report
    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def ms(x: float) -> str:
        return f"{x * 1e3:.1f}"

    n, k = args.count, len(hung)
    ph = statistics.median(prom_healthy["total"]) if prom_healthy["total"] else float("nan")
    phg = statistics.median(prom_hung["total"]) if prom_hung["total"] else float("nan")
    rows = [
        (f"1. dockwatch CPU, {n} endpoints (cores)", f"{healthy['cpu']:.3f}",
         f"the replay fleet itself {healthy['replay_cpu']:.3f}", "", "< 0.5", yes(healthy["cpu"] < 0.5)),
        ("   RSS, max over the window (MiB)", f"{healthy['rss_max'] / 1024:.1f}",
         f"median {healthy['rss_median'] / 1024:.1f}", "", "< 150", yes(healthy["rss_max"] / 1024 < 150)),
        ("   polls finished within their interval (%)", f"{healthy['on_time_pct']:.2f}",
         f"{healthy['on_time']} of {healthy['polls'] + healthy['missed']}", "", "≥ 99",
         yes(healthy["on_time_pct"] >= 99)),
        ("   poll duration p50 / p99 (s)", f"{healthy['poll_p50']:.3f} / {healthy['poll_p99']:.3f}",
         f"max {healthy['poll_max']:.3f}", "", "", ""),
        ("   poll starts in the busiest 100 ms / calls in progress at most", f"{healthy['starts_most_in_100ms']} / "
         f"{healthy['peak']}", f"even spread: {max(1, round(n * 0.1 / interval))} / -", "", "", ""),
        (f"2. {k} of {n} hung: polls of the other {n - k} on time (%)", f"{hung_stats['on_time_pct']:.2f}",
         f"all healthy: {healthy['on_time_pct']:.2f}", "", "≥ 99", yes(hung_stats["on_time_pct"] >= 99)),
        ("   their poll duration p50 / p99 (s)", f"{hung_stats['poll_p50']:.3f} / {hung_stats['poll_p99']:.3f}",
         f"all healthy: {healthy['poll_p50']:.3f} / {healthy['poll_p99']:.3f}", "", "", ""),
        ("   one scraper, gzip, p50 / p99 (ms)", f"{probe_hung['p50']:.2f} / {probe_hung['p99']:.2f}",
         f"all healthy: {probe_healthy['p50']:.2f} / {probe_healthy['p99']:.2f}",
         f"{probe_hung['p99'] / probe_healthy['p99']:.2f}", "no move beyond noise", ""),
        ("   the interval's scrape, gzip, median (ms)", ms(phg), f"all healthy: {ms(ph)}", "", "", ""),
        ("   CPU (cores) / RSS max (MiB)", f"{hung_stats['cpu']:.3f} / {hung_stats['rss_max'] / 1024:.1f}",
         f"all healthy: {healthy['cpu']:.3f} / {healthy['rss_max'] / 1024:.1f}", "", "", ""),
    ]
    rows += [
        ("3. /metrics body, plain / gzip (bytes)", f"{len(body):,} / {gz_size:,}", f"{series:,} series", "", "", ""),
        ("   first byte after a change: encode / gzip of it (ms)", f"{ms(timing['encode'])} / {ms(timing['compress'])}",
         f"cached: {timing['cached'] * 1e3:.2f} / {timing['cached_gz'] * 1e3:.2f}", "", "", ""),
    ]
    for gz in (True, False):
        w = web[gz]
        label = "gzip" if gz else "plain"
        rows.append((f"   /metrics {label}, wrk -c{args.connections} (req/s)", f"{w['dockwatch']['rps']:,.1f}",
                     f"nginx {w['nginx']['rps']:,.1f}", f"{w['dockwatch']['rps'] / w['nginx']['rps']:.2f}", "", ""))
        rows.append((f"   /metrics {label}, p50 / p99 (ms)", f"{w['dockwatch']['p50']:.1f} / {w['dockwatch']['p99']:.1f}",
                     f"nginx {w['nginx']['p50']:.1f} / {w['nginx']['p99']:.1f}",
                     f"{w['dockwatch']['p99'] / w['nginx']['p99']:.2f}", "", ""))
    rows.append(("   RSS after the wrk rounds (MiB)", f"{rss_after_wrk / 1024:.1f}",
                 f"before them: {healthy['rss_max'] / 1024:.1f}", "", "", ""))
    if real:
        rows.append((f"4. {real['count']} real dockerd: up, counts = docker CLI", f"{real['up']} of {real['count']}",
                     f"each {real['truth']}", "", "all", yes(real["up"] == real["count"])))
        rows.append(("   RSS of their agent, max (MiB)", f"{real['rss_max'] / 1024:.1f}", "", "", "< 50",
                     yes(real["rss_max"] / 1024 < 50)))
    head = ("figure", "dockwatch", "baseline (same run)", "ratio", "target", "met")
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "unknown")
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / MIB
    rev = fl.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "unknown"
    dirty = fl.run(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                   check=False).stdout.strip()
    lines = [
        "# dockwatch: a thousand daemons from one agent" + (" (SMOKE: tiny scale, figures mean nothing)"
                                                           if args.smoke else ""),
        "",
        f"machine: {os.cpu_count()} CPUs ({model}), {mem_gib:.0f} GiB, Linux {platform.release()}, load "
        f"{os.getloadavg()[0]:.1f} at the end",
        f"software: dockwatch git {rev}{'+dirty' if dirty else ''} ({profile}); "
        f"{fl.run(['nginx', '-v'], check=False).stderr.strip().replace('nginx version: ', '')}",
        f"command: {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}",
        f"fleet: {n} replay endpoints on unix sockets ({sum(e['engine'] == 'podman' for e in endpoints)} as Podman), "
        f"poll interval {args.interval}, timeout {args.timeout}, {len(FILTERS)} filter groups (7 calls a poll), "
        f"max_concurrent_calls {args.max_calls or 'default'}; ready (every daemon polled once) after "
        f"{ready_after:.1f} s",
        f"windows: healthy {healthy['seconds']:.0f} s ({healthy['calls']} calls), hung {hung_stats['seconds']:.0f} s; "
        f"a gzip scrape every interval during both; open fds {fds}, threads {threads}",
        "",
        *table,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fl.BenchError as e:
        print(f"[fleet-scale] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
