"""Submissions as rows: the only module that speaks SQL.

A row is the truth about a submission: its request, its state (queued,
running, done), how many times a worker started it, and its result.  The
interface is narrow on purpose (add, get, page, delete, claim, finish,
unfinished, counts), so a PostgreSQL backend can replace this one without the
rest of the service noticing.

SQLite in WAL mode with synchronous=NORMAL: a commit survives the server being
killed (-9) at any moment, which is what "nothing accepted is ever lost" needs;
only a power cut may lose the last commits.  One connection guarded by a lock:
every statement here is short, and one writer at a time is what SQLite allows
anyway.
"""
import json
import os
import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order: the queue's order after a restart
    token       TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,                       -- judge0 | native: which surface made it
    state       TEXT NOT NULL,                       -- queued | running | done
    attempts    INTEGER NOT NULL DEFAULT 0,          -- workers that started it (a restart re-runs it)
    request     TEXT NOT NULL,                       -- JSON
    result      TEXT,                                -- JSON, once done
    created_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS submissions_state ON submissions (state, seq);
"""


class Storage:
    def __init__(self, path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self):
        with self._lock:
            self._db.close()

    def _execute(self, sql, args=()):
        """The dialect shim: every statement of this interface goes through here (caller holds the lock)."""
        return self._db.execute(sql, args)

    def _rows(self, sql, args=()):
        with self._lock:
            return [_row(r) for r in self._execute(sql, args).fetchall()]

    def add(self, rows):
        """Store new submissions, all or none: [(token, kind, request dict, created_at)]."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO submissions (token, kind, state, request, created_at) VALUES (?, ?, 'queued', ?, ?)",
                    [(t, k, json.dumps(req), at) for t, k, req, at in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, token):
        rows = self._rows("SELECT * FROM submissions WHERE token = ?", (token,))
        return rows[0] if rows else None

    def get_many(self, tokens):
        if not tokens:
            return []
        found = {r["token"]: r for r in self._rows(
            f"SELECT * FROM submissions WHERE token IN ({','.join('?' * len(tokens))})", tokens)}
        return [found.get(t) for t in tokens]

    def page(self, kind, offset, limit):
        """Newest first, as Judge0 lists them; and the total count."""
        rows = self._rows("SELECT * FROM submissions WHERE kind = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
                          (kind, limit, offset))
        with self._lock:
            total = _first(self._execute("SELECT COUNT(*) FROM submissions WHERE kind = ?", (kind,)).fetchone())
        return rows, total

    def delete(self, token):
        with self._lock:
            self._execute("DELETE FROM submissions WHERE token = ?", (token,))

    def claim(self, token):
        """Mark a queued submission running and count the attempt; None if it is not queued
        (deleted, or already taken)."""
        with self._lock:
            cur = self._db.execute("UPDATE submissions SET state = 'running', attempts = attempts + 1 "
                                   "WHERE token = ? AND state = 'queued'", (token,))
            if cur.rowcount != 1:
                return None
            return _row(self._db.execute("SELECT * FROM submissions WHERE token = ?", (token,)).fetchone())

    def finish(self, token, result, finished_at, attempt):
        """Store the result of attempt number `attempt`, only if that attempt is still the
        submission's own (fenced): False when a newer one took it over or it is done already."""
        with self._lock:
            cur = self._db.execute("UPDATE submissions SET state = 'done', result = ?, finished_at = ? "
                                   "WHERE token = ? AND attempts = ? AND state = 'running'",
                                   (json.dumps(result), finished_at, token, attempt))
            return cur.rowcount == 1

    def unfinished(self):
        """After a restart: every submission not done, in arrival order, made queued again
        (one that was running when the server died is started afresh)."""
        with self._lock:
            self._db.execute("UPDATE submissions SET state = 'queued' WHERE state = 'running'")
            return [r[0] for r in self._db.execute("SELECT token FROM submissions WHERE state = 'queued' ORDER BY seq")]

    def counts(self):
        with self._lock:
            return {r["state"]: r["n"] for r in
                    self._execute("SELECT state, COUNT(*) AS n FROM submissions GROUP BY state").fetchall()}


def _first(r):
    return r[0] if isinstance(r, (tuple, sqlite3.Row)) else next(iter(r.values()))


def _row(r):
    d = dict(r)
    d["request"] = json.loads(d["request"])
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d
