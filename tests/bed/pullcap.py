#!/usr/bin/env python3
"""Capture one Engine API streaming response (e.g. POST /images/create) raw,
with a timestamp per received line, and optionally signal a process at times
relative to the first body line that contains a marker.

  pullcap.py --socket A.sock --path '/images/create?fromImage=R/x&tag=1' \
      --body OUT.jsonl --log OUT.times [--header 'X-Registry-Auth: ...'] \
      [--marker Downloading --at 0.3:STOP:PID --at 60:CONT:PID] [--max-time 600]

The body file gets the bytes exactly as dockerd sent them (chunked transfer
encoding removed). The log file gets the status line and headers, then one
line per received body line: seconds since the request was sent, seconds since
the previous line, and the line (cut at 160 chars), plus every signal sent.
Used to record tests/streams/ by hand; the bed itself does not need it.
"""
import argparse, os, select, signal, socket, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--method", default="POST")
    ap.add_argument("--body", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--marker")
    ap.add_argument("--at", action="append", default=[], help="SECONDS:SIGNAL:PID after the marker")
    ap.add_argument("--max-time", type=float, default=600)
    a = ap.parse_args()

    actions = []
    for spec in a.at:
        sec, sig, pid = spec.split(":")
        actions.append([float(sec), getattr(signal, "SIG" + sig), int(pid), False])

    log = open(a.log, "w")
    out = open(a.body, "wb")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    req = f"{a.method} {a.path} HTTP/1.1\r\nHost: d\r\nUser-Agent: pullcap\r\nContent-Length: 0\r\nConnection: close\r\n"
    for h in a.header:
        req += h + "\r\n"
    t0 = time.monotonic()
    s.sendall((req + "\r\n").encode())

    raw = b""            # bytes not yet consumed
    headers_done = False
    chunked = False
    body_line = b""      # partial body line
    marker_t = None
    last = t0
    eof = False

    def body(data):
        nonlocal body_line, marker_t, last
        out.write(data)
        out.flush()
        body_line += data
        while b"\n" in body_line:
            line, body_line = body_line.split(b"\n", 1)
            now = time.monotonic()
            text = line.decode(errors="replace")
            log.write(f"{now - t0:9.3f} +{now - last:7.3f} {text[:160]}\n")
            last = now
            if marker_t is None and a.marker and a.marker in text:
                marker_t = now

    while True:
        now = time.monotonic()
        if now - t0 > a.max_time:
            log.write(f"{now - t0:9.3f} # max time reached, closing\n")
            break
        if marker_t is not None:
            for act in actions:
                if not act[3] and now - marker_t >= act[0]:
                    os.kill(act[2], act[1])
                    act[3] = True
                    log.write(f"{now - t0:9.3f} # sent SIG{signal.Signals(act[1]).name[3:]} to pid {act[2]} "
                              f"({now - marker_t:.3f}s after the first {a.marker!r} line)\n")
        log.flush()
        if eof:
            break
        r, _, _ = select.select([s], [], [], 0.02)
        if not r:
            continue
        data = s.recv(65536)
        if not data:
            eof = True
        raw += data
        if not headers_done:
            if b"\r\n\r\n" not in raw:
                continue
            head, raw = raw.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            for l in lines:
                log.write(l + "\n")
                if l.lower().startswith("transfer-encoding:") and "chunked" in l.lower():
                    chunked = True
            log.write(f"# headers after {time.monotonic() - t0:.3f}s\n")
            headers_done = True
        if not chunked:
            if raw:
                body(raw)
                raw = b""
        else:
            while True:
                if b"\r\n" not in raw:
                    break
                size_line, rest = raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    eof = True
                    raw = b""
                    break
                if len(rest) < size + 2:
                    break
                body(rest[:size])
                raw = rest[size + 2:]
        if eof:
            if body_line:
                log.write(f"{time.monotonic() - t0:9.3f} (no newline) {body_line.decode(errors='replace')[:160]}\n")
            log.write(f"{time.monotonic() - t0:9.3f} # end of stream\n")
    out.close()
    log.close()


if __name__ == "__main__":
    main()
