"""`sandbox worker`: Dramatiq worker processes judging on this machine.

One process per CPU by default, each a Dramatiq Worker with one thread and a
prefetch of 1 (a dying machine holds no message beyond the one it runs).  With
--processes N > 1 this process only supervises: it starts N children (fresh
interpreters: `python -m sandbox.service.worker`, never a fork of a threaded
one), restarts one that dies, and passes SIGTERM on.

A job (`judge`): claim the row (fenced, attempts + 1), judge it with this
project's API (the same handlers as the embedded server), write the result
where the attempt is still ours.  An infrastructure failure (a raised error,
XX / status 13, lost files) goes back to the queue, at most MAX_ATTEMPTS
attempts in all, then status 13 with the reason; a user verdict is final.
A heartbeat thread upserts the process's `workers` row and renews its job's
lease; SIGTERM drains: the job in hand finishes, no new one starts.
"""
import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import EXIT_SANDBOX, SandboxError, UsageError
from . import distributed as dist
from .workers import MAX_ATTEMPTS, now


def parse(argv):
    ap = argparse.ArgumentParser(prog="sandbox worker", description="Judge submissions from the queues of a "
                                 "`sandbox serve --broker` API (Dramatiq on Redis, submissions in PostgreSQL).")
    ap.add_argument("--database", default=os.environ.get("SANDBOX_DATABASE"), help="postgresql://... "
                    "(default $SANDBOX_DATABASE): the API server's database")
    ap.add_argument("--broker", default=os.environ.get("SANDBOX_BROKER"), help="redis://... (default "
                    "$SANDBOX_BROKER): the API server's broker")
    ap.add_argument("--processes", type=int, default=None, help="worker processes, one job each (default: the "
                    "number of CPUs)")
    ap.add_argument("--queues", default=None, help="languages this machine takes, comma-separated aliases or ids "
                    "(default: every language available here)")
    ap.add_argument("--languages", default=None, help="language table (default profiles/languages.yaml; the same "
                    "as the API server's)")
    ap.add_argument("--config", default=None, help="the API server's --config file (its limits)")
    ap.add_argument("--allow-callback", action="append", default=[], metavar="HOST",
                    help="enable callbacks (the API server checked each URL against its own --allow-callback)")
    ap.add_argument("--heartbeat", type=float, default=dist.HEARTBEAT, help=f"seconds between beats, each "
                    f"renewing the job's lease (default {dist.HEARTBEAT:g})")
    ap.add_argument("--lease", type=float, default=dist.LEASE, help="seconds a job stays this worker's without a "
                    f"beat (default {dist.LEASE:g}); must exceed 2 x --heartbeat")
    ap.add_argument("--log-json", action="store_true", help="one JSON object per submission on stderr")
    return ap.parse_args(argv)


def main(argv):
    try:
        args = parse(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else EXIT_SANDBOX
    try:
        check(args)
        if args.processes == 1:
            return Process(args).run()
        return supervise(args, argv)
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return e.exit_code


def check(args):
    if not args.database or not args.database.startswith(("postgresql://", "postgres://")):
        raise UsageError("a worker needs the API server's PostgreSQL database", "--database",
                         "give --database postgresql://USER@HOST/DB (or set SANDBOX_DATABASE)")
    if not args.broker or not args.broker.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError("a worker needs the API server's Redis broker", "--broker",
                         "give --broker redis://HOST:6379/0 (or set SANDBOX_BROKER)")
    if args.processes is None:
        args.processes = os.cpu_count() or 1
    if args.processes < 1:
        raise UsageError(f"--processes must be at least 1, not {args.processes}", "--processes", "give 1 or more")
    if args.heartbeat <= 0 or args.lease < 2 * args.heartbeat:
        raise UsageError(f"--lease {args.lease:g} must be at least twice --heartbeat {args.heartbeat:g}: one late "
                         "beat would hand a live worker's job to another", "--lease", "raise --lease")


def supervise(args, argv):
    """N children, restarted when one dies; SIGTERM/SIGINT passed on, then waited for."""
    child_argv = [sys.executable, "-m", "sandbox.service.worker", *_without_processes(argv), "--processes", "1"]
    children, stopping = {}, []

    def stop(sig, frame):
        stopping.append(sig)
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Under a delegated cgroup (the unit's Delegate=yes) a process left in the subtree's root would
    # keep every child's runs from getting cgroups (no processes in an inner cgroup): the
    # supervisor moves into the leaf a runner would use, and its children are born there.
    from .. import cgroup
    delegation = cgroup.discover()
    if delegation:
        cgroup.enable(delegation)
    _check_setup(args)
    print(f"sandbox worker: {args.processes} processes", file=sys.stderr, flush=True)
    for i in range(args.processes):
        children[i] = subprocess.Popen(child_argv)
    while True:
        for i, p in list(children.items()):
            if p.poll() == EXIT_SANDBOX and not stopping:     # a setup error: another start fails alike
                print(f"sandbox worker: process {p.pid} could not start (exit {EXIT_SANDBOX}); stopping",
                      file=sys.stderr, flush=True)
                stop(signal.SIGTERM, None)
                for q in children.values():
                    q.wait()
                return EXIT_SANDBOX
            if p.poll() is not None and not stopping:
                print(f"sandbox worker: process {p.pid} exited {p.returncode}; starting another", file=sys.stderr,
                      flush=True)
                time.sleep(1)
                children[i] = subprocess.Popen(child_argv)
        if stopping and all(p.poll() is not None for p in children.values()):
            return 130 if signal.SIGINT in stopping else 0
        time.sleep(0.2)


def _queues(args, table, log=None):
    """The queues this machine takes: --queues, else every language available here."""
    queues = dist.resolve_queues(args.queues.split(","), table) if args.queues else \
        sorted({dist.queue_name(lang) for lang in table.values() if not lang.unavailable})
    if not queues:         # Dramatiq reads no queues as every queue
        raise UsageError("no language of the table is available on this machine, so it has no queue to take",
                         "--queues", "install a toolchain (GET /languages/all on the API says what is missing)")
    for lang in table.values():
        if log and lang.unavailable and dist.queue_name(lang) in queues:
            # Taken anyway, as asked: each attempt fails as Internal Error and is retried, maybe elsewhere.
            log(f"warning: --queues {dist.queue_name(lang)}: {lang.name} is not available here "
                f"({lang.unavailable}); its submissions will fail here and be retried")
    return queues


def _check_setup(args):
    """What each child would refuse, refused once here: the language table, --queues, the broker
    URL, the database URL (an unreachable database is waited for, as a child would)."""
    from . import languages
    from .pgstore import open_storage
    table = languages.load(args.languages)
    _queues(args, table)
    dist.connect(args.broker, table)
    open_storage(args.database, dist.queue_for(table), waiting=lambda text: print(
        f"sandbox worker: {text}", file=sys.stderr, flush=True)).close()


def _without_processes(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


class Process:
    """One Dramatiq worker process: one thread, prefetch 1, heartbeats."""

    def __init__(self, args):
        self.args = args
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}"
        self.current = None             # (token, attempt) being judged
        self.stopping = threading.Event()

    def log(self, text):
        print(f"sandbox worker {self.id}: {text}", file=sys.stderr, flush=True)

    def run(self):
        import tempfile
        from . import judge0, languages, native
        from .callbacks import Sender
        from .config import JUDGE0, load_overrides
        from .pgstore import open_storage
        cfg = dict(JUDGE0, **(load_overrides(self.args.config) if self.args.config else {}))
        self.table = languages.load(self.args.languages)
        self.queues = _queues(self.args, self.table, self.log)
        self.storage = open_storage(self.args.database, dist.queue_for(self.table), waiting=self.log)
        self.handlers = {"judge0": lambda req: judge0.process(req, self.table, cfg),
                         "native": lambda req: native.process(req, self.table)}
        self.internal = lambda kind, reason: judge0.internal_error(reason) if kind == "judge0" \
            else native.internal(reason)
        self.render = lambda row: judge0.render(row, judge0.DEFAULT_FIELDS, True, self.table)
        self.sender = Sender(cfg["callbacks_max_tries"], cfg["callbacks_timeout"]) if self.args.allow_callback \
            else None
        from dramatiq import Worker
        broker, self.actors = dist.connect(self.args.broker, self.table, self.judge)
        # As serve's: DATA/tmp/PID-..., and a killed worker's is removed by the next start here.
        from .cli import _scratch
        from .config import data_dir
        tempfile.tempdir = self.scratch = _scratch(data_dir())
        worker = Worker(broker, queues=set(self.queues), worker_threads=1)
        worker.queue_prefetch, worker.delay_prefetch = 1, 1
        signal.signal(signal.SIGTERM, lambda *a: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *a: self.stopping.set())
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        worker.start()
        self.log(f"judging queues {', '.join(self.queues)} (heartbeat {self.args.heartbeat:g} s, "
                 f"lease {self.args.lease:g} s)")
        while not self.stopping.wait(1):
            pass
        self.log("draining: finishing the job in hand")
        worker.stop(timeout=24 * 3600_000)     # the job in hand finishes; unstarted messages go back
        try:
            self.storage.forget_worker(self.id)
        except Exception:       # the database is down: the row ages out by itself
            pass
        if self.sender:
            self.sender.stop()
        import shutil
        shutil.rmtree(self.scratch, ignore_errors=True)
        return 0

    def _beat(self):
        import psutil
        psutil.cpu_percent()        # the first call only starts the measurement
        failing = False
        while True:
            current = self.current
            load = {"cpu_percent": psutil.cpu_percent(), "load_average": list(os.getloadavg()),
                    "memory_percent": psutil.virtual_memory().percent, "cpus": psutil.cpu_count()}
            try:
                if current:
                    self.storage.renew(current[0], current[1], self.args.lease)
                self.storage.heartbeat(self.id, self.host, os.getpid(), self.queues,
                                       current[0] if current else None, load)
                if failing:
                    self.log("heartbeats resumed")
                failing = False
            except Exception as e:      # the database is down: the job waits for it, beats resume after
                if not failing:
                    self.log(f"heartbeat failed: {e}")
                failing = True
            if self.stopping.wait(self.args.heartbeat) and self.current is None:
                return

    def judge(self, token):
        """The actor: one message, one (fenced) attempt."""
        wait = lambda fn: dist.waiting_for_database(fn, self.log)      # noqa: E731
        row = wait(lambda: self.storage.claim(token, self.id, self.args.lease))
        if row is None:         # done, deleted, or running under a live lease elsewhere: a duplicate
            return
        attempt, kind = row["attempts"], row["kind"]
        self.current = (token, attempt)
        started = time.monotonic()
        failed = False
        try:
            if attempt > MAX_ATTEMPTS:
                result, failed = self.internal(kind, f"given up after {MAX_ATTEMPTS} attempts; the last: "
                                                     f"{row['last_error']}"), True
            else:
                try:
                    result = self.handlers[kind](row["request"])
                except Exception as e:      # the sandbox's failure or ours, not the user's
                    reason = str(e) if isinstance(e, SandboxError) else f"{type(e).__name__}: {e}"
                    result = self.internal(kind, reason)
                reason = _infrastructure(kind, result)
                if reason and attempt < MAX_ATTEMPTS:
                    if wait(lambda: self.storage.retry(token, attempt, f"attempt {attempt} on {self.id}: {reason}")):
                        self.log(f"{token}: attempt {attempt} failed ({reason}); queued again")
                        self.actors[row["queue"]].send_with_options(args=(token,), delay=1000 * attempt)
                    return
                if reason:
                    failed = True
                    result = self.internal(kind, f"given up after {MAX_ATTEMPTS} attempts; the last: {reason}")
            stored = wait(lambda: self.storage.finish(token, result, now(), attempt, failed))
        finally:
            self.current = None
        self._log(row, result, time.monotonic() - started, stored)
        if stored and self.sender and kind == "judge0" and row["request"].get("callback_url"):
            done = wait(lambda: self.storage.get(token))
            self.sender.send(row["request"]["callback_url"], self.render(done))

    def _log(self, row, result, seconds, stored):
        import json
        line = {"token": row["token"], "queue": row["queue"], "status": result.get("status_id")
                or result.get("verdict"), "time": result.get("time"), "attempt": row["attempts"],
                "seconds": round(seconds, 3), "stored": stored}
        text = json.dumps(line) if self.args.log_json else " ".join(f"{k}={v}" for k, v in line.items())
        print(text if self.args.log_json else f"sandbox worker {self.id}: {text}", file=sys.stderr, flush=True)


def _infrastructure(kind, result):
    """The reason, if this result is the infrastructure's failure (retried), else None (final)."""
    if kind == "judge0" and result.get("status_id") == 13:
        return result.get("message") or "internal error"
    if kind == "native" and result.get("verdict") == "XX":
        return result.get("message") or "internal error"
    return None


def _die_with_parent():
    """PR_SET_PDEATHSIG: a child of a supervisor that was killed does not judge on alone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":         # a child of supervise()
    _die_with_parent()
    sys.exit(main(sys.argv[1:]))
