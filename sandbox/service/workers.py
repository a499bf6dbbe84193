"""The queue and the worker threads.

The database is the truth, the in-memory queue only an index into it: a
submission is stored (state queued) before its token is returned, a worker
claims it (running, attempts + 1) before running it, and writes the result
(done) after.  A restart re-queues everything not done, in arrival order, so a
server killed at any moment loses nothing it accepted; a submission that was
running is started afresh.  One whose runs killed the server MAX_ATTEMPTS times
is given up with Internal Error instead of taking the server down for ever.

Workers are threads calling the judging API in-process: the sandbox's pre-exec
work happens in its C launcher (posix_spawn), so this is safe from threads.
"""
import json
import queue
import sys
import threading
import time
from datetime import datetime, timezone

MAX_ATTEMPTS = 3


def now():
    """Judge0's timestamp form, which the official SDK parses with %Y-%m-%dT%H:%M:%S.%fZ."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Pool:
    def __init__(self, storage, handlers, count, log_json=False, finished=None):
        """handlers: {kind: fn(request) -> result dict}; a handler that raises gives `internal(kind, e)`.
        finished(row): called with each stored result (the callbacks)."""
        self.storage, self.handlers, self.count, self.log_json = storage, handlers, count, log_json
        self.finished = finished
        self.queue = queue.Queue()
        self.busy = 0
        self._lock = threading.Lock()
        self._waiters = {}          # token -> [callback]: wait=true requests
        self._threads = []
        self._stopping = threading.Event()
        self.failed = 0

    def start(self):
        for token in self.storage.unfinished():
            self.queue.put(token)
        for i in range(self.count):
            t = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def drain(self):
        """Start no new submission from now on (what is queued stays queued in the database)."""
        self._stopping.set()

    def stop(self, timeout=30):
        """Let each worker finish the submission it is on, and start no other: what is still queued
        stays queued in the database for the next start.  True if every worker has stopped."""
        self._stopping.set()
        for _ in self._threads:
            self.queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def pending(self):
        return self.queue.qsize()

    def queue_rows(self):
        """Judge0's /workers: one queue here, served by the threads."""
        busy = self.busy
        return [{"queue": "sandbox", "size": self.pending(), "available": self.count, "idle": self.count - busy,
                 "working": busy, "paused": 0, "failed": self.failed}]

    def worker_list(self):
        """/api/v1/workers: this server's threads, as one worker."""
        import os
        import socket
        import psutil
        return [{"id": f"{socket.gethostname()}:{os.getpid()}", "host": socket.gethostname(), "pid": os.getpid(),
                 "queues": ["sandbox"], "threads": self.count, "busy": self.busy, "alive": True,
                 "load": {"cpu_percent": psutil.cpu_percent(), "load_average": list(os.getloadavg()),
                          "memory_percent": psutil.virtual_memory().percent, "cpus": psutil.cpu_count()}}]

    def submit(self, tokens, on_done=None):
        """Queue stored submissions; on_done(token) is called from the worker when each is done."""
        if on_done:
            with self._lock:
                for t in tokens:
                    self._waiters.setdefault(t, []).append(on_done)
        for t in tokens:
            self.queue.put(t)

    def call(self, fn, on_done):
        """Run fn() (a transient job: /api/v1/run) in a worker; on_done(result or exception)."""
        self.queue.put((fn, on_done))

    def _work(self):
        while True:
            item = self.queue.get()
            if item is None or self._stopping.is_set():
                return
            with self._lock:
                self.busy += 1
            try:
                if isinstance(item, tuple):
                    fn, on_done = item
                    try:
                        value = fn()
                    except Exception as e:       # handed to the request, which answers with it
                        value = e
                    on_done(value)
                else:
                    self._one(item)
            finally:
                with self._lock:
                    self.busy -= 1

    def _one(self, token):
        row = self.storage.claim(token)
        if row is None:                 # deleted while queued, or a duplicate entry in the queue
            return self._notify(token)
        started = time.monotonic()
        kind = row["kind"]
        if row["attempts"] > MAX_ATTEMPTS:
            result = self.handlers["internal"](kind, f"the server stopped {MAX_ATTEMPTS} times while running this "
                                                     "submission; it was given up")
        else:
            try:
                result = self.handlers[kind](row["request"])
            except Exception as e:      # a failure of the sandbox or of ours: status 13 with the reason
                from ..errors import SandboxError
                reason = str(e) if isinstance(e, SandboxError) else f"{type(e).__name__}: {e}"
                result = self.handlers["internal"](kind, reason)
                self.failed += 1
        self.storage.finish(token, result, now(), row["attempts"])
        self._log(row, result, time.monotonic() - started)
        self._notify(token)
        if self.finished:
            self.finished(self.storage.get(token))

    def _notify(self, token):
        with self._lock:
            callbacks = self._waiters.pop(token, [])
        for cb in callbacks:
            cb(token)

    def _log(self, row, result, seconds):
        """One line per submission on stderr: token, language, status, times."""
        line = {"token": row["token"], "kind": row["kind"], "language": row["request"].get("language_id")
                or row["request"].get("language"), "status": result.get("status_id") or result.get("verdict"),
                "time": result.get("time"), "wall_time": result.get("wall_time"), "memory_kb": result.get("memory"),
                "attempt": row["attempts"], "seconds": round(seconds, 3)}
        if self.log_json:
            text = json.dumps(line)
        else:
            text = " ".join(f"{k}={v}" for k, v in line.items())
        print(f"sandbox serve: {text}" if not self.log_json else text, file=sys.stderr, flush=True)
