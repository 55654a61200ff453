#!/usr/bin/env python3
"""A registry front that answers 429 (Too Many Requests) on demand, holds
requests on demand, and otherwise passes every request through to the real
registry behind it.

A real registry cannot be made to rate-limit on demand; this can. It listens
on 127.0.0.1 (plain HTTP, which dockerd accepts from 127.0.0.0/8 without
configuration), so a daemon pulls 127.0.0.1:PORT/NAME:TAG through it.

  ratelimit_front.py --upstream 127.0.0.1:5000 --port-file F --log L

prints nothing; writes its port to F once it listens, and one JSON line per
request to L: {"t": unix time, "method", "path", "status", "limited": bool}.

Control (answered by the front itself, never passed on):
  GET /_front/arm?count=N[&retry_after=S][&match=REGEX][&message=TEXT]
      the next N requests whose path matches REGEX (default: manifests,
      `/v2/.+/manifests/`) get 429, with a `Retry-After: S` header when S is
      given, and Docker Hub's error body
      {"errors":[{"code":"TOOMANYREQUESTS","message":TEXT}]}
  GET /_front/disarm        pass everything through again
  GET /_front/hold?match=REGEX
      requests whose path matches REGEX (say, blobs) wait, unanswered, until
      released: a pull that is under way and stays so
  GET /_front/release       let held (and later) requests through
  GET /_front/state         {"armed": N left, "limited": 429s sent so far,
                             "held": requests waiting now}
"""
import argparse
import http.client
import http.server
import json
import re
import threading
import time
import urllib.parse

DEFAULT_MATCH = r"^/v2/.+/manifests/"
DEFAULT_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit"
)
# Hop-by-hop headers are the front's own business, not the upstream's.
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-authorization", "proxy-authenticate"}


class State:
    def __init__(self, upstream, log_path):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.armed = 0
        self.retry_after = None
        self.match = re.compile(DEFAULT_MATCH)
        self.message = DEFAULT_MESSAGE
        self.limited = 0
        self.hold = None
        self.released = threading.Event()
        self.held = 0
        self.log = open(log_path, "a", buffering=1)

    def record(self, method, path, status, limited):
        line = json.dumps({"t": time.time(), "method": method, "path": path,
                           "status": status, "limited": limited})
        with self.lock:
            self.log.write(line + "\n")

    def take(self, path):
        """Whether this request is to be answered 429 (and counts it)."""
        with self.lock:
            if self.armed > 0 and self.match.search(path):
                self.armed -= 1
                self.limited += 1
                return True, self.retry_after, self.message
            return False, None, None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ratelimit-front"

    def log_message(self, *_):
        pass

    def control(self):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        with st.lock:
            if url.path == "/_front/arm":
                st.armed = int(q.get("count", ["1"])[0])
                st.retry_after = q.get("retry_after", [None])[0]
                st.match = re.compile(q.get("match", [DEFAULT_MATCH])[0])
                st.message = q.get("message", [DEFAULT_MESSAGE])[0]
            elif url.path == "/_front/disarm":
                st.armed = 0
            elif url.path == "/_front/hold":
                st.hold = re.compile(q.get("match", ["/blobs/"])[0])
                st.released = threading.Event()
            elif url.path == "/_front/release":
                st.hold = None
                st.released.set()
            body = json.dumps({"armed": st.armed, "limited": st.limited,
                               "held": st.held}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def too_many(self, retry_after, message):
        body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": message,
                                       "detail": None}]}).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self):
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(st.upstream, timeout=120)
        try:
            # Header by header: dockerd sends Accept several times (one per
            # manifest type it takes), and each one counts.
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", st.upstream)
            for k, v in self.headers.items():
                if k.lower() not in HOP and k.lower() not in ("host", "content-length"):
                    conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            self.send_response(resp.status, resp.reason)
            known = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            data = None
            if known is None and self.command != "HEAD":
                # No length from upstream: read it whole, send it with one.
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return resp.status
            if data is not None:
                self.wfile.write(data)
            else:
                while True:
                    chunk = resp.read(64 * 1024)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
            return resp.status
        finally:
            conn.close()

    def handle_any(self):
        st = self.server.state
        if self.path.startswith("/_front/"):
            self.control()
            return
        with st.lock:
            hold = st.hold is not None and st.hold.search(self.path)
            released = st.released
            if hold:
                st.held += 1
        if hold:
            st.record(self.command, self.path, 0, False)
            released.wait(600)
            with st.lock:
                st.held -= 1
        limited, retry_after, message = st.take(self.path)
        if limited:
            self.too_many(retry_after, message)
            st.record(self.command, self.path, 429, True)
            return
        try:
            status = self.forward()
        except (OSError, http.client.HTTPException) as e:
            st.record(self.command, self.path, 502, False)
            msg = str(e).encode()
            try:
                self.send_response(502)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
            except OSError:
                pass
            self.close_connection = True
            return
        st.record(self.command, self.path, status, False)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the real registry")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.state = State(a.upstream, a.log)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(tmp, a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
