#!/usr/bin/env python3
"""What dockwatch costs at fleet-host scale, measured side by side with a baseline.

    benches/fleet.py [--images N] [--dangling N] [--containers N] [--filters N]
                     [--prepull N] [--markdown FILE] [--smoke] ...   (--help lists all)

Sets the test bed up at the scale given (default: 2,000 images on daemon A, 400
of them dangling, all with distinct ids; 200 containers in mixed states; 5 image
filter groups; 20 pre-pull images in the local registry), then measures and
prints one table:

 1. /metrics throughput and p50/p99 latency under wrk (100 connections, loopback)
    next to Debian's nginx serving the same body as a static file, same client;
 2. dockwatch CPU per poll next to the CPU dockerd spends answering it (both from
    /proc/PID/stat; dockerd's idle rate, measured first, is subtracted), and the
    Docker API calls per poll at two scales (daemon A at the bench scale, daemon
    B with the test bed's few images);
 3. dockwatch's resident memory, idle and during the pre-pulls (4 at a time);
 4. a cold pull of a 256 MiB, 8-layer image through dockwatch next to `docker
    pull` (benches/pull_vs_docker.sh: alternating runs, ratio of medians);
 5. the micro-benchmarks (`cargo bench --bench micro`).

Test bed: the env file in $DW_TESTBED (or --bed FILE) if set, else one of its
own (tests/testbed.sh up), torn down at the end. Everything the bench adds to a
bed it did not make (images and containers labelled dwbench=1) is removed at the
end. Targets are printed beside the figures; nothing here fails on a missed
target, only on a broken measurement (a count that disagrees with the docker
CLI, a failed pull, wrk errors).

--smoke runs every step at a tiny scale with short windows (the test command
runs it to keep this script working); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL = "dwbench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[fleet] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    raise BenchError(msg)


def run(cmd: list[str], *, check: bool = True, quiet: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        die(f"{' '.join(cmd[:6])}... exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ------------------------------------------------------------------ /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, live and ended)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    die(f"no {key} in /proc/{pid}/status")
    return 0


# ------------------------------------------------------------------ metrics text

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(samples, name: str, **want: str) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in want.items()))


# ------------------------------------------------------------------ docker


class Docker:
    def __init__(self, cli: str, host: str, tls: tuple[str, str, str] | None, config_dir: Path):
        self.base = [cli, "-H", host]
        if tls:
            self.base += ["--tlsverify", "--tlscacert", tls[0], "--tlscert", tls[1], "--tlskey", tls[2]]
        self.env = dict(os.environ, DOCKER_CONFIG=str(config_dir), DOCKER_CLI_HINTS="false")
        for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            self.env.pop(k, None)

    def __call__(self, *args: str, check: bool = True) -> str:
        return run(self.base + list(args), check=check, env=self.env).stdout

    def count(self, *args: str) -> int:
        return len([l for l in self(*args).splitlines() if l.strip()])


# ------------------------------------------------------------------ seeding


def tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    tar.addfile(ti, io.BytesIO(data))


def busybox_layer() -> bytes:
    """One layer shared by every bench image: busybox, so containers can run."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for d in ("bin", "etc", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            t.addfile(ti)
        tar_member(t, "bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        ti = tarfile.TarInfo("bin/sh")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        t.addfile(ti)
    return b.getvalue()


def image_archive(path: Path, images: int, dangling: int) -> None:
    """A `docker save` archive of `images` images with distinct ids (distinct
    configs over one layer); the first `dangling` carry no tag, so `docker
    load` leaves them dangling. Loading it takes one call instead of one
    `docker import` per image."""
    layer = busybox_layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest = []
    with tarfile.open(path, "w") as out:
        tar_member(out, "layer/layer.tar", layer)
        for i in range(images):
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "config": {
                    "Cmd": ["/bin/busybox", "sleep", "86400"],
                    "Labels": {LABEL: "1", f"{LABEL}.tier": "abcd"[i % 4], f"{LABEL}.n": str(i)},
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
            raw = json.dumps(config).encode()
            name = hashlib.sha256(raw).hexdigest() + ".json"
            tar_member(out, name, raw)
            tags = [] if i < dangling else [f"{LABEL}/img-{i:04d}:1"]
            manifest.append({"Config": name, "RepoTags": tags, "Layers": ["layer/layer.tar"]})
        tar_member(out, "manifest.json", json.dumps(manifest).encode())


def push_image(registry: str, repo: str, tag: str, layer_bytes: list[int]) -> None:
    """Pushes an image of random layers straight through the registry API."""
    base = f"http://{registry}/v2/{repo}"

    def put(url: str, data: bytes, content_type: str, what: str) -> None:
        req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=120) as r:
            if r.status != 201:
                die(f"registry answered {r.status} to {what}")

    def upload(blob: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        req = urllib.request.Request(f"{base}/blobs/uploads/", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = f"http://{registry}{loc}"
        sep = "&" if "?" in loc else "?"
        put(f"{loc}{sep}digest={digest}", blob, "application/octet-stream", "a blob upload")
        return digest

    layers, diff_ids = [], []
    for i, size in enumerate(layer_bytes):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w") as t:
            tar_member(t, f"data-{i}.bin", os.urandom(size))
        raw = b.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=1, mtime=0)
        layers.append({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": len(gz),
            "digest": upload(gz),
        })
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {LABEL: "1"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": upload(config),
        },
        "layers": layers,
    }).encode()
    put(f"{base}/manifests/{tag}", manifest, "application/vnd.docker.distribution.manifest.v2+json",
        f"the manifest of {repo}:{tag}")


def container_plan(n: int) -> dict[str, int]:
    """Mixed states: 30% running, 40% exited, 20% created, the rest paused."""
    running, exited, created = n * 3 // 10, n * 4 // 10, n * 2 // 10
    return {"running": running, "exited": exited, "created": created, "paused": n - running - exited - created}


def seed_containers(dk: Docker, n: int, tagged: list[str]) -> dict[str, int]:
    plan = container_plan(n)
    jobs = []
    k = 0
    for state, count in plan.items():
        for _ in range(count):
            jobs.append((state, f"{LABEL}-{state}-{k:04d}", tagged[k % len(tagged)], k))
            k += 1

    def make(job) -> None:
        state, name, image, k = job
        common = ["--network", "none", "--label", f"{LABEL}=1", "--name", name]
        if state == "created":
            dk("create", *common, image)
        elif state == "exited":
            dk("run", "-d", *common, image, "/bin/busybox", "sh", "-c", f"exit {k % 3}")
        else:
            dk("run", "-d", *common, image)
            if state == "paused":
                dk("pause", name)

    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(make, jobs))
    deadline = time.monotonic() + 60
    while dk.count("ps", "-aq", "--filter", f"label={LABEL}=1", "--filter", "status=exited") < plan["exited"]:
        if time.monotonic() > deadline:
            die("the bench's short-lived containers did not all exit within 60 s")
        time.sleep(0.2)
    return plan


def remove_bench_content(dk: Docker) -> None:
    ids = dk("ps", "-aq", "--filter", f"label={LABEL}=1").split()
    for i in range(0, len(ids), 100):
        dk("rm", "-f", *ids[i : i + 100], check=False)
    dk("image", "prune", "-a", "-f", "--filter", f"label={LABEL}=1", check=False)


# ------------------------------------------------------------------ processes


class Dockwatch:
    def __init__(self, binary: Path, config: Path, log_path: Path):
        self.port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text()).group(1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKWATCH_")}
        env.pop("DOCKER_HOST", None)
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [str(binary), "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), env=env, start_new_session=True,
        )
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.port}"

    def metrics(self):
        status, body = http_get(self.url + "/metrics")
        if status != 200:
            die(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"dockwatch exited {self.proc.returncode}; its log: {self.log_path}")
            try:
                if http_get(self.url + "/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        die(f"dockwatch not ready within {timeout} s; its log: {self.log_path}")

    def polls(self, daemon: str) -> float:
        return metric_sum(self.metrics(), "dockwatch_api_request_duration_seconds_count", daemon=daemon, endpoint="version")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


POLL_ENDPOINTS = ("version", "info", "image_list", "container_list")


def api_calls(samples, daemon: str) -> float:
    return sum(
        metric_sum(samples, "dockwatch_api_request_duration_seconds_count", daemon=daemon, endpoint=e)
        for e in POLL_ENDPOINTS
    )


def toml_str(s: str) -> str:
    return json.dumps(s)  # a TOML basic string for anything we write here


def filter_groups(n: int, registry: str) -> list[tuple[str, dict[str, list[str]]]]:
    groups = [
        ("dangling", {"dangling": ["true"]}),
        ("tier-a", {"label": [f"{LABEL}.tier=a"]}),
        ("bench-refs", {"reference": [f"{LABEL}/*"]}),
        ("tier-b-tagged", {"label": [f"{LABEL}.tier=b"], "dangling": ["false"]}),
        ("prepulled", {"reference": [f"{registry}/{LABEL}/pre-*"]}),
        ("tier-c", {"label": [f"{LABEL}.tier=c"]}),
        ("tier-d", {"label": [f"{LABEL}.tier=d"]}),
        ("labelled", {"label": [LABEL]}),
    ]
    if not 0 <= n <= len(groups):
        die(f"--filters takes 0 to {len(groups)}")
    return groups[:n]


def write_config(path: Path, port: int, daemons: list[tuple[str, str, tuple | None]], groups, poll: dict,
                 prepull: list[str], concurrency: int) -> None:
    out = ["[server]", f'listen = "127.0.0.1:{port}"', "", "[poll]"]
    out += [f"{k} = {toml_str(v)}" for k, v in poll.items()]
    for name, host, tls in daemons:
        out += ["", "[[daemons]]", f"name = {toml_str(name)}", f"host = {toml_str(host)}"]
        if tls:
            out += ["[daemons.tls]", f"ca = {toml_str(tls[0])}", f"cert = {toml_str(tls[1])}", f"key = {toml_str(tls[2])}"]
    for name, filters in groups:
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in filters.items())
        out += ["", "[[image_filters]]", f"name = {toml_str(name)}", f"filters = {{ {inline} }}"]
    if prepull:
        out += ["", "[prepull]", 'interval = "1h"', 'timeout = "10m"', 'jitter = "0s"', f"concurrency = {concurrency}"]
        for image in prepull:
            out += ["", "[[prepull.images]]", f"image = {toml_str(image)}", 'daemons = ["a"]']
    path.write_text("\n".join(out) + "\n")


# ------------------------------------------------------------------ wrk / nginx

WRK_LAT = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, seconds: int, connections: int) -> dict:
    threads = min(2, connections)
    p = run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url])
    text = p.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        die(f"no Requests/sec in wrk's output:\n{text}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {q: float(v) * scale[u] for q, v, u in WRK_LAT.findall(text)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    if errors:
        die(f"wrk against {url} saw {errors} errors:\n{text}")
    return {"rps": float(m.group(1)), "p50": lat["50"], "p99": lat["99"]}


def start_nginx(work: Path, body: bytes) -> tuple[subprocess.Popen, int]:
    root = work / "nginx"
    (root / "www").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "www" / "metrics").write_bytes(body)
    os.chmod(work, 0o755)  # nginx's workers run as nobody/www-data
    for d in (root, root / "www"):
        os.chmod(d, 0o755)
    os.chmod(root / "www" / "metrics", 0o644)
    port = free_port()
    tmp = root / "tmp"
    (root / "nginx.conf").write_text(f"""
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  types {{ }}
  default_type "text/plain; version=0.0.4; charset=utf-8";
  server {{ listen 127.0.0.1:{port}; root {root}/www; }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        die("nginx not found: install Debian's package (tests/testbed.sh install does)")
    proc = subprocess.Popen([nginx, "-c", str(root / "nginx.conf")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "stderr.log", "w"), start_new_session=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            status, got = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if status == 200 and got == body:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            die(f"nginx did not serve the body; see {root}/error.log and {root}/stderr.log")
        time.sleep(0.1)


# ------------------------------------------------------------------ the bench


def median(xs):
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="images on daemon A (default 2000)")
    ap.add_argument("--dangling", type=int, default=400, help="of them dangling (default 400)")
    ap.add_argument("--containers", type=int, default=200, help="containers on A, mixed states (default 200)")
    ap.add_argument("--filters", type=int, default=5, help="image filter groups (default 5, at most 8)")
    ap.add_argument("--prepull", type=int, default=20, help="pre-pull images (default 20)")
    ap.add_argument("--prepull-mib", type=int, default=16, help="size of each, in 2 layers (default 16)")
    ap.add_argument("--concurrency", type=int, default=4, help="pre-pulls at once (default 4)")
    ap.add_argument("--connections", type=int, default=100, help="wrk connections (default 100)")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="each wrk run (default 10)")
    ap.add_argument("--wrk-rounds", type=int, default=3, help="alternating nginx/dockwatch rounds (default 3)")
    ap.add_argument("--poll-window", type=int, default=60, help="seconds of polls to time (default 60)")
    ap.add_argument("--poll-interval", default="3s", help="poll interval while timing polls (default 3s)")
    ap.add_argument("--interval", default="15s",
                    help="poll interval of the instance under load and measured for memory (default 15s, as shipped)")
    ap.add_argument("--cost-window", type=int, default=180,
                    help="seconds of dockerd CPU per mode of image listing (default 180)")
    ap.add_argument("--pull-runs", type=int, default=7, help="cold pulls per tool (default 7; 0 skips)")
    ap.add_argument("--pull-image", default="", help="image for the cold pull (default: 256 MiB built by pull_vs_docker.sh)")
    ap.add_argument("--no-micro", action="store_true", help="skip cargo bench --bench micro")
    ap.add_argument("--binary", type=Path, help="dockwatch binary (default: cargo build --release)")
    ap.add_argument("--bed", type=Path, help="test bed env file (default $DW_TESTBED, else a bed of its own)")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--smoke", action="store_true", help="tiny scale, short windows: keeps the script working")
    args = ap.parse_args()
    if args.smoke:
        args.images, args.dangling, args.containers = 40, 10, 10
        args.prepull, args.prepull_mib = 4, 2
        args.wrk_seconds, args.wrk_rounds, args.connections = 2, 1, 20
        args.poll_window, args.poll_interval, args.interval = 4, "1s", "2s"
        args.cost_window = 3
        args.pull_runs, args.pull_image, args.no_micro = 1, args.pull_image or "big", True
    if not 0 <= args.dangling < args.images:
        die("--dangling must be less than --images (containers need tagged images)")
    for tool in ("wrk", "python3"):
        if not shutil.which(tool):
            die(f"{tool} not found: tests/testbed.sh install installs what the bench needs")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dw-fleet."))
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


def bench(args, work: Path, cleanups: list) -> str:
    # ---------------------------------------------------------- bed
    bed = args.bed or (Path(os.environ["DW_TESTBED"]) if os.environ.get("DW_TESTBED") else None)
    if bed is None:
        own = work / "bed"
        log(f"bringing up a test bed of its own in {own}")
        cleanups.append(lambda: run([str(ROOT / "tests/testbed.sh"), "down", str(own)], check=False))
        subprocess.run([str(ROOT / "tests/testbed.sh"), "up", str(own)], check=True, stdout=sys.stderr)
        bed = own / "env"
    env = dict(l.split("=", 1) for l in bed.read_text().splitlines() if "=" in l)
    for key in ("DOCKER_A", "DOCKER_B", "TLS_CA", "TLS_CERT", "TLS_KEY", "REGISTRY", "DOCKER_CLI", "DOCKERD_A_PID"):
        if not env.get(key):
            die(f"no {key} in the test bed env file {bed}")
    tls = (env["TLS_CA"], env["TLS_CERT"], env["TLS_KEY"])
    (work / "cli").mkdir()
    a = Docker(env["DOCKER_CLI"], env["DOCKER_A"], None, work / "cli")
    b = Docker(env["DOCKER_CLI"], env["DOCKER_B"], tls, work / "cli")
    dockerd_a = int(env["DOCKERD_A_PID"])
    cpu_seconds(dockerd_a)  # it must be there

    # ---------------------------------------------------------- binary
    if args.binary:
        binary = args.binary.resolve()
        profile = "given: " + str(args.binary)
    else:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = ROOT / "target/release/dockwatch"
        profile = "release"
    private = work / "dockwatch"  # a rebuild of target/ must not change it mid-bench
    shutil.copy2(binary, private)
    binary = private

    # ---------------------------------------------------------- scale
    remove_bench_content(a)
    cleanups.append(lambda: remove_bench_content(a))
    t0 = time.monotonic()
    archive = work / "images.tar"
    image_archive(archive, args.images, args.dangling)
    a("load", "-q", "-i", str(archive))
    archive.unlink()
    tagged = [f"{LABEL}/img-{i:04d}:1" for i in range(args.dangling, args.images)]
    plan = seed_containers(a, args.containers, tagged)
    log(f"A: loaded {args.images} images ({args.dangling} dangling) and made {args.containers} containers "
        f"{plan} in {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    registry = env["REGISTRY"]
    prepull = [f"{registry}/{LABEL}/pre-{i:02d}:1" for i in range(1, args.prepull + 1)]
    half = args.prepull_mib * MIB // 2
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: push_image(registry, f"{LABEL}/pre-{i:02d}", "1", [half, half]),
                      range(1, args.prepull + 1)))
    log(f"registry: pushed {args.prepull} images of {args.prepull_mib} MiB in {time.monotonic() - t0:.0f} s")
    groups = filter_groups(args.filters, registry)

    truth = {
        "a_images": a.count("images", "-q"),
        "a_dangling": a.count("images", "-q", "--filter", "dangling=true"),
        "a_containers": a.count("ps", "-aq"),
        "b_images": b.count("images", "-q"),
        "b_containers": b.count("ps", "-aq"),
    }
    log(f"ground truth (docker CLI): {truth}")

    # ---------------------------------------------------------- 2. cost of a poll
    window = args.poll_window
    log(f"dockerd A idle CPU over {window} s")
    c0, t_0 = cpu_seconds(dockerd_a), time.monotonic()
    time.sleep(window)
    idle_rate = (cpu_seconds(dockerd_a) - c0) / (time.monotonic() - t_0)

    cfg = work / "poll.toml"
    interval = args.poll_interval
    write_config(cfg, free_port(), [("a", env["DOCKER_A"], None)], groups,
                 {"interval": interval, "timeout": "2s" if interval != "1s" else "900ms", "disk_interval": "0",
                  "images_interval": interval}, [], 1)
    dw = Dockwatch(binary, cfg, work / "poll.log")
    cleanups.append(dw.stop)
    dw.wait_ready()
    deadline = time.monotonic() + 30
    while dw.polls("a") < 2:
        if time.monotonic() > deadline:
            die("dockwatch did not poll A twice within 30 s")
        time.sleep(0.05)
    s0 = dw.metrics()
    p0, dw0, dd0, t_0 = metric_sum(s0, "dockwatch_api_request_duration_seconds_count", daemon="a", endpoint="version"), \
        cpu_seconds(dw.pid), cpu_seconds(dockerd_a), time.monotonic()
    log(f"timing polls of A for {window} s (interval {interval})")
    time.sleep(window)
    s1 = dw.metrics()
    p1, dw1, dd1, t_1 = metric_sum(s1, "dockwatch_api_request_duration_seconds_count", daemon="a", endpoint="version"), \
        cpu_seconds(dw.pid), cpu_seconds(dockerd_a), time.monotonic()
    polls = p1 - p0
    if polls < 1:
        die("no poll of A in the timing window")
    dw_per_poll = (dw1 - dw0) / polls
    dd_per_poll = max((dd1 - dd0) - idle_rate * (t_1 - t_0), 0.0) / polls
    calls_a_small_instance = (api_calls(s1, "a") - api_calls(s0, "a")) / polls
    rss_idle_a_only = status_kib(dw.pid, "VmRSS")
    poll_seconds = metric_sum(s1, "dockwatch_daemon_poll_duration_seconds", daemon="a")
    dw.stop()

    # ---------------------------------------------------------- 2c. what dockwatch costs dockerd per hour
    # At the shipped interval: image lists on every poll (images_interval =
    # interval, the old default) next to lists on change (the defaults: while
    # the event stream is followed, a list after image events and every 10 m).
    cost = {}
    for mode, extra in (("every poll", {"images_interval": args.interval}), ("on change", {})):
        write_config(cfg, free_port(), [("a", env["DOCKER_A"], None)], groups,
                     {"interval": args.interval, "timeout": "4s" if args.interval != "2s" else "1s",
                      "disk_interval": "0", **extra}, [], 1)
        dw = Dockwatch(binary, cfg, work / f"cost-{mode.replace(' ', '-')}.log")
        cleanups.append(dw.stop)
        dw.wait_ready()
        # The first poll and the listing when the event stream connects.
        time.sleep(2 if args.smoke else 10)
        c0, since = cpu_seconds(dockerd_a), time.monotonic()
        log(f"dockerd A CPU with image lists {mode}, {args.cost_window} s at interval {args.interval}")
        time.sleep(args.cost_window)
        spent = max(cpu_seconds(dockerd_a) - c0 - idle_rate * (time.monotonic() - since), 0.0)
        cost[mode] = spent / (time.monotonic() - since) * 3600
        dw.stop()

    # ---------------------------------------------------------- 3. memory, with pre-pulls
    for image in prepull:
        a("rmi", "-f", image, check=False)
    cfg = work / "fleet.toml"
    write_config(cfg, free_port(), [("a", env["DOCKER_A"], None), ("b", env["DOCKER_B"], tls)], groups,
                 {"interval": args.interval, "timeout": "4s" if args.interval != "2s" else "1s",
                  "images_interval": args.interval}, prepull,
                 args.concurrency)
    dw = Dockwatch(binary, cfg, work / "fleet.log")
    cleanups.append(dw.stop)
    rss_samples: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                rss_samples.append(status_kib(dw.pid, "VmRSS"))
            except (OSError, BenchError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dw.wait_ready(120)
    most_at_once, t0 = 0, time.monotonic()
    while True:
        s = dw.metrics()
        most_at_once = max(most_at_once, int(metric_sum(s, "dockwatch_image_pulls_in_progress", daemon="a")))
        ended = metric_sum(s, "dockwatch_image_pulls_total", daemon="a")
        if ended >= len(prepull) and metric_sum(s, "dockwatch_image_pulls_in_progress", daemon="a") == 0:
            break
        if time.monotonic() - t0 > 600:
            die("the pre-pulls did not end within 600 s")
        time.sleep(0.1)
    pulls_took = time.monotonic() - t0
    sampling.set()
    sampler.join()
    updated = metric_sum(s, "dockwatch_image_pulls_total", daemon="a", result="updated")
    if updated != len(prepull):
        die(f"{len(prepull) - updated:.0f} of {len(prepull)} pre-pulls did not end `updated`; log: {dw.log_path}")
    rss_pull_peak = max(rss_samples)
    hwm = status_kib(dw.pid, "VmHWM")
    for image in prepull:  # what dockwatch says is there, docker says too
        if metric_sum(s, "dockwatch_image_present", daemon="a", image=image) != 1:
            die(f"dockwatch_image_present is not 1 for {image}")
        a("image", "inspect", image)
    log(f"{len(prepull)} pre-pulls ended `updated` in {pulls_took:.1f} s, up to {most_at_once} at once; "
        f"RSS peak {rss_pull_peak} kB (VmHWM {hwm} kB)")

    # settle: two more polls of both daemons, then idle memory and ground truth
    p_a, p_b = dw.polls("a"), dw.polls("b")
    deadline = time.monotonic() + 60
    while dw.polls("a") < p_a + 1 or dw.polls("b") < p_b + 1:
        if time.monotonic() > deadline:
            die("no poll within 60 s after the pre-pulls")
        time.sleep(0.2)
    time.sleep(2)
    rss_idle = status_kib(dw.pid, "VmRSS")
    s_settled = dw.metrics()
    truth["a_images"] += len(prepull)
    checks = {
        "a_images": metric_sum(s_settled, "dockwatch_images", daemon="a"),
        "a_dangling": metric_sum(s_settled, "dockwatch_images_dangling", daemon="a"),
        "a_containers": metric_sum(s_settled, "dockwatch_containers", daemon="a"),
        "b_images": metric_sum(s_settled, "dockwatch_images", daemon="b"),
        "b_containers": metric_sum(s_settled, "dockwatch_containers", daemon="b"),
    }
    for k, v in checks.items():
        if v != truth[k]:
            die(f"dockwatch says {k} = {v:.0f}, the docker CLI {truth[k]}")
    for state, n in plan.items():
        got = metric_sum(s_settled, "dockwatch_containers", daemon="a", state=state)
        want = a.count("ps", "-aq", "--filter", f"status={state}")
        ours = a.count("ps", "-aq", "--filter", f"status={state}", "--filter", f"label={LABEL}=1")
        if got != want or ours != n:
            die(f"containers {state}: dockwatch {got:.0f}, docker CLI {want} ({ours} of the bench's, {n} made)")
    log(f"ground truth agrees: {checks}")

    # ---------------------------------------------------------- 1. /metrics under load
    status, body = http_get(dw.url + "/metrics")
    if status != 200:
        die(f"/metrics answered {status}")
    series = sum(1 for l in body.decode().splitlines() if l and not l.startswith("#"))
    nginx, nginx_port = start_nginx(work, body)
    cleanups.append(lambda: (nginx.terminate(), nginx.wait(10)))
    runs = {"nginx": [], "dockwatch": []}
    single = {"nginx": [], "dockwatch": []}  # one connection: what one Prometheus sees
    urls = {"nginx": f"http://127.0.0.1:{nginx_port}/metrics", "dockwatch": dw.url + "/metrics"}
    for r in range(args.wrk_rounds):
        order = ("nginx", "dockwatch") if r % 2 == 0 else ("dockwatch", "nginx")
        for who in order:
            res = wrk(urls[who], args.wrk_seconds, args.connections)
            runs[who].append(res)
            log(f"wrk round {r + 1} {who}: {res['rps']:.0f} req/s, p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms")
            one = wrk(urls[who], max(args.wrk_seconds // 2, 1), 1)
            single[who].append(one)
            log(f"wrk round {r + 1} {who}, 1 connection: p50 {one['p50']:.3f} ms, p99 {one['p99']:.3f} ms")
    # at least two polls of each daemon since s_settled, for the calls per poll
    deadline = time.monotonic() + 60
    while True:
        s_after_load = dw.metrics()
        if all(
            metric_sum(s_after_load, "dockwatch_api_request_duration_seconds_count", daemon=d, endpoint="version")
            >= metric_sum(s_settled, "dockwatch_api_request_duration_seconds_count", daemon=d, endpoint="version") + 2
            for d in ("a", "b")
        ):
            break
        if time.monotonic() > deadline:
            die("fewer than two polls of each daemon within 60 s")
        time.sleep(0.5)
    web = {who: {k: median([x[k] for x in rs]) for k in ("rps", "p50", "p99")} for who, rs in runs.items()}
    web1 = {who: {k: median([x[k] for x in rs]) for k in ("p50", "p99")} for who, rs in single.items()}

    # ---------------------------------------------------------- 2b. calls per poll, two scales
    calls = {}
    for d in ("a", "b"):
        dp = metric_sum(s_after_load, "dockwatch_api_request_duration_seconds_count", daemon=d, endpoint="version") - \
            metric_sum(s_settled, "dockwatch_api_request_duration_seconds_count", daemon=d, endpoint="version")
        dc = api_calls(s_after_load, d) - api_calls(s_settled, d)
        calls[d] = (dc / dp if dp else float("nan"), dp)
    dw.stop()
    nginx.terminate()
    nginx.wait(10)
    for image in prepull:
        a("rmi", "-f", image, check=False)

    # ---------------------------------------------------------- 4. cold pull
    pull = None
    if args.pull_runs > 0:
        log(f"cold pulls: benches/pull_vs_docker.sh {args.pull_runs} runs per tool")
        cmd = [str(ROOT / "benches/pull_vs_docker.sh"), "--binary", str(binary)]
        if args.pull_image:
            cmd += ["--image", args.pull_image]
        cmd.append(str(args.pull_runs))
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, DW_TESTBED=str(bed)))
        sys.stderr.write(p.stderr)
        if p.returncode != 0:
            die(f"pull_vs_docker.sh exited {p.returncode}")
        m = re.search(r"^median\s+([\d.]+)\s+([\d.]+)", p.stdout, re.M)
        img = re.search(r"^\s+(\d+) layers, (\d+) bytes compressed", p.stdout, re.M)
        if not m or not img:
            die(f"cannot read pull_vs_docker.sh's output:\n{p.stdout}")
        pull = {"dw": float(m.group(1)), "docker": float(m.group(2)), "layers": int(img.group(1)),
                "bytes": int(img.group(2)), "runs": args.pull_runs}

    # ---------------------------------------------------------- 5. micro
    micro = []
    if not args.no_micro:
        log("cargo bench --bench micro")
        p = run(["cargo", "bench", "--quiet", "--bench", "micro"], cwd=ROOT)
        micro = [l for l in p.stdout.splitlines() if l.startswith(("fold:", "encode "))]

    # ---------------------------------------------------------- report
    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    mib = lambda kib: kib / 1024  # noqa: E731
    rows = [
        ("1. /metrics throughput, wrk -c%d (req/s)" % args.connections, f"{web['dockwatch']['rps']:,.0f}",
         f"nginx {web['nginx']['rps']:,.0f}", f"{web['dockwatch']['rps'] / web['nginx']['rps']:.2f}", "≥ 0.5",
         yes(web['dockwatch']['rps'] >= 0.5 * web['nginx']['rps'])),
        ("   /metrics latency p50 (ms)", f"{web['dockwatch']['p50']:.2f}", f"nginx {web['nginx']['p50']:.2f}",
         f"{web['dockwatch']['p50'] / web['nginx']['p50']:.2f}", "", ""),
        ("   /metrics latency p99 (ms)", f"{web['dockwatch']['p99']:.2f}", f"nginx {web['nginx']['p99']:.2f}",
         f"{web['dockwatch']['p99'] / web['nginx']['p99']:.2f}", "< 5 ms", yes(web['dockwatch']['p99'] < 5)),
        ("   /metrics latency, 1 connection, p50 / p99 (ms)", f"{web1['dockwatch']['p50']:.3f} / {web1['dockwatch']['p99']:.3f}",
         f"nginx {web1['nginx']['p50']:.3f} / {web1['nginx']['p99']:.3f}",
         f"{web1['dockwatch']['p99'] / web1['nginx']['p99']:.2f}", "", ""),
        ("2. CPU per poll of A (ms)", f"{dw_per_poll * 1e3:.1f}", f"dockerd {dd_per_poll * 1e3:.1f}",
         f"{dw_per_poll / dd_per_poll:.3f}" if dd_per_poll else "n/a", "≤ 0.1",
         yes(dd_per_poll > 0 and dw_per_poll <= 0.1 * dd_per_poll)),
        (f"   API calls per poll, A ({truth['a_images']} images, {truth['a_containers']} containers)",
         f"{calls['a'][0]:.2f}", f"B ({truth['b_images']} images, {truth['b_containers']} containers): {calls['b'][0]:.2f}",
         "", f"5 + {len(groups)} filters, both", yes(calls['a'][0] == calls['b'][0] == 5 + len(groups))),
        (f"   dockerd CPU dockwatch causes per hour at {args.interval}, A: lists on change (CPU-s/h, % of a core)",
         f"{cost['on change']:.1f} ({cost['on change'] / 36:.2f} %)",
         f"lists every poll {cost['every poll']:.1f} ({cost['every poll'] / 36:.2f} %)",
         f"{cost['on change'] / cost['every poll']:.3f}" if cost['every poll'] else "n/a", "< 0.5 %",
         yes(cost['on change'] / 36 < 0.5)),
        ("3. RSS idle (MiB)", f"{mib(rss_idle):.1f}", "", "", "< 20", yes(mib(rss_idle) < 20)),
        (f"   RSS during {args.concurrency} concurrent pulls, peak (MiB)", f"{mib(rss_pull_peak):.1f}",
         f"VmHWM {mib(hwm):.1f}", "", "< 40", yes(mib(max(rss_pull_peak, hwm)) < 40)),
    ]
    if pull:
        rows.append((f"4. cold pull {pull['bytes'] / MIB:.0f} MiB, {pull['layers']} layers, median of {pull['runs']} (s)",
                     f"{pull['dw']:.3f}", f"docker pull {pull['docker']:.3f}", f"{pull['dw'] / pull['docker']:.3f}",
                     "≤ 1.03", yes(pull['dw'] <= 1.03 * pull['docker'])))
    for line in micro:
        if line.startswith("fold:"):
            m = re.search(r"parse\+fold ([\d.]+) M events/s.*fold only ([\d.]+) M events/s", line)
            if m:
                rows.append(("5. progress fold, long recorded stream (M events/s)", m.group(1),
                             f"fold alone {m.group(2)}", "", "", ""))
        else:
            m = re.search(r"([\d.]+) µs per scrape", line)
            if m:
                rows.append(("   encode /metrics at the default scale (µs/scrape)", m.group(1), "", "", "", ""))

    head = ("figure", "dockwatch", "baseline (same run)", "ratio", "target", "met")
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "unknown")
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / MIB
    rev = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "unknown"
    dirty = run(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                check=False).stdout.strip()
    versions = {
        "dockerd": a("version", "--format", "{{.Server.Version}}").strip(),
        "nginx": run(["nginx", "-v"], check=False).stderr.strip().replace("nginx version: ", ""),
        "wrk": (run(["wrk", "--version"], check=False).stdout.splitlines() or ["?"])[0].split(" [")[0],
    }
    lines = [
        "# dockwatch fleet benchmark" + (" (SMOKE: tiny scale, figures mean nothing)" if args.smoke else ""),
        "",
        f"machine: {os.cpu_count()} CPUs ({model}), {mem_gib:.0f} GiB, Linux {platform.release()}",
        f"software: dockwatch git {rev}{'+dirty' if dirty else ''} ({profile}), dockerd {versions['dockerd']}, "
        f"{versions['nginx']}, {versions['wrk']}",
        f"command: {' '.join([Path(sys.argv[0]).name] + sys.argv[1:]) if len(sys.argv) > 1 else 'benches/fleet.py'}",
        f"scale: daemon A {truth['a_images']} images ({args.images} loaded, {truth['a_dangling']} dangling, "
        f"{len(prepull)} pre-pulled), {truth['a_containers']} containers {plan} + the bed's; daemon B (mTLS) "
        f"{truth['b_images']} images, {truth['b_containers']} containers; {len(groups)} filter groups "
        f"({', '.join(g for g, _ in groups)}); {len(prepull)} pre-pull images of {args.prepull_mib} MiB, "
        f"{args.concurrency} at a time",
        f"/metrics body: {len(body):,} bytes, {series} series, from an instance polling both daemons every "
        f"{args.interval}; wrk -t2 -c{args.connections} -d{args.wrk_seconds}s, "
        f"{args.wrk_rounds} alternating rounds each, medians",
        f"polls: A only, interval {interval}, {polls:.0f} polls in {t_1 - t_0:.0f} s; dockerd's idle rate "
        f"{idle_rate * 1e3:.1f} ms CPU/s subtracted; dockwatch's own poll duration {poll_seconds * 1e3:.0f} ms; "
        f"calls per poll of that instance {calls_a_small_instance:.2f}; its RSS {mib(rss_idle_a_only):.1f} MiB",
        f"pre-pulls: {len(prepull)} ended `updated` in {pulls_took:.1f} s, at most {most_at_once} at once",
        "",
        *table,
        "",
    ]
    if micro:
        lines += ["cargo bench --bench micro:", *("    " + l for l in micro), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"[fleet] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
