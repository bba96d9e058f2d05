"""What the two services share: an HTTP server that says in every response
which release and slot answered (X-Meridian-Version, X-Meridian-Slot), answers
/healthz, and carries out the faults a misbehaving release is built with."""

import http.server
import json
import socket
import sys
import threading
import time
import urllib.parse

from .config import ConfigError, lookup

MAX_BODY = 1 << 20
LOG_LEVELS = ("debug", "info", "warning", "error")


class Route:
    """One path of a service: its handler per method, and whether the
    release's faults apply to it (they never apply to /healthz)."""

    def __init__(self, methods, faulty=True):
        self.methods = methods
        self.faulty = faulty


class Reply:
    """A response: status, JSON payload (or text) and extra headers."""

    def __init__(self, status, payload, headers=None):
        self.status = status
        self.payload = payload
        self.headers = headers or {}

    def body(self):
        if isinstance(self.payload, str):
            return self.payload.encode("utf-8"), "text/plain; charset=utf-8"
        return (json.dumps(self.payload, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"), "application/json"


def error(status, message):
    return Reply(status, {"error": {"message": message, "status": status}})


class Service:
    """A running service's identity and state: its release, slot, settings and
    the request counter that decides which requests a faulty release fails."""

    def __init__(self, release, slot, settings, routes, log_level="info", sleep=time.sleep, log=None):
        self.release = release
        self.slot = slot
        self.settings = settings
        self.routes = routes
        self.log_level = log_level
        self.sleep = sleep
        self.log_stream = log or sys.stderr
        self._count = 0
        self._lock = threading.Lock()

    def logs(self, level):
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.log_level)

    def log(self, level, text):
        if self.logs(level):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.log_stream.write(f"{stamp} {level} {self.release.component} {self.release.version} {self.slot}: {text}\n")
            self.log_stream.flush()

    def headers(self):
        return {"X-Meridian-Component": self.release.component, "X-Meridian-Version": self.release.version, "X-Meridian-Slot": self.slot}

    def next_fails(self):
        with self._lock:
            self._count += 1
            return self.release.faults.fails(self._count)

    def handle(self, method, target, body):
        """The reply to one request; `body` is bytes or None."""
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/healthz":
            if method not in ("GET", "HEAD"):
                return error(405, "use GET or HEAD for /healthz")
            return Reply(200, f"ok {self.release.component} {self.release.version} {self.slot}\n")
        route = self.routes.get(parts.path)
        if route is None:
            return error(404, f"no such path {parts.path}; this service answers {', '.join(sorted(self.routes) + ['/healthz'])}")
        handler = route.methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            return error(405, f"use {' or '.join(sorted(route.methods))} for {parts.path}")
        if route.faulty:
            faults = self.release.faults
            if faults.added_latency:
                self.sleep(faults.added_latency)
            if faults.error_rate and self.next_fails():
                return error(500, f"fault built into release {self.release.version}: error_rate {faults.error_rate}")
        try:
            return handler(query, body)
        except Exception as failure:  # a bug answers 500 and is logged, the server goes on
            self.log("error", f"{method} {parts.path} failed: {failure!r}")
            return error(500, "internal error")


def json_body(body):
    """The request's JSON object, or an error reply."""
    if not body:
        return None, error(400, "send a JSON object as the request body")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as failure:
        return None, error(400, f"the body is not JSON: {failure}")
    if not isinstance(data, dict):
        return None, error(400, "the body must be a JSON object")
    return data, None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meridian-example-stack"
    # Idle keep-alive connections end after this, so a stopping server's
    # threads finish and in-flight requests are answered before it exits.
    timeout = 5

    def setup(self):
        super().setup()
        # Headers and body are two writes; without this, Nagle's algorithm and
        # the client's delayed ACK hold the body back about 40 ms on a
        # keep-alive connection, which the canary analysis would see as latency.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def dispatch(self, method):
        service = self.server.service
        body = None
        length = self.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY:
                self.send(error(413, f"the body may hold at most {MAX_BODY} bytes"), method)
                return
            body = self.rfile.read(int(length))
        reply = service.handle(method, self.path, body)
        self.send(reply, method)
        level = "warning" if reply.status >= 500 else "debug"
        service.log(level, f"{method} {self.path} {reply.status}")

    def send(self, reply, method):
        data, kind = reply.body()
        self.send_response(reply.status)
        headers = dict(self.server.service.headers())
        headers.update(reply.headers)
        headers["Content-Type"] = kind
        headers["Content-Length"] = str(len(data))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, address, port, service):
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.service = service
        super().__init__((address, port), Handler)


def log_level(settings, where, path="log_level"):
    """The rendered configuration's log level (default info)."""
    level = lookup(settings, path, "info", str, where)
    if level not in LOG_LEVELS:
        raise ConfigError(f"{where}: {path}: expected one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return level
