#!/usr/bin/env python3
"""A replay fleet: N Docker Engine API endpoints answering what real daemons answered.

    benches/replay.py serve --count N --dir DIR [--tcp] [--podman-every K]
                            [--latency-ms MS] [--jitter-ms MS] [--hang K] [--reset K]
                            [--trickle K] [--event-every S] ...
    benches/replay.py capture --bed ENV_FILE [--out DIR]

It stands in for a fleet of daemons as wrk stands in for clients: one asyncio
process holds every endpoint (a unix socket DIR/dNNNN.sock each, or a loopback
port each with --tcp) and answers `/_ping`, `/version`, `/info`,
`/images/json` (with filters), `/containers/json`, `/system/df` and `/events`
with the bodies and headers captured from the test bed's dockerd A and its
Podman service (tests/streams/replay/*.json, made by `capture`). It never
replaces the tests against real daemons; it is for what a machine cannot run a
thousand of.

Answers:
  - an optional /vX.Y prefix is taken as dockerd takes it: a version above the
    engine's newest is refused with dockerd's 400 (Podman takes any);
  - /images/json applies `filters` (dangling, label, reference) to the captured
    list, in the map-of-lists and the legacy map-of-bools forms; the capture
    checks the emulation against the real daemon's answers to a set of queries
    and stores them (`filter_checks`), and `serve --check` re-checks them;
  - /containers/json without all=1 lists the running ones, as dockerd does;
  - /events sends its headers at once (as dockerd does) and holds the stream
    open; with --event-every S it sends one container event (from the captured
    event streams, with the current time) every S seconds per endpoint.

Faults, per endpoint (the first K endpoints in a spread order, or at run time
through the control socket):
  hang     accepts and reads the request, never answers (the connection stays
           open until the client closes it)
  reset    closes the connection as soon as a request arrives (a TCP RST with
           --tcp)
  trickle  answers at --trickle-bps bytes per second
  latency  before every answer: the time the real daemon took for that path
           (captured, median), or --latency-ms; plus uniform --jitter-ms

When every endpoint listens, DIR/endpoints.json lists them ([{"name", "host",
"engine"}]); the control socket DIR/control.sock takes one JSON object per line
and answers one per line:
  {"cmd": "set", "names": [...], "mode": "ok|hang|reset|trickle", "latency_ms": X}
  {"cmd": "events", "every": S}          (0 stops sending events)
  {"cmd": "stats", "t0": T, "t1": T, "interval": I, "names": [...]}
      polls seen per endpoint in [t0, t1) (time.monotonic(), the system-wide
      CLOCK_MONOTONIC): a poll is the cluster of calls around one /version
      request; it is on time if its last answer went out within one interval of
      its first request; every tick skipped (a gap of more than 1.5 intervals
      between polls, or between an edge of the window and a poll) counts as a
      poll not on time
  {"cmd": "peak"}                        most requests in progress at once since the last "peak"
  {"cmd": "sent"}                        events sent per endpoint
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import fnmatch
import json
import os
import random
import re
import signal
import socket
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "streams" / "replay"
EVENT_STREAMS = {"dockerd": ROOT / "tests/streams/events-dockerd.jsonl",
                 "podman": ROOT / "tests/streams/podman-events.jsonl"}
PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
HEAD_END = b"\r\n\r\n"
# What one request head may take; dockwatch's are under 1 KiB.
MAX_HEAD = 64 * 1024


def log(msg: str) -> None:
    print(f"[replay] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ filters


def filter_map(raw: str) -> dict[str, list[str]]:
    """The `filters` query parameter in either form the Engine API takes."""
    data = json.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("filters is not a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, list):
            out[key] = [str(v) for v in val]
        elif isinstance(val, dict):  # legacy {"dangling": {"true": true}}
            out[key] = [k for k, on in val.items() if on]
        else:
            raise ValueError(f"filter {key!r} is neither a list nor a map")
    return out


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match, as the Engine API's `reference` filter uses it: `*`
    does not cross a `/`."""
    rx = fnmatch.translate(pattern).replace(".*", "[^/]*")
    return re.match(rx, name) is not None


def familiar(ref: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def tags_of(image: dict) -> list[str]:
    return [t for t in (image.get("RepoTags") or []) if t != "<none>:<none>"]


def image_matches(image: dict, filters: dict[str, list[str]]) -> bool:
    tags = tags_of(image)
    for want in filters.get("dangling", []):
        if want.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"Invalid filter 'dangling={want}'")
        if (want.lower() in ("true", "1")) == bool(tags):
            return False
    labels = image.get("Labels") or {}
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    refs = filters.get("reference", [])
    if refs:
        names = []
        for t in tags:
            name = familiar(t)
            names += [name, name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name]
        if not any(path_match(p, n) for p in refs for n in names):
            return False
    return True


KNOWN_FILTERS = {"dangling", "label", "reference"}


def filter_images(images: list, raw: str, unknown: str = "Invalid filter '{}'") -> list:
    filters = filter_map(raw)
    for key in filters:
        if key not in KNOWN_FILTERS:
            # The engine's answer to an unknown key; before/since are real
            # filters the replay does not emulate, so they are refused too.
            raise ValueError(unknown.format(key))
    return [i for i in images if image_matches(i, filters)]


# ------------------------------------------------------------------ engines


class Engine:
    """One captured daemon: its answers, ready to send."""

    def __init__(self, path: Path):
        cap = json.loads(path.read_text())
        self.name = cap["engine"]
        self.newest = tuple(int(x) for x in cap["api_version"].split("."))
        self.refuses_newer = cap["refuses_newer_versions"]
        self.headers = cap["headers"]  # sent with every answer, in order
        self.ping_headers = cap["ping_headers"]
        self.bodies = {k: v.encode() for k, v in cap["answers"].items()}
        self.images = json.loads(cap["answers"]["/images/json"])
        self.containers = json.loads(cap["answers"]["/containers/json?all=1"])
        self.filter_checks = cap["filter_checks"]
        self.latency = {k: v / 1000 for k, v in cap["latency_ms"].items()}
        # The engine's own words for an unknown filter key, from the capture.
        self.unknown_filter = next(
            (c["message"].replace("{", "{{").replace("}", "}}").replace("bogus", "{}")
             for c in self.filter_checks if "bogus" in c["filters"]), "Invalid filter '{}'")
        self.image_cache: dict[str, bytes] = {}
        self.running_body = (json.dumps([c for c in self.containers if c.get("State") == "running"]) + "\n").encode()
        events = [json.loads(l) for l in EVENT_STREAMS[self.name].read_text().splitlines() if l.strip()]
        self.events = [e for e in events if e.get("Type") == "container"]

    def check_filters(self) -> list[str]:
        """Where the emulated filters disagree with the captured answers."""
        bad = []
        for check in self.filter_checks:
            try:
                got = sorted(i["Id"] for i in filter_images(self.images, json.dumps(check["filters"]),
                                                           self.unknown_filter))
            except ValueError as e:
                got = f"400 {e}"
            want = check["ids"] if check["status"] == 200 else f"400 {check['message']}"
            if got != want:
                bad.append(f"{self.name} {check['filters']}: replay {got}, real {want}")
        return bad

    def image_list(self, query: str) -> tuple[int, bytes]:
        cached = self.image_cache.get(query)
        if cached is not None:
            return 200, cached
        params = urllib.parse.parse_qs(query)
        try:
            images = filter_images(self.images, params.get("filters", [""])[0], self.unknown_filter)
        except (ValueError, json.JSONDecodeError) as e:
            return 400, (json.dumps({"message": str(e)}) + "\n").encode()
        body = (json.dumps(images) + "\n").encode()
        if len(self.image_cache) < 1024:
            self.image_cache[query] = body
        return 200, body

    def answer(self, method: str, target: str) -> tuple[int, bytes, str]:
        """Status, body and its content type for one request (not /events)."""
        path, _, query = target.partition("?")
        m = PREFIX.match(path)
        if m:
            asked = (int(m.group(1)), int(m.group(2)))
            path = m.group(3)
            if self.refuses_newer and asked > self.newest:
                msg = (f"client version {asked[0]}.{asked[1]} is too new. Maximum supported API version "
                       f"is {self.newest[0]}.{self.newest[1]}")
                return 400, (json.dumps({"message": msg}) + "\n").encode(), "application/json"
        if path == "/_ping" and method in ("GET", "HEAD"):
            return 200, b"OK", "text/plain; charset=utf-8"
        if method != "GET":
            return 404, b'{"message":"page not found"}\n', "application/json"
        if path == "/images/json":
            status, body = self.image_list(query)
            return status, body, "application/json"
        if path == "/containers/json":
            params = urllib.parse.parse_qs(query)
            every = params.get("all", ["0"])[0] not in ("0", "false", "")
            return 200, self.bodies["/containers/json?all=1"] if every else self.running_body, "application/json"
        if path in ("/version", "/info", "/system/df"):
            return 200, self.bodies[path], "application/json"
        return 404, b'{"message":"page not found"}\n', "application/json"

    def event_line(self, n: int) -> bytes:
        e = json.loads(json.dumps(self.events[n % len(self.events)]))
        now = time.time_ns()
        e["time"], e["timeNano"] = now // 1_000_000_000, now
        return (json.dumps(e) + "\n").encode()


_date = (0, "")


def http_date() -> str:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


def response(engine: Engine, status: int, body: bytes, ctype: str, ping: bool, head_only: bool) -> bytes:
    hdrs = engine.ping_headers if ping else engine.headers
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in hdrs.items() if k.lower() != "content-type"]
    lines += [f"Date: {http_date()}", f"Content-Length: {len(body)}", f"Content-Type: {ctype}", "", ""]
    return "\r\n".join(lines).encode() + (b"" if head_only else body)


# ------------------------------------------------------------------ the fleet


class Endpoint:
    def __init__(self, name: str, engine: Engine):
        self.name = name
        self.engine = engine
        self.mode = "ok"
        # Seconds before every answer; None: the engine's captured time per path.
        self.latency: float | None = None
        # (kind, arrived, answered): kind is the path without prefix and query
        self.calls: list[tuple[str, float, float]] = []
        self.streams: set[EventStream] = set()
        self.events_sent = 0


class Fleet:
    def __init__(self, args):
        self.args = args
        self.endpoints: list[Endpoint] = []
        self.in_flight = 0
        self.peak = 0
        self.event_every = args.event_every
        self.trickle_bps = args.trickle_bps
        self.jitter = args.jitter_ms / 1000

    def begin(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def end(self) -> None:
        self.in_flight -= 1


class EventStream:
    def __init__(self, conn: "Conn"):
        self.conn = conn
        self.task: asyncio.Task | None = None


class Conn(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, one request at a time."""

    def __init__(self, fleet: Fleet, ep: Endpoint):
        self.fleet, self.ep = fleet, ep
        self.buf = b""
        self.busy = False
        self.transport: asyncio.Transport | None = None
        self.stream: EventStream | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.stream:
            self.ep.streams.discard(self.stream)
            if self.stream.task:
                self.stream.task.cancel()
            self.stream = None
        if self.busy:
            # A hung or slow answer the client gave up on.
            self.busy = False
            self.fleet.end()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_HEAD and HEAD_END not in self.buf:
            self.transport.close()
            return
        self.next_request()

    def next_request(self) -> None:
        if self.busy or self.stream or self.closed:
            return
        end = self.buf.find(HEAD_END)
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self.transport.close()
            return
        method, target = parts[0], parts[1]
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip() or 0)
        if len(self.buf) < end + 4 + length:
            return  # the body is still coming
        self.buf = self.buf[end + 4 + length:]
        self.handle(method, target)

    def handle(self, method: str, target: str) -> None:
        ep, fleet = self.ep, self.fleet
        arrived = time.monotonic()
        path = target.partition("?")[0]
        m = PREFIX.match(path)
        kind = m.group(3) if m else path
        self.busy = True
        fleet.begin()
        mode = ep.mode
        if mode == "hang":
            ep.calls.append((kind, arrived, float("inf")))
            return  # never answered; connection_lost settles the count
        if mode == "reset":
            ep.calls.append((kind, arrived, arrived))
            self.busy = False
            fleet.end()
            sock = self.transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()
            return
        base = ep.engine.latency.get(kind, 0.0) if ep.latency is None else ep.latency
        delay = base + (random.uniform(0, fleet.jitter) if fleet.jitter else 0.0)
        if kind == "/events" and method == "GET":
            head = self.events_head()
            call = (kind, arrived)
            if delay > 0 or mode == "trickle":
                asyncio.get_running_loop().create_task(self.send_later(head, delay, mode, call, stream=True))
            else:
                self.start_stream(head, call)
            return
        status, body, ctype = ep.engine.answer(method, target)
        data = response(ep.engine, status, body, ctype, kind == "/_ping", method == "HEAD")
        if delay > 0 or mode == "trickle":
            asyncio.get_running_loop().create_task(self.send_later(data, delay, mode, (kind, arrived)))
        else:
            self.transport.write(data)
            self.done((kind, arrived))

    def done(self, call: tuple[str, float]) -> None:
        self.ep.calls.append((call[0], call[1], time.monotonic()))
        self.busy = False
        self.fleet.end()
        self.next_request()

    async def send_later(self, data: bytes, delay: float, mode: str, call, stream: bool = False) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if mode == "trickle":
            step = max(1, int(self.fleet.trickle_bps / 10))
            for i in range(0, len(data), step):
                if self.closed:
                    return
                self.transport.write(data[i:i + step])
                await asyncio.sleep(0.1)
        if self.closed:
            return
        if stream:
            # A trickled head went out above.
            self.start_stream(b"" if mode == "trickle" else data, call)
            return
        self.transport.write(data)
        self.done(call)

    def events_head(self) -> bytes:
        e = self.ep.engine
        lines = ["HTTP/1.1 200 OK"] + [f"{k}: {v}" for k, v in e.headers.items()]
        lines += [f"Date: {http_date()}", "Transfer-Encoding: chunked", "", ""]
        return "\r\n".join(lines).encode()

    def start_stream(self, head: bytes, call) -> None:
        if head:
            self.transport.write(head)
        # The call (as dockwatch times it) ends when the answer begins.
        self.ep.calls.append((call[0], call[1], time.monotonic()))
        self.busy = False
        self.fleet.end()
        self.stream = EventStream(self)
        self.ep.streams.add(self.stream)
        if self.fleet.event_every > 0:
            self.stream.task = asyncio.get_running_loop().create_task(self.feed(self.stream))

    async def feed(self, stream: EventStream) -> None:
        every = self.fleet.event_every
        # A random phase, so a thousand streams do not send at once.
        await asyncio.sleep(random.uniform(0, every))
        while not self.closed and self.fleet.event_every > 0 and self.ep.mode == "ok":
            line = self.ep.engine.event_line(self.ep.events_sent)
            self.transport.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.ep.events_sent += 1
            await asyncio.sleep(self.fleet.event_every)


# ------------------------------------------------------------------ stats


def poll_stats(ep: Endpoint, t0: float, t1: float, interval: float) -> dict:
    """Polls of one endpoint that started in [t0, t1)."""
    calls = sorted((c for c in ep.calls if c[0] not in ("/events", "/system/df")), key=lambda c: c[1])
    # Clusters of calls: a new one starts more than half an interval after
    # the first call of the current one.
    clusters: list[list] = []
    for c in calls:
        if clusters and c[1] - clusters[-1][0][1] < interval / 2:
            clusters[-1].append(c)
        else:
            clusters.append([c])
    polls = []
    for cl in clusters:
        if not any(k == "/version" for k, _, _ in cl):
            continue  # the events task's /info, a lone /_ping
        start = min(a for _, a, _ in cl)
        end = max(d for _, _, d in cl)
        if t0 <= start < t1:
            polls.append((start, end))
    on_time = sum(1 for s, e in polls if e - s <= interval)
    # Ticks skipped: gaps of more than 1.5 intervals between polls, and
    # between the window's edges and the first and last poll (a fixed count
    # per window would misjudge a daemon whose ticks sit on an edge).
    edges = [t0] + [s for s, _ in polls] + [t1]
    missed = 0
    for a, b in zip(edges, edges[1:]):
        if b - a > 1.5 * interval:
            missed += round((b - a) / interval) - 1 if (a, b) != (t0, t1) else int((t1 - t0) // interval)
    durations = [e - s for s, e in polls if e != float("inf")]
    return {"polls": len(polls), "on_time": on_time, "missed": missed, "durations": durations,
            "starts": [s for s, _ in polls]}


def fleet_stats(fleet: Fleet, t0: float, t1: float, interval: float, names: list[str] | None) -> dict:
    chosen = [e for e in fleet.endpoints if names is None or e.name in set(names)]
    per = {e.name: poll_stats(e, t0, t1, interval) for e in chosen}
    polls = sum(p["polls"] for p in per.values())
    on_time = sum(p["on_time"] for p in per.values())
    missed = sum(p["missed"] for p in per.values())
    durations = sorted(d for p in per.values() for d in p["durations"])
    starts = sorted(s for p in per.values() for s in p["starts"])
    # How bunched the poll starts are: the most in any 100 ms.
    most, j = 0, 0
    for i, s in enumerate(starts):
        while starts[j] < s - 0.1:
            j += 1
        most = max(most, i - j + 1)
    calls = [c for e in chosen for c in e.calls if t0 <= c[1] < t1]
    answered = [c[2] - c[1] for c in calls if c[2] != float("inf")]

    def q(xs, p):
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None

    return {
        "endpoints": len(chosen),
        "polls": polls,
        "on_time": on_time,
        "missed": missed,
        "on_time_pct": 100.0 * on_time / (polls + missed) if polls + missed else 0.0,
        "poll_p50": q(durations, 0.5),
        "poll_p99": q(durations, 0.99),
        "poll_max": durations[-1] if durations else None,
        "starts_most_in_100ms": most,
        "calls": len(calls),
        "calls_unanswered": len(calls) - len(answered),
        "late_endpoints": sorted(n for n, p in per.items() if p["on_time"] < p["polls"] + p["missed"])[:20],
        "mean_answer_ms": 1e3 * statistics.fmean(answered) if answered else None,
    }


# ------------------------------------------------------------------ control


async def control(fleet: Fleet, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    by_name = {e.name: e for e in fleet.endpoints}
    try:
        while line := await reader.readline():
            try:
                req = json.loads(line)
                cmd = req.get("cmd")
                if cmd == "set":
                    for n in req["names"]:
                        ep = by_name[n]
                        ep.mode = req.get("mode", ep.mode)
                        if "latency_ms" in req:
                            ms = req["latency_ms"]
                            ep.latency = None if ms is None else ms / 1000
                    out = {"ok": True}
                elif cmd == "events":
                    fleet.event_every = float(req["every"])
                    if fleet.event_every > 0:
                        for ep in fleet.endpoints:
                            for st in ep.streams:
                                if st.task is None or st.task.done():
                                    st.task = asyncio.get_running_loop().create_task(st.conn.feed(st))
                    out = {"ok": True}
                elif cmd == "stats":
                    out = fleet_stats(fleet, req["t0"], req["t1"], req["interval"], req.get("names"))
                elif cmd == "peak":
                    out = {"peak": fleet.peak, "in_flight": fleet.in_flight}
                    fleet.peak = fleet.in_flight
                elif cmd == "sent":
                    out = {e.name: e.events_sent for e in fleet.endpoints}
                elif cmd == "calls":
                    out = {e.name: len(e.calls) for e in fleet.endpoints}
                else:
                    out = {"error": f"unknown command {cmd!r}"}
            except (KeyError, ValueError, TypeError) as e:
                out = {"error": f"{type(e).__name__}: {e}"}
            writer.write((json.dumps(out) + "\n").encode())
            await writer.drain()
    finally:
        writer.close()


def spread_order(n: int) -> list[int]:
    """Endpoint indices in an order that spreads any first K over the fleet
    (a fixed shuffle), so faulty endpoints are not all neighbours."""
    order = list(range(n))
    random.Random(13).shuffle(order)
    return order


async def serve(args) -> None:
    engines = {"dockerd": Engine(FIXTURES / "dockerd-20.10.json"), "podman": Engine(FIXTURES / "podman-4.3.json")}
    if args.check:
        bad = engines["dockerd"].check_filters() + engines["podman"].check_filters()
        if bad:
            raise SystemExit("filter emulation disagrees with the captured answers:\n  " + "\n  ".join(bad))
    fleet = Fleet(args)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    servers = []
    listing = []
    for i in range(args.count):
        engine = engines["podman" if args.podman_every and i % args.podman_every == args.podman_every - 1 else "dockerd"]
        ep = Endpoint(f"d{i:04d}", engine)
        ep.latency = None if args.latency_ms is None else args.latency_ms / 1000
        fleet.endpoints.append(ep)
        factory = (lambda ep=ep: Conn(fleet, ep))
        if args.tcp:
            srv = await loop.create_server(factory, "127.0.0.1", 0, backlog=256)
            host = f"tcp://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        else:
            path = d / f"{ep.name}.sock"
            path.unlink(missing_ok=True)
            srv = await loop.create_unix_server(factory, str(path), backlog=256)
            host = f"unix://{path}"
        servers.append(srv)
        listing.append({"name": ep.name, "host": host, "engine": engine.name})
    order = spread_order(args.count)
    k = 0
    for mode, count in (("hang", args.hang), ("reset", args.reset), ("trickle", args.trickle)):
        for idx in order[k:k + count]:
            fleet.endpoints[idx].mode = mode
            listing[idx]["mode"] = mode
        k += count
    ctl_path = d / "control.sock"
    ctl_path.unlink(missing_ok=True)
    ctl = await asyncio.start_unix_server(lambda r, w: control(fleet, r, w), str(ctl_path))
    tmp = d / "endpoints.json.tmp"
    tmp.write_text(json.dumps(listing))
    tmp.rename(d / "endpoints.json")
    log(f"{args.count} endpoints listening ({'tcp' if args.tcp else 'unix sockets'} in {d}); control {ctl_path}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ctl.close()
    for s in servers:
        s.close()


# ------------------------------------------------------------------ capture


def unix_get(sock_path: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """One GET over a unix socket, HTTP/1.0 style (Connection: close)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip()] = v.strip()
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, headers, body


FILTER_QUERIES = [
    {"dangling": ["true"]},
    {"dangling": ["false"]},
    {"dangling": {"true": True}},
    {"label": ["dwtest.group=cache"]},
    {"label": ["dwtest.group"]},
    {"label": ["dwtest.group=other"]},
    {"reference": ["ci/*"]},
    {"reference": ["dwtest/app"]},
    {"reference": ["dwtest/app:2"]},
    {"reference": ["*/runner:*"]},
    {"reference": ["ci/*"], "dangling": ["false"]},
    {"label": ["dwtest.group=cache"], "reference": ["ci/*"]},
    {"bogus": ["x"]},
]
# Timed requests per path when capturing.
TIMED_RUNS = 15
# Headers that change per answer or per body, not per engine.
PER_ANSWER = {"date", "content-length", "transfer-encoding", "connection"}


def capture(args) -> None:
    env = dict(l.split("=", 1) for l in Path(args.bed).read_text().splitlines() if "=" in l)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for engine, key, file in (("dockerd", "DOCKER_A_SOCKET", "dockerd-20.10.json"),
                              ("podman", "PODMAN_SOCKET", "podman-4.3.json")):
        sock = env[key]
        status, ping_headers, ping = unix_get(sock, "/_ping")
        if status != 200 or ping != b"OK":
            raise SystemExit(f"{engine}: /_ping answered {status} {ping!r}")
        api = ping_headers["Api-Version"]
        answers, headers, took = {}, None, {}
        for path in ("/_ping", "/version", "/info", "/images/json", "/containers/json?all=1", "/system/df"):
            times = []
            for _ in range(TIMED_RUNS):
                t = time.monotonic()
                status, hdrs, body = unix_get(sock, path if path == "/_ping" else f"/v{api}{path}")
                times.append(time.monotonic() - t)
            if status != 200:
                raise SystemExit(f"{engine}: {path} answered {status}: {body[:200]!r}")
            took[path.split("?")[0]] = round(1e3 * statistics.median(times), 3)
            if path != "/_ping":
                answers[path] = body.decode()
                headers = headers or {k: v for k, v in hdrs.items() if k.lower() not in PER_ANSWER}
        too_new = f"/v{api.split('.')[0]}.{int(api.split('.')[1]) + 20}/version"
        refuses = unix_get(sock, too_new)[0] == 400
        checks = []
        for f in FILTER_QUERIES:
            q = urllib.parse.urlencode({"filters": json.dumps(f)})
            status, _, body = unix_get(sock, f"/v{api}/images/json?{q}")
            if status == 200:
                checks.append({"filters": f, "status": 200, "ids": sorted(i["Id"] for i in json.loads(body))})
            else:
                checks.append({"filters": f, "status": status, "message": json.loads(body)["message"]})
        cap = {
            "engine": engine,
            "captured": "tests/testbed.sh up seeds; benches/replay.py capture",
            "api_version": api,
            "refuses_newer_versions": refuses,
            "headers": headers,
            "ping_headers": {k: v for k, v in ping_headers.items() if k.lower() not in PER_ANSWER},
            "answers": {"/_ping": "OK", **answers},
            # Median time to the whole answer over a fresh unix connection, in
            # ms: what `serve` waits before answering unless told otherwise.
            "latency_ms": took,
            "filter_checks": checks,
        }
        (out / file).write_text(json.dumps(cap, indent=1) + "\n")
        e = Engine(out / file)
        bad = e.check_filters()
        log(f"{engine}: captured {len(e.images)} images, {len(e.containers)} containers into {out / file}; "
            f"filter emulation {'agrees on all' if not bad else 'DISAGREES on'} {len(checks) if not bad else bad}")


def raise_nofile() -> None:
    """The fleet holds a listener and the client's connections (about three)
    per endpoint: its soft open-file limit goes to the hard one, so a test
    that starts dockwatch under a low limit does not starve the fleet too."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log(f"cannot raise the open-file limit from {soft} to {hard}: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the fleet")
    s.add_argument("--count", type=int, default=1000, help="endpoints (default 1000)")
    s.add_argument("--dir", required=True, help="sockets, endpoints.json and control.sock go here")
    s.add_argument("--tcp", action="store_true", help="loopback ports instead of unix sockets")
    s.add_argument("--podman-every", type=int, default=0, help="every K-th endpoint answers as Podman (0: none)")
    s.add_argument("--latency-ms", type=float, default=None,
                   help="before every answer (default: the captured median time of each path)")
    s.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this, uniform (default 0)")
    s.add_argument("--hang", type=int, default=0, help="endpoints that accept but never answer")
    s.add_argument("--reset", type=int, default=0, help="endpoints that close the connection on a request")
    s.add_argument("--trickle", type=int, default=0, help="endpoints that answer at --trickle-bps")
    s.add_argument("--trickle-bps", type=float, default=100.0, help="bytes per second of a trickle (default 100)")
    s.add_argument("--event-every", type=float, default=0.0, help="seconds between events per stream (0: none)")
    s.add_argument("--check", action="store_true", help="check the filter emulation against the capture first")
    c = sub.add_parser("capture", help="capture the answers of a test bed's dockerd A and Podman")
    c.add_argument("--bed", required=True, help="the test bed's env file (tests/testbed.sh up DIR writes DIR/env)")
    c.add_argument("--out", default=str(FIXTURES), help=f"default {FIXTURES}")
    args = ap.parse_args()
    if args.cmd == "serve":
        raise_nofile()
        asyncio.run(serve(args))
    else:
        capture(args)


if __name__ == "__main__":
    main()
