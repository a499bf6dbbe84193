"""`sandbox serve`: options -> settings -> storage, languages, workers, HTTP server.

argparse is fine here: this is not the hot path of `sandbox run`.  A server
bound to anything but loopback without a token would let anyone on the network
run code here, so that is refused before anything starts.
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile

from ..errors import EXIT_SANDBOX, SandboxError, UsageError
from .config import LOOPBACK, Settings, load_overrides


def parse(argv):
    ap = argparse.ArgumentParser(prog="sandbox serve", description="A Judge0-compatible judging service "
                                 "(and /api/v1) over rootless sandboxes.")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else needs "
                    "--auth-token)")
    ap.add_argument("--port", type=int, default=2358, help="TCP port (default 2358, Judge0's)")
    ap.add_argument("--workers", type=int, default=None, help="worker threads (default: the number of CPUs)")
    ap.add_argument("--database", default=None, help="SQLite file (default $XDG_DATA_HOME/sandbox/service/"
                    "submissions.sqlite3); its directory is the only one the service writes; or postgresql://... "
                    "(needed with --broker)")
    ap.add_argument("--broker", default=None, help="redis://...: API only, submissions go to `sandbox worker` "
                    "processes on any machine through Dramatiq queues (one per language)")
    ap.add_argument("--sweep-interval", type=float, default=None, help="with --broker: seconds between sweeps "
                    "that re-send submissions whose worker's lease expired (default 5)")
    ap.add_argument("--requeue-after", type=float, default=None, help="with --broker: seconds a queued "
                    "submission may wait unclaimed before it is sent again (default 300)")
    ap.add_argument("--auth-token", default=os.environ.get("SANDBOX_AUTH_TOKEN"),
                    help="require this token in X-Auth-Token (default $SANDBOX_AUTH_TOKEN)")
    ap.add_argument("--languages", default=None, help="language table (default profiles/languages.yaml)")
    ap.add_argument("--max-queue", type=int, default=None, help="submissions waiting at most (503 past it; "
                    "default 100, Judge0's)")
    ap.add_argument("--config", default=None, help="YAML file of config_info keys (defaults and maxima) and "
                    "max_body_size")
    ap.add_argument("--allow-callback", action="append", default=[], metavar="HOST",
                    help="let callback_url PUT finished submissions to HOST (repeatable; off by default: a callback "
                         "is a request this server makes for a client)")
    ap.add_argument("--log-json", action="store_true", help="one JSON object per submission on stderr")
    return ap.parse_args(argv)


def main(argv):
    try:
        args = parse(argv)
    except SystemExit as e:       # argparse already said what was wrong
        return 0 if e.code == 0 else EXIT_SANDBOX
    try:
        return serve(args)
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return e.exit_code


def serve(args):
    if args.host not in LOOPBACK and not args.auth_token:
        raise UsageError(f"refusing to listen on {args.host} without a token: anyone who reaches it could run "
                         "code on this machine", "--host", "add --auth-token TOKEN (or set SANDBOX_AUTH_TOKEN), "
                         "or listen on 127.0.0.1")
    for name, value in (("--workers", args.workers), ("--max-queue", args.max_queue)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}", name, f"give {name} 1 or more")
    postgres = (args.database or "").startswith(("postgresql://", "postgres://"))
    if args.broker and not postgres:
        raise UsageError("--broker needs a database every machine reaches", "--database",
                         "give --database postgresql://USER@HOST/DB (the workers use the same one)")
    if not args.broker and (args.sweep_interval is not None or args.requeue_after is not None):
        raise UsageError("--sweep-interval and --requeue-after apply to --broker only", "--broker",
                         "add --broker redis://..., or drop them")
    for name, value in (("--sweep-interval", args.sweep_interval), ("--requeue-after", args.requeue_after)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be positive, not {value:g}", name, f"give {name} a number of seconds")
    settings = Settings(host=args.host, port=args.port, workers=args.workers, database=args.database,
                        auth_token=args.auth_token, languages=args.languages, max_queue=args.max_queue,
                        log_json=args.log_json, allow_callback=args.allow_callback, overrides=load_overrides(args.config) if args.config else None)
    import uvicorn
    from . import app as app_mod, judge0, languages, native
    from .callbacks import Sender
    from .storage import Storage
    from .workers import Pool
    table = languages.load(settings.languages)
    if postgres:
        storage = _postgres(settings.database, table)
    else:
        try:
            storage = Storage(settings.database)
        except OSError as e:
            raise UsageError(f"cannot create the database {settings.database}: {e.strerror}", "--database",
                             "give a path in a directory you can write") from None
    actors = None
    if args.broker:             # before anything is written: a bad URL is refused with nothing left behind
        from . import distributed
        _, actors = distributed.connect(args.broker, table)
    scratch = _scratch(settings.data_dir)
    tempfile.tempdir = scratch
    cfg = settings.judge0

    def internal(kind, reason):
        return judge0.internal_error(reason) if kind == "judge0" else native.internal(reason)

    sender = Sender(cfg["callbacks_max_tries"], cfg["callbacks_timeout"]) if settings.allow_callback else None

    def finished(row):
        """Judge0's callback: the default fields, base64, PUT to the submission's callback_url."""
        if sender and row["kind"] == "judge0" and row["request"].get("callback_url"):
            sender.send(row["request"]["callback_url"], judge0.render(row, judge0.DEFAULT_FIELDS, True, table))

    if args.broker:     # API only: the workers judge, and send the callbacks
        pool = distributed.Dispatcher(storage, actors, args.sweep_interval or distributed.SWEEP,
                                      args.requeue_after or distributed.REQUEUE_AFTER)
    else:
        pool = Pool(storage, {"judge0": lambda req: judge0.process(req, table, cfg),
                              "native": lambda req: native.process(req, table), "internal": internal},
                    settings.workers, settings.log_json, finished)
    state = app_mod.State(settings, storage, table, pool, scratch)
    application = app_mod.create(state)
    listener = _listen(args.host, args.port)        # a port in use is our error (125), not uvicorn's exit 1
    pool.start()
    offered = ", ".join(f"{lang.id}" for lang in table.values() if not lang.unavailable)
    from .pgstore import redact as _redact
    judging = f"API only, broker {_redact(args.broker)}" if args.broker else f"{settings.workers} workers"
    print(f"sandbox serve: listening on http://{_url_host(args.host)}:{args.port} ({judging}, "
          f"database {_redact(settings.database)}; languages {offered})", file=sys.stderr, flush=True)
    # After a stop signal: 5 s for requests in flight (a wait=true whose submission will not be
    # started now gets its connection closed; the submission runs after the next start).
    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # uvicorn stops on SIGTERM/SIGINT, then raises the signal again under the handler it found at
    # start; with ours there, that ends server.run() instead of the process, so the workers finish
    # the submission they are on and the queue stays in the database.
    signals = []

    def stop(sig, frame):
        signals.append(sig)
        server.should_exit = True
        pool.drain()            # start nothing new while the server winds down

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        stopped = pool.stop()
        if sender:
            sender.stop()
        if stopped:             # else a worker still writes; the process ends and SQLite's WAL keeps it whole
            storage.close()
            shutil.rmtree(scratch, ignore_errors=True)
    return 130 if signal.SIGINT in signals else 0


def _postgres(url, table):
    from .distributed import queue_for
    from .pgstore import open_storage
    return open_storage(url, queue_for(table))


def _scratch(data_dir):
    """This server's scratch directory, DATA/tmp/PID-XXXX: everything the service writes goes under
    its data directory, per-submission files included.  A server that was killed leaves its own
    behind; the next start removes the ones whose process is gone."""
    root = os.path.join(data_dir, "tmp")
    os.makedirs(root, mode=0o700, exist_ok=True)
    for name in os.listdir(root):
        pid = name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listen(host, port):
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP,
    # and an accepted socket inherits the listener's; with Nagle on, each small response waits for
    # the client's delayed ACK, ~40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}", "--port",
                         "choose another --port (or stop what listens there)") from None
    sock.set_inheritable(False)
    return sock


def _url_host(host):
    return f"[{host}]" if ":" in host else host
