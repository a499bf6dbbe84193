"""Judging across machines: Dramatiq on Redis carries tokens, PostgreSQL holds the truth.

`sandbox serve --broker redis://...` stores a submission, then sends its token
to the language's queue (`queue_name`); `sandbox worker` (worker.py) consumes
those queues.  Dramatiq acknowledges a message only after the actor returns,
and returns a dead worker's unacknowledged messages to their queue; on top of
that the database decides: a message is only a hint to look at a row, and the
fenced claim in pgstore.py makes a duplicate harmless.  Dramatiq's own retries
are off (max_retries=0): redeliveries after a crash bypass its retry counter
anyway, so the attempt counter in the row is the one limit (MAX_ATTEMPTS).

Recovery settings (README "Several machines" has the bound they give):
    worker --heartbeat 2 s   a worker's beat: its `workers` row, and the lease of its job renewed
    worker --lease 10 s      a running job whose lease is not renewed for this long is its dead worker's
    serve --sweep-interval 5 s   the sweeper's period: expired leases back to the queue, re-sent
    serve --requeue-after 300 s  a queued submission nobody claimed for this long is sent again
                                 (a message lost with Redis) if a live worker serves its queue;
                                 a duplicate costs a refused claim
Dramatiq's own: heartbeat_timeout 30 s, maintenance_chance 10,000 per million (its redelivery is
a second path, slower than the sweeper; the reference's settings), prefetch 1, one thread per process.
"""
import sys
import threading
import time

HEARTBEAT = 2.0
LEASE = 10.0
SWEEP = 5.0
REQUEUE_AFTER = 300.0
DEAD_AFTER_BEATS = 3            # a worker missing this many beats is shown dead in /api/v1/workers
TIME_LIMIT_MS = 30 * 60_000     # Dramatiq's TimeLimit: far above any submission (the sandbox enforces limits)
MAX_AGE_MS = 24 * 3600_000      # a message older than this is dropped (the sweeper re-sends what still matters)


def queue_name(lang):
    """A language's queue: its first alias (c, cpp, python...) or lang<id>."""
    return lang.aliases[0] if lang.aliases else f"lang{lang.id}"


def language_of(kind, request):
    return request["language_id"] if kind == "judge0" else request["language"]


def queue_for(table):
    """queue_of(kind, request) over a language table."""
    def queue_of(kind, request):
        lang = table.get(language_of(kind, request))
        return queue_name(lang) if lang else "unknown"
    return queue_of


def resolve_queues(names, table):
    """--queues c,cpp,py: any alias or id of a language -> its queue names."""
    from ..errors import UsageError, did_you_mean
    known = {}
    for lang in table.values():
        for ref in [str(lang.id), *lang.aliases]:
            known[ref] = queue_name(lang)
    out = []
    for name in names:
        name = name.strip().lower()
        if name not in known:
            raise UsageError(f"unknown language {name!r}", "--queues", did_you_mean(name, known, "give aliases "
                             "or Judge0 ids from profiles/languages.yaml, comma-separated"))
        if known[name] not in out:
            out.append(known[name])
    return out


def connect(url, table, judge=None):
    """The Redis broker and one actor per language queue.  judge(token) is the actor's body in a
    worker; the API only sends, so there it is never called."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from ..errors import UsageError
    try:
        broker = RedisBroker(url=url, heartbeat_timeout=30_000, maintenance_chance=10_000,
                             dead_message_ttl=7 * 86_400_000)
    except ValueError as e:     # redis-py parses the URL here (connecting comes later, and is retried)
        raise UsageError(f"bad broker URL: {e}", "--broker", "give redis://[:PASSWORD@]HOST[:PORT]/DB") from None
    dramatiq.set_broker(broker)
    body = judge or _never
    actors = {}
    for lang in table.values():
        q = queue_name(lang)
        if q not in actors:
            actors[q] = dramatiq.actor(body, actor_name=f"judge_{q}", queue_name=q, broker=broker,
                                       max_retries=0, time_limit=TIME_LIMIT_MS, max_age=MAX_AGE_MS)
    return broker, actors


def _never(token):
    raise RuntimeError("the API server does not judge")


class Dispatcher:
    """The distributed counterpart of workers.Pool, for the API server: what app.py asks of a pool
    (submit, pending, counts for /workers, wait=true) answered from the database and the broker."""

    def __init__(self, storage, actors, sweep_interval=SWEEP, requeue_after=REQUEUE_AFTER, log=None):
        self.storage, self.actors = storage, actors
        self.sweep_interval, self.requeue_after = sweep_interval, requeue_after
        self.log = log or (lambda text: print(f"sandbox serve: {text}", file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiters = {}
        self._threads = []

    # what app.py reads
    @property
    def count(self):
        return max(1, sum(1 for w in self._workers() if w["alive"]))

    @property
    def busy(self):
        return sum(1 for w in self._workers() if w["alive"] and w["current"])

    @property
    def failed(self):
        return sum(c["failed"] for c in self.storage.queue_counts().values())

    def _workers(self):
        return self.storage.workers(HEARTBEAT * DEAD_AFTER_BEATS)

    def start(self):
        for name, fn in (("sweeper", self._sweeper), ("waiters", self._poll_waiters)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def drain(self):
        self._stop.set()

    def stop(self, timeout=5):
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return True

    def pending(self):
        return self.storage.pending()

    def submit(self, tokens, on_done=None):
        """Send each stored submission to its queue.  A send that fails (Redis down) is not an error
        of the request: the row is stored, and the sweeper sends it after requeue_after."""
        if on_done:
            with self._lock:
                for t in tokens:
                    self._waiters.setdefault(t, []).append(on_done)
        self._send(self.storage.queue_of_token(list(tokens)))

    def _send(self, pairs):
        for token, queue in pairs:
            actor = self.actors.get(queue)
            if actor is None:
                self.log(f"no queue {queue!r} for {token}: the worker that takes it needs the same language table")
                continue
            try:
                actor.send(token)
            except Exception as e:     # redis down or refusing: the sweeper re-sends it
                self.log(f"could not enqueue {token} on {queue} ({type(e).__name__}: {e}); "
                         f"the sweeper re-sends it within {self.requeue_after:g} s")

    def call(self, fn, on_done):
        from .app import error
        on_done(error(501, "this server is API only (--broker): it runs no sandbox itself",
                      fix="POST /api/v1/submissions, which a worker judges"))

    def queue_rows(self):
        """Judge0's /workers: one row per queue, from the live workers' heartbeats and the rows."""
        counts = self.storage.queue_counts()
        workers = [w for w in self._workers() if w["alive"]]
        queues = sorted(set(counts) | {q for w in workers for q in w["queues"]})
        rows = []
        for q in queues:
            serving = [w for w in workers if q in w["queues"]]
            working = sum(1 for w in serving if w["current"])
            c = counts.get(q, {"queued": 0, "failed": 0})
            rows.append({"queue": q, "size": c["queued"], "available": len(serving), "idle": len(serving) - working,
                         "working": working, "paused": 0, "failed": c["failed"]})
        return rows

    def worker_list(self):
        return [{"id": w["id"], "host": w["host"], "pid": w["pid"], "queues": w["queues"], "current": w["current"],
                 "alive": w["alive"], "last_beat_seconds_ago": round(float(w["beat_age"]), 3), "load": w["load"],
                 "started_at": w["started_at"].isoformat()} for w in self._workers()]

    # the background threads
    def _sweeper(self):
        from .pgstore import Unavailable
        while not self._stop.wait(self.sweep_interval):
            try:
                pairs = self.storage.sweep(self.requeue_after, HEARTBEAT * DEAD_AFTER_BEATS)
            except Unavailable:
                continue            # the database is back when it is back; nothing is lost meanwhile
            except Exception as e:  # a bug of ours must not end the sweeping for good: said, and retried
                self.log(f"sweeper: internal error: {type(e).__name__}: {e}")
                continue
            if pairs:
                self.log(f"sweeper: re-sending {len(pairs)} submission(s): {', '.join(t for t, _ in pairs[:5])}"
                         f"{' ...' if len(pairs) > 5 else ''}")
                self._send(pairs)

    def _poll_waiters(self):
        """wait=true across machines: the row says when it is done (every 0.1 s)."""
        from .pgstore import Unavailable
        while not self._stop.wait(0.1):
            with self._lock:
                tokens = list(self._waiters)
            if not tokens:
                continue
            try:
                rows = self.storage.get_many(tokens)
            except Unavailable:
                continue
            except Exception as e:  # as the sweeper's
                self.log(f"wait=true: internal error: {type(e).__name__}: {e}")
                continue
            for token, row in zip(tokens, rows):
                if row is None or row["state"] == "done":
                    with self._lock:
                        callbacks = self._waiters.pop(token, [])
                    for cb in callbacks:
                        cb(token)


def waiting_for_database(fn, log=None):
    """fn() until the database answers: a worker waits out an outage instead of failing the job."""
    from .pgstore import Unavailable
    said = False
    while True:
        try:
            return fn()
        except Unavailable as e:
            if not said and log:
                log(f"{e}; waiting for it")
                said = True
            time.sleep(0.5)
