"""`verify --serve`: observe the cluster every --interval; serve the latest as /metrics, the loop's health as /healthz.

Each observation runs in a child process forked from a single-threaded fork server (so
no lock of the HTTP threads is inherited) and is bounded twice: inside, members still
unanswered at the deadline are reported as unreachable and the rest in full; outside,
a child that overruns its budget by GRACE seconds is killed. A hung member, or a hung
first connection, therefore costs one observation at most and never stalls the loop.
"""

from __future__ import annotations

import datetime as dt
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, TextIO, Tuple

from entrypoint.audit.metrics import REASONS, Snapshot, registry_for, rotation
from entrypoint.audit.observe import COMMAND, OUTCOME, cannot_run, preflight
from entrypoint.audit.options import VerifyOptions
from entrypoint.errors import InputError, Problem, printable

GRACE = 5.0  # seconds a child may overrun its budget (start-up, pickling) before it is killed
POLL = 0.2  # seconds between looks at the stop flag while waiting
HANDLER_TIMEOUT = 10  # seconds an HTTP client may stay idle on a connection
# Modules the fork server imports once, so each observation starts without importing them again.
PRELOAD = ["entrypoint.audit.observe", "entrypoint.audit.findings", "psycopg", "cryptography.x509",
           "entrypoint.pki.chain", "entrypoint.pki.names"]


@dataclass
class Exporter:
    """What the loop learnt and the HTTP threads show; every access holds `lock`."""

    interval: float
    mode: Optional[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    snapshot: Snapshot = field(init=False)
    since: Dict[tuple, dt.datetime] = field(default_factory=dict)
    heartbeat: float = field(default_factory=time.monotonic)  # when the loop last finished an observation

    def __post_init__(self) -> None:
        self.snapshot = Snapshot(mode=self.mode, observations=0, errors={reason: 0 for reason in REASONS})

    def succeeded(self, obs, duration: float) -> None:
        from entrypoint.audit.findings import find

        findings = find(obs)
        with self.lock:
            rows, self.since = rotation(obs, self.since)
            self._count(duration, True)
            snap = self.snapshot
            snap.mode, snap.obs, snap.findings, snap.rotation = obs.mode, obs, findings, rows
            snap.last_success = time.time()

    def failed(self, reason: str, duration: float) -> None:
        """Member metrics go away (they would be stale); the failure is counted and shown."""
        with self.lock:
            self._count(duration, False)
            self.snapshot.obs, self.snapshot.findings, self.snapshot.rotation = None, [], []
            errors = self.snapshot.errors or {}
            errors[reason] = errors.get(reason, 0) + 1

    def _count(self, duration: float, success: bool) -> None:
        self.snapshot.duration, self.snapshot.success = duration, success
        self.snapshot.observations = (self.snapshot.observations or 0) + 1
        self.heartbeat = time.monotonic()

    def current(self) -> Snapshot:
        with self.lock:
            return Snapshot(**vars(self.snapshot))

    def healthy(self) -> bool:
        """The loop is alive: it finished an observation (or started) within three intervals and the grace."""
        with self.lock:
            return time.monotonic() - self.heartbeat <= 3 * self.interval + GRACE


def _observe_child(options: VerifyOptions, conn) -> None:
    """In the child: one observation, sent back as ("ok", Observations) or (reason, scrubbed message)."""
    import io

    from entrypoint.audit.observe import observe
    from entrypoint.audit.redact import Redactor

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends this child
    redactor = Redactor()
    try:
        message: Tuple[str, object] = ("ok", observe(options, redactor, io.StringIO(),
                                                     deadline=time.monotonic() + options.budget))
    except InputError as exc:
        message = ("cannot_run", redactor.scrub(exc.report()))
    except Exception as exc:  # noqa: BLE001 - reported by the loop as an internal error, never a traceback
        message = ("internal", redactor.scrub(f"{type(exc).__name__}: {exc}"))
    try:
        conn.send(message)
    finally:
        conn.close()


def observe_bounded(ctx, options: VerifyOptions, stop: threading.Event) -> Tuple[str, object, float]:
    """One observation in a child process, killed when it overruns; returns (reason or "ok", payload, seconds)."""
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_observe_child, args=(options, sender), daemon=True, name="pck-observe")
    started = time.monotonic()
    child.start()
    sender.close()
    limit = started + options.budget + GRACE
    try:
        while time.monotonic() < limit and not stop.is_set():
            if receiver.poll(POLL):
                kind, payload = receiver.recv()
                return kind, payload, time.monotonic() - started
        if stop.is_set():
            return "stopped", "stopped", time.monotonic() - started
        return ("timeout", f"the observation took longer than {options.budget:g} s (+{GRACE:g}) and was stopped",
                time.monotonic() - started)
    except EOFError:
        child.join(1)
        return ("internal", f"the observing process ended without an answer (exit status {child.exitcode})",
                time.monotonic() - started)
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receiver.close()


def _app(exporter: Exporter):
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry_for(exporter.current))

    def app(environ, start_response):
        try:
            return _route(environ, start_response)
        except Exception as exc:  # noqa: BLE001 - one log line and a 500, never a traceback
            print(f"{COMMAND}: internal error serving {printable(environ.get('PATH_INFO', ''))}: "
                  f"{type(exc).__name__}: {printable(exc)}", file=sys.stderr, flush=True)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"internal error; see the exporter's log\n"]

    def _route(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return [b"".join(metrics(environ, start_response))]
        if path == "/healthz":
            ok = exporter.healthy()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"the observation loop has not finished an observation for too long\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /healthz are served here\n"]

    return app


def listen(host: str, port: int, app):
    """Bind the HTTP server; raises InputError (exit 2) when the address cannot be used."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    where = f"--serve {host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise cannot_run(where, f"cannot resolve {host!r} ({printable(exc)})",
                         "give an address of this host, e.g. 0.0.0.0, 127.0.0.1 or ::") from exc

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = family

        def handle_error(self, request, client_address):  # a broken connection: one line, no traceback
            print(f"{COMMAND}: HTTP request from {client_address[0]} failed: {printable(sys.exc_info()[1])}",
                  file=sys.stderr, flush=True)

    class Quiet(WSGIRequestHandler):
        timeout = HANDLER_TIMEOUT

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

    try:
        return make_server(host, port, app, Server, handler_class=Quiet)
    except OSError as exc:
        raise cannot_run(where, f"cannot listen there ({exc.strerror or exc})",
                         "choose a free port, and an address of this host (0.0.0.0 for every interface)") from exc


def serve(options: VerifyOptions, err: TextIO = sys.stderr) -> int:
    """Check the flags, listen, then observe every --interval until SIGTERM or SIGINT; returns 0. Raises InputError."""
    preflight(options)
    try:
        import multiprocessing

        import prometheus_client  # noqa: F401 - checked here so a missing library is an exit 2, not a crash later
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise InputError([Problem("verify --serve", f"{exc.name} is not installed",
                                  "pip install 'patroni-citus-k8s[ops]'")], COMMAND, OUTCOME) from exc
    exporter = Exporter(options.every, options.mode)
    host, port = options.listen
    server = listen(host, port, _app(exporter))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
                     name="pck-metrics-http").start()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    print(f"{COMMAND}: serving /metrics and /healthz on {host}:{port}, observing every {options.every:g} s "
          f"(each observation bounded to {options.budget:g} s)", file=err, flush=True)
    try:
        _loop(ctx, options, exporter, stop, err)
    finally:
        server.shutdown()
        server.server_close()
    return 0


REPEAT_EVERY = 20  # a failure that stays the same is logged again every this many observations


def _loop(ctx, options: VerifyOptions, exporter: Exporter, stop: threading.Event, err: TextIO) -> None:
    last, repeats = None, 0  # the last failure's line and how often it came in a row
    while not stop.is_set():
        started = time.monotonic()
        kind, payload, duration = observe_bounded(ctx, options, stop)
        if kind == "stopped":
            break
        if kind == "ok":
            exporter.succeeded(payload, duration)
            if last is not None:
                print(f"{COMMAND}: observations succeed again", file=err, flush=True)
            last, repeats = None, 0
        else:
            exporter.failed(kind, duration)
            line = f"{COMMAND}: observation failed ({kind}): {printable(payload)}"
            repeats = repeats + 1 if line == last else 0
            if repeats % REPEAT_EVERY == 0:
                print(line + (f" (again, {repeats + 1} in a row)" if repeats else ""), file=err, flush=True)
            last = line
        stop.wait(max(0.0, options.every - (time.monotonic() - started)))
