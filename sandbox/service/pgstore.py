"""Submissions in PostgreSQL: the one source of truth when several machines judge.

The same interface as storage.Storage (whose statements it shares: `_execute`
turns `?` into psycopg's `%s`, the only difference those statements have),
plus what distributed judging needs:

* fenced claims: `claim` counts an attempt (attempts + 1) and takes the
  submission only if it is queued, or running under a lease that expired (its
  worker died).  `finish`/`retry` write only `WHERE attempts = <mine> AND
  state = 'running'`, so a stale attempt's write is refused and a redelivered
  duplicate never overwrites a newer result.
* leases: a running submission's `lease_until` is renewed by its worker's
  heartbeat; the sweeper (`sweep`) puts back in the queue a running one whose
  lease expired, and re-sends a queued one nobody claimed for `requeue_after`
  (a message lost with Redis).
* worker rows: each worker process upserts its heartbeat (host, queues, job,
  load) into `workers`.

Every time is the database server's clock (`now()`), never a machine's own:
workers on several machines compare leases against one clock.

Why a dialect shim and not SQLAlchemy Core: the shared interface is eight
short statements that differ only by placeholder; SQLAlchemy would put a
large dependency and a second code path (its engine) under the embedded SQLite
server, which is tested and must stay as it is, to save a dozen characters.

One connection per process, guarded by a lock, autocommit: each statement is
short.  A connection that fails is dropped and the error becomes
`Unavailable` (the API answers 503 with Retry-After; a worker waits); the next
call connects again.
"""
import json
import threading

from .storage import Storage, _row

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token       TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,                     -- queued | running | done
    attempts    INTEGER NOT NULL DEFAULT 0,        -- claims so far: the fence of every write
    request     TEXT NOT NULL,
    result      TEXT,
    created_at  TEXT NOT NULL,                     -- Judge0's timestamp strings, as the API renders them
    finished_at TEXT,
    queue       TEXT NOT NULL,                     -- the language's Dramatiq queue
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now(),-- last enqueued
    claimed_at  TIMESTAMPTZ,                       -- last claimed
    lease_until TIMESTAMPTZ,                       -- running: renewed by the claiming worker's heartbeat
    worker      TEXT,                              -- the worker holding the lease
    last_error  TEXT,                              -- why the last attempt did not finish it
    failed      BOOLEAN NOT NULL DEFAULT false,    -- given up: Internal Error after the last attempt
    done_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS submissions_state ON submissions (state, seq);
CREATE INDEX IF NOT EXISTS submissions_failed ON submissions (queue) WHERE failed;
CREATE TABLE IF NOT EXISTS workers (
    id          TEXT PRIMARY KEY,                  -- host:pid
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT NOT NULL,                     -- comma-separated
    current     TEXT,                              -- the submission it is judging
    load        TEXT,                              -- JSON: cpu_percent, load average, memory
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    beat_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


class Unavailable(Exception):
    """The database cannot be reached: try again later (503 + Retry-After, or a worker's wait)."""


class PgStorage(Storage):
    RETRY_AFTER = 2         # seconds a client is told to wait while the database is unreachable

    def __init__(self, url, queue_of):
        """queue_of(kind, request) -> the queue a new submission goes to."""
        import psycopg
        self._psycopg, self.url, self.queue_of = psycopg, url, queue_of
        self._lock = threading.RLock()
        self._db = None
        with self._lock:
            # Several processes may start at once: CREATE ... IF NOT EXISTS is not safe
            # concurrently in PostgreSQL, an advisory lock makes it so.
            with self._transaction():
                self._execute("SELECT pg_advisory_xact_lock(727274)")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._execute(statement)

    # ------------------------------------------------------------ the shim

    def _connection(self):
        if self._db is None or self._db.closed:
            from psycopg.rows import dict_row
            try:
                self._db = self._psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                                 connect_timeout=3)
            except self._psycopg.OperationalError as e:
                raise Unavailable(f"the database is unreachable: {_first_line(e)}") from None
        return self._db

    def _execute(self, sql, args=()):
        db = self._connection()
        try:
            return db.execute(sql.replace("%", "%%").replace("?", "%s"), args)
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as e:
            self._drop()
            raise Unavailable(f"the database is unreachable: {_first_line(e)}") from None

    def _drop(self):
        try:
            self._db.close()
        except Exception:       # already broken: nothing to close cleanly
            pass
        self._db = None

    def _transaction(self):
        db = self._connection()
        outer = self

        class Tx:
            def __enter__(self):
                self.tx = db.transaction()
                try:
                    return self.tx.__enter__()
                except (outer._psycopg.OperationalError, outer._psycopg.InterfaceError) as e:
                    outer._drop()
                    raise Unavailable(f"the database is unreachable: {_first_line(e)}") from None

            def __exit__(self, *exc):
                try:
                    return self.tx.__exit__(*exc)
                except (outer._psycopg.OperationalError, outer._psycopg.InterfaceError) as e:
                    outer._drop()
                    raise Unavailable(f"the database is unreachable: {_first_line(e)}") from None
        return Tx()

    def close(self):
        with self._lock:
            if self._db is not None:
                self._drop()

    def _one(self, sql, args=()):
        with self._lock:
            r = self._execute(sql, args).fetchone()
        return _row(r) if r else None

    # ------------------------------------------------------------ the shared interface

    def add(self, rows):
        with self._lock, self._transaction():
            for t, k, req, at in rows:
                self._execute("INSERT INTO submissions (token, kind, state, request, created_at, queue) "
                              "VALUES (?, ?, 'queued', ?, ?, ?)", (t, k, json.dumps(req), at, self.queue_of(k, req)))

    def claim(self, token, worker="embedded", lease=3600.0):
        """Take the submission for one more attempt: if it is queued, or running under an expired
        lease (its worker died: that is said in last_error).  The row, attempts counted; else None."""
        return self._one(
            "UPDATE submissions SET "
            " last_error = CASE WHEN state = 'running' THEN 'worker ' || coalesce(worker, 'unknown') || "
            "   ' stopped while running it (its lease expired)' ELSE last_error END, "
            " state = 'running', attempts = attempts + 1, worker = ?, claimed_at = now(), "
            " lease_until = now() + make_interval(secs => ?) "
            "WHERE token = ? AND (state = 'queued' OR (state = 'running' AND lease_until < now())) RETURNING *",
            (worker, float(lease), token))

    def finish(self, token, result, finished_at, attempt, failed=False):
        with self._lock:
            cur = self._execute("UPDATE submissions SET state = 'done', result = ?, finished_at = ?, failed = ?, "
                                "done_at = now(), lease_until = NULL WHERE token = ? AND attempts = ? "
                                "AND state = 'running'", (json.dumps(result), finished_at, failed, token, attempt))
            return cur.rowcount == 1

    def unfinished(self):
        """The embedded server over PostgreSQL (no broker): as storage.Storage."""
        with self._lock:
            self._execute("UPDATE submissions SET state = 'queued' WHERE state = 'running'")
            return [r["token"] for r in self._execute("SELECT token FROM submissions WHERE state = 'queued' "
                                                      "ORDER BY seq").fetchall()]

    # ------------------------------------------------------------ distributed judging

    def retry(self, token, attempt, reason):
        """Attempt `attempt` failed for a reason of the infrastructure: back to the queue (fenced)."""
        with self._lock:
            cur = self._execute("UPDATE submissions SET state = 'queued', last_error = ?, sent_at = now(), "
                                "lease_until = NULL WHERE token = ? AND attempts = ? AND state = 'running'",
                                (reason, token, attempt))
            return cur.rowcount == 1

    def renew(self, token, attempt, lease):
        with self._lock:
            self._execute("UPDATE submissions SET lease_until = now() + make_interval(secs => ?) "
                          "WHERE token = ? AND attempts = ? AND state = 'running'", (float(lease), token, attempt))

    def queue_of_token(self, tokens):
        with self._lock:
            return [(r["token"], r["queue"]) for r in self._execute(
                f"SELECT token, queue FROM submissions WHERE token IN ({','.join('?' * len(tokens))}) "
                "ORDER BY seq", tokens).fetchall()]

    def sweep(self, requeue_after, dead_after):
        """The sweeper's pass: running submissions whose lease expired go back to the queue, and
        queued ones nobody claimed for requeue_after seconds are marked sent again, if a live worker
        serves their queue (else the message is waiting, not lost, and re-sending it would only pile
        up duplicates; once a worker comes, requeue_after later it is sent if it was lost).
        [(token, queue)] to send."""
        with self._lock:
            return [(r["token"], r["queue"]) for r in self._execute(
                "UPDATE submissions SET "
                " last_error = CASE WHEN state = 'running' THEN 'worker ' || coalesce(worker, 'unknown') || "
                "   ' stopped while running it (its lease expired)' ELSE last_error END, "
                " state = 'queued', sent_at = now(), lease_until = NULL "
                "WHERE (state = 'running' AND lease_until < now()) "
                "   OR (state = 'queued' AND sent_at < now() - make_interval(secs => ?) AND EXISTS ("
                "       SELECT 1 FROM workers w WHERE w.beat_at >= now() - make_interval(secs => ?) "
                "       AND ',' || w.queues || ',' LIKE '%,' || submissions.queue || ',%')) "
                "RETURNING token, queue", (float(requeue_after), float(dead_after))).fetchall()]

    def heartbeat(self, worker, host, pid, queues, current, load):
        with self._lock:
            self._execute("INSERT INTO workers (id, host, pid, queues, current, load) VALUES (?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT (id) DO UPDATE SET queues = EXCLUDED.queues, current = EXCLUDED.current, "
                          "load = EXCLUDED.load, beat_at = now()",
                          (worker, host, pid, ",".join(queues), current, json.dumps(load)))

    def forget_worker(self, worker):
        with self._lock:
            self._execute("DELETE FROM workers WHERE id = ?", (worker,))

    def workers(self, dead_after):
        """Workers whose last beat is at most dead_after seconds old (the others are forgotten)."""
        with self._lock:
            self._execute("DELETE FROM workers WHERE beat_at < now() - make_interval(secs => ?)",
                          (float(dead_after) * 10,))
            rows = self._execute("SELECT *, beat_at >= now() - make_interval(secs => ?) AS alive, "
                                 "extract(epoch FROM now() - beat_at) AS beat_age FROM workers ORDER BY id",
                                 (float(dead_after),)).fetchall()
        return [dict(r, load=json.loads(r["load"] or "null"), queues=r["queues"].split(",") if r["queues"] else [])
                for r in rows]

    def queue_counts(self):
        """{queue: {"queued": n, "running": n, "failed": n}} for /workers."""
        # Two indexed queries (the state index; the partial index of failed rows), not a scan of
        # every submission ever made.
        out = {}
        with self._lock:
            for r in self._execute("SELECT queue, state, count(*) AS n FROM submissions "
                                   "WHERE state IN ('queued', 'running') GROUP BY queue, state").fetchall():
                out.setdefault(r["queue"], {"queued": 0, "running": 0, "failed": 0})[r["state"]] = r["n"]
            for r in self._execute("SELECT queue, count(*) AS n FROM submissions WHERE failed GROUP BY queue"):
                out.setdefault(r["queue"], {"queued": 0, "running": 0, "failed": 0})["failed"] = r["n"]
        return out

    def pending(self):
        with self._lock:
            return self._execute("SELECT count(*) AS n FROM submissions WHERE state = 'queued'").fetchone()["n"]


def open_storage(url, queue_of, waiting=None):
    """PgStorage(url) or a UsageError naming --database.  An unreachable database is an error at
    once, or, with waiting(message) (a worker), waited for: said once, tried every second."""
    import time
    from ..errors import UsageError
    try:
        import psycopg
    except ImportError:
        raise UsageError("a postgresql:// database needs psycopg", "--database",
                         "pip install 'sandbox[service]'") from None
    said = False
    while True:
        try:
            return PgStorage(url, queue_of)
        except Unavailable as e:
            if waiting is None:
                raise UsageError(f"{e} ({redact(url)})", "--database", "start PostgreSQL, or fix the URL") from None
            if not said:
                waiting(f"{e}; waiting for it")
                said = True
            time.sleep(1)
        except (psycopg.Error, ValueError) as e:    # a malformed URL, a refused query: psycopg says which
            raise UsageError(f"cannot open {redact(url)}: {_first_line(e)}", "--database",
                             "fix the URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB") from None


def redact(url):
    """A URL fit for a log: its password replaced."""
    from urllib.parse import urlsplit
    try:
        password = urlsplit(url or "").password
    except ValueError:
        return url
    return url.replace(f":{password}@", ":***@", 1) if password else url


def _first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
