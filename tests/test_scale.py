"""Judging across machines: `sandbox serve --broker` + `sandbox worker`, Dramatiq on Redis,
submissions in PostgreSQL, and the faults they must survive.

Real servers, started here as the unprivileged test user in temp dirs on 127.0.0.1: one
PostgreSQL and one Redis (append-only file, fsync always) per session, a fresh database and an
empty Redis per test.  Two workers on this machine stand for two machines.  Recovery settings are
small (heartbeat 0.5 s, lease 4 s, sweep 1 s) and every bound is checked on the database's own
clock, as a sum of those settings, never as a duration that depends on this machine's speed.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import httpx
import pytest

from conftest import SANDBOX
from test_service import Server, free_port, loopback_only  # noqa: F401  (the loopback guard, autouse)

import dramatiq  # noqa: F401,E402  (the service extra: a missing one is a failure, not a skip)
import psycopg  # noqa: E402
import redis  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
if not (os.access(f"{PG_BIN}/postgres", os.X_OK) and os.access(REDIS, os.X_OK)):
    pytest.skip("needs Debian's postgresql and redis-server (.ci/run installs them)", allow_module_level=True)

HEARTBEAT, LEASE, SWEEP = 0.5, 4.0, 1.0
POLL = 1.0          # an idle Dramatiq consumer's longest sleep between fetches (worker_timeout)
SLOW = "import time\nwhile time.process_time() < 2.5:\n    pass\nprint(int(input()) * 2)\n"
PROGRAMS = {            # name -> (source, extra fields); the expected status comes from one unloaded worker
    "AC": ("print(sum(map(int, input().split())))\n", {"stdin": "1 2", "expected_output": "3\n"}),
    "WA": ("print(0)\n", {"stdin": "1 2", "expected_output": "3\n"}),
    "TLE": ("while True:\n    pass\n", {"cpu_time_limit": 0.3, "cpu_extra_time": 0.1}),
    "RE": ("raise SystemExit(5)\n", {}),
}


def _owned_dir(user, prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, user.uid, user.gid)
    return d


def _wait(what, predicate, timeout=60, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited {proc.returncode}\n{log() if log else ''}")
        try:
            value = predicate()
        except Exception:       # not up yet
            value = None
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s\n{log() if log else ''}")


class Postgres:
    def __init__(self, user):
        self.user, self.dir = user, _owned_dir(user, "sandbox-pg-")
        self.data, self.port = os.path.join(self.dir, "data"), free_port()
        r = user.run([f"{PG_BIN}/initdb", "-D", self.data, "-U", user.name, "--auth=trust", "-E", "UTF8"])
        assert r.returncode == 0, r.stderr.decode()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "postgres.log"), "ab")
        self.proc = self.user.popen([f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.dir,
                                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], stdout=log, stderr=log)
        log.close()
        _wait("postgres", lambda: psycopg.connect(self.url("postgres"), connect_timeout=1).close() or True,
              proc=self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)       # "fast" shutdown: connections are cut
            self.proc.wait(timeout=60)

    def url(self, db):
        return f"postgresql://{self.user.name}@127.0.0.1:{self.port}/{db}"

    def fresh(self, name):
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


class Redis:
    def __init__(self, user):
        self.user, self.dir, self.port, self.proc = user, _owned_dir(user, "sandbox-redis-"), free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = self.user.popen([REDIS, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                                     "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                    stdout=log, stderr=log)
        log.close()
        _wait("redis", lambda: self.client().ping(), proc=self.proc)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def postgres(user):
    pg = Postgres(user)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(pg.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(user):
    r = Redis(user)
    r.start()
    yield r
    r.stop()
    shutil.rmtree(r.dir, ignore_errors=True)


class Api(Server):
    """`sandbox serve --database postgresql://... --broker redis://...`: API only."""

    def __init__(self, user, data, database, broker, *options):
        super().__init__(user, data, "--database", database, "--broker", broker, "--sweep-interval", str(SWEEP),
                         *options)
        self.port = free_port()

    def start(self):
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        self.proc = self.user.popen([SANDBOX, "serve", "--port", str(self.port), *self.options], stdout=log,
                                    stderr=log, env={"XDG_DATA_HOME": self.data})
        log.close()
        _wait("sandbox serve", lambda: httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200,
              proc=self.proc, log=self.log)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        return self


class Worker:
    """`sandbox worker --processes 1`: one machine's one process."""

    def __init__(self, user, data, database, broker, *options):
        self.user, self.argv = user, [SANDBOX, "worker", "--database", database, "--broker", broker,
                                      "--processes", "1", "--heartbeat", str(HEARTBEAT), "--lease", str(LEASE),
                                      "--queues", "python", *options]
        self.log_path = os.path.join(data, f"worker-{len(os.listdir(data))}.log")
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = self.user.popen(self.argv, stdout=log, stderr=log)
        log.close()
        return self

    @property
    def id(self):
        return f"{os.uname().nodename}:{self.proc.pid}"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    def __init__(self, user, postgres, redis_server, name):
        self.user, self.pg, self.redis = user, postgres, redis_server
        self.data = _owned_dir(user, "sandbox-scale-")
        self.database = postgres.fresh(name)
        redis_server.client().flushall()
        self.apis, self.workers = [], []

    def api(self, *options):
        a = Api(self.user, self.data, self.database, self.redis.url, *options)
        self.apis.append(a)
        return a.start()

    def worker(self, *options):
        w = Worker(self.user, self.data, self.database, self.redis.url, *options)
        self.workers.append(w)
        w.start()
        _wait("worker heartbeat", lambda: self.one("SELECT 1 FROM workers WHERE id = %s", (w.id,)), proc=w.proc,
              log=w.log)
        return w

    def one(self, sql, args=()):
        with psycopg.connect(self.database, autocommit=True) as c:
            return c.execute(sql, args).fetchone()

    def all(self, sql, args=()):
        with psycopg.connect(self.database, autocommit=True) as c:
            return c.execute(sql, args).fetchall()

    def logs(self):
        return "\n".join([a.log() for a in self.apis] + [w.log() for w in self.workers])

    def close(self):
        for w in self.workers:
            w.stop()
        for a in self.apis:
            a.kill()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def cluster(request, user, postgres, redis_server):
    c = Cluster(user, postgres, redis_server, re.sub(r"\W", "_", request.node.name).lower()[:50])
    yield c
    c.close()


def submit(api, source, **fields):
    r = api.submit(source_code=source, language_id=71, **fields)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def stored_results(cluster, token):
    """How many times a result was stored for token (the workers' log lines)."""
    return len(re.findall(rf"token={token} .*stored=True", cluster.logs()))


# ------------------------------------------------------------------ the fenced storage itself

def test_stale_attempt_write_is_refused_and_duplicate_never_overwrites(cluster):
    """The fence: claim counts the attempt; a write of an attempt that is no longer the row's own
    (its lease expired and another claimed it) is refused; once done, no claim takes it again."""
    from sandbox.service.pgstore import PgStorage
    store = PgStorage(cluster.database, lambda kind, req: "python")
    try:
        store.add([("t1", "judge0", {"language_id": 71}, "now")])
        first = store.claim("t1", "w1", lease=0.2)
        assert first["attempts"] == 1
        assert store.claim("t1", "w2", lease=30) is None        # w1's lease is alive: a duplicate is refused
        time.sleep(0.3)      # ordering only: w1's 0.2 s lease is over before the next claim
        second = store.claim("t1", "w2", lease=30)
        assert second["attempts"] == 2 and "w1 stopped" in second["last_error"]
        assert not store.finish("t1", {"status_id": 4}, "then", attempt=1)    # w1 woke up late: refused
        assert store.finish("t1", {"status_id": 3}, "then", attempt=2)
        assert store.claim("t1", "w3") is None                  # a redelivered duplicate: done stays done
        assert not store.finish("t1", {"status_id": 4}, "later", attempt=2)
        assert not store.retry("t1", 2, "late")
        assert store.get("t1")["result"] == {"status_id": 3}
    finally:
        store.close()


# ------------------------------------------------------------------ the faults

def test_worker_sigkilled_mid_run_is_judged_elsewhere_within_the_bound(cluster):
    api = cluster.api()
    a, b = cluster.worker(), cluster.worker()
    token = submit(api, SLOW, stdin="21", expected_output="42\n", cpu_time_limit=15, wall_time_limit=20)
    owner = _wait("a worker runs it", lambda: cluster.one(
        "SELECT worker FROM submissions WHERE token = %s AND state = 'running'", (token,)))[0]
    victim, survivor = (a, b) if owner == a.id else (b, a)
    assert owner == victim.id
    victim.stop(signal.SIGKILL)
    killed_at = cluster.one("SELECT now()")[0]
    sub = api.judged(token, timeout=120)
    assert sub["status"]["id"] == 3, sub
    assert sub["stdout"] == "42\n"
    attempts, worker, claimed_at, last_error = cluster.one(
        "SELECT attempts, worker, claimed_at, last_error FROM submissions WHERE token = %s", (token,))
    assert attempts == 2 and worker == survivor.id
    assert f"worker {victim.id} stopped" in last_error
    # The bound, on the database's clock: the lease runs out at most LEASE after the kill, the
    # next sweep re-sends it within SWEEP, an idle worker's consumer sees it within its poll
    # (Dramatiq's worker_timeout, POLL); one more SWEEP of margin for the statements themselves.
    assert (claimed_at - killed_at).total_seconds() < LEASE + 2 * SWEEP + POLL, (claimed_at, killed_at)
    # /workers keeps Judge0's row shape; the dead worker drops out of it
    rows = _wait("the dead worker is gone from /workers",
                 lambda: [r for r in api.http.get("/workers").json() if r["queue"] == "python" and r["available"] == 1])
    assert set(rows[0]) == {"queue", "size", "available", "idle", "working", "paused", "failed"}
    listed = api.http.get("/api/v1/workers").json()["workers"]
    alive = [w for w in listed if w["alive"]]
    assert [w["id"] for w in alive] == [survivor.id]
    assert alive[0]["queues"] == ["python"] and alive[0]["load"]["cpus"] >= 1


def test_a_job_longer_than_the_lease_stays_its_workers(cluster):
    """The heartbeat renews a running job's lease: a job that runs past LEASE (its CPU time alone is
    1.5 leases, and wall time is never less) is not taken from its live worker by the sweeper."""
    api = cluster.api()
    cluster.worker()
    burn = f"import time\nwhile time.process_time() < {LEASE * 1.5}:\n    pass\nprint('done')\n"
    token = submit(api, burn, cpu_time_limit=15, wall_time_limit=20)
    assert api.judged(token)["stdout"] == "done\n"
    attempts, seconds = cluster.one("SELECT attempts, extract(epoch FROM done_at - claimed_at) FROM submissions "
                                    "WHERE token = %s", (token,))
    assert seconds > LEASE and attempts == 1
    assert "sweeper: re-sending" not in api.log()


def test_api_killed_and_restarted_loses_nothing_and_judges_once(cluster):
    api = cluster.api()
    expected = {}
    for i in range(8):
        name = "AC" if i % 2 == 0 else "WA"
        source, fields = PROGRAMS[name]
        expected[submit(api, source, **fields)] = 3 if name == "AC" else 4
    api.kill(signal.SIGKILL)
    cluster.worker()            # the queue is in Redis and the rows in PostgreSQL: the API is not needed
    # restarted on the same database, with a sweeper that re-sends whatever waits 1 s: duplicates
    # of queued messages that the fence must turn away
    api = cluster.api("--requeue-after", "1")
    for token, status in expected.items():
        assert api.judged(token)["status"]["id"] == status
    for token in expected:
        assert stored_results(cluster, token) == 1, cluster.logs()


def test_redis_restarted_keeps_queued_work_and_the_sweeper_covers_the_gap(cluster):
    api = cluster.api("--requeue-after", "2")
    source, fields = PROGRAMS["AC"]
    queued = [submit(api, source, **fields) for _ in range(3)]
    cluster.redis.stop(signal.SIGKILL)      # no shutdown: its append-only file has every message (fsync always)
    gap = submit(api, source, **fields)        # stored; the send fails; the sweeper sends it later
    assert "could not enqueue" in api.log()
    cluster.redis.start()
    cluster.worker()
    for token in queued + [gap]:
        assert api.judged(token)["status"]["id"] == 3
    assert "sweeper: re-sending" in api.log()


def test_postgres_unreachable_gives_503_and_workers_wait_and_resume(cluster):
    api = cluster.api()
    w = cluster.worker()
    source, fields = PROGRAMS["AC"]
    assert api.judged(submit(api, source, **fields))["status"]["id"] == 3
    w.proc.send_signal(signal.SIGSTOP)          # holds the next message until the database is gone
    token = submit(api, source, **fields)
    cluster.pg.stop()
    try:
        w.proc.send_signal(signal.SIGCONT)
        for r in (api.http.get(f"/submissions/{token}"), api.submit(source_code=source, language_id=71)):
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert "database is unreachable" in r.json()["error"]
        _wait("the worker waits for the database", lambda: "waiting for it" in w.log(), proc=w.proc, log=w.log)
    finally:
        cluster.pg.start()
    assert api.judged(token)["status"]["id"] == 3
    assert w.proc.poll() is None


def test_many_over_two_workers_with_a_kill_end_as_on_one_worker(cluster):
    api = cluster.api()
    first = cluster.worker()
    baseline = {name: api.judged(submit(api, src, **f))["status"]["id"] for name, (src, f) in PROGRAMS.items()}
    assert baseline == {"AC": 3, "WA": 4, "TLE": 5, "RE": 11}
    second = cluster.worker()
    names = list(PROGRAMS) * 15         # 60
    tokens = []
    for i in range(0, len(names), 20):
        batch = [dict(source_code=PROGRAMS[n][0], language_id=71, **PROGRAMS[n][1]) for n in names[i:i + 20]]
        r = api.http.post("/submissions/batch", json={"submissions": batch})
        assert r.status_code == 201, r.text
        tokens += [t["token"] for t in r.json()]
    _wait("a third judged", lambda: cluster.one("SELECT count(*) FROM submissions WHERE state = 'done'")[0] >= 24,
          timeout=300)
    first.stop(signal.SIGKILL)
    cluster.worker()            # the machine comes back
    for token, name in zip(tokens, names):
        assert api.judged(token, timeout=300)["status"]["id"] == baseline[name], name
    assert second.proc.poll() is None
    for token in tokens:
        assert stored_results(cluster, token) == 1


# ------------------------------------------------------------------ retries: the infrastructure's only

def test_infrastructure_failure_is_retried_three_times_then_internal_error(cluster, user):
    """A worker whose Python is missing (its own language table says so) fails each attempt with
    status 13: that is retried, 3 attempts in all, then status 13 with the reason."""
    import yaml
    from sandbox.service import languages
    with open(languages.default_path()) as f:
        table = yaml.safe_load(f)
    for entry in table:
        if entry["id"] == 71:
            entry["run"]["argv"] = ["/nonexistent/python3"]
    path = os.path.join(cluster.data, "languages.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(table, f)
    os.chmod(path, 0o644)
    api = cluster.api()
    cluster.worker("--languages", path)
    token = submit(api, *PROGRAMS["AC"][:1], **PROGRAMS["AC"][1])
    sub = api.judged(token)
    assert sub["status"]["id"] == 13
    assert sub["message"].startswith("given up after 3 attempts; the last: ") and "not available" in sub["message"]
    assert cluster.one("SELECT attempts, failed FROM submissions WHERE token = %s", (token,)) == (3, True)
    assert [r["failed"] for r in api.http.get("/workers").json() if r["queue"] == "python"] == [1]


def test_a_submission_whose_workers_keep_dying_is_given_up_with_the_reason(cluster):
    """Three attempts whose workers died (leases expired): the sweeper re-sends it, the next claim
    is the fourth, and that is status 13 naming the last worker that died, not a fourth run."""
    api = cluster.api()
    token = submit(api, *PROGRAMS["AC"][:1], **PROGRAMS["AC"][1])
    cluster.one("UPDATE submissions SET state = 'running', attempts = 3, worker = 'gone:1', "
                "lease_until = now() - interval '1 second' WHERE token = %s RETURNING 1", (token,))
    cluster.worker()
    sub = api.judged(token)
    assert sub["status"]["id"] == 13
    assert "given up after 3 attempts; the last: worker gone:1 stopped while running it" in sub["message"]
    assert stored_results(cluster, token) == 1


def test_user_verdicts_are_final_on_the_first_attempt(cluster):
    api = cluster.api()
    cluster.worker()
    tokens = {name: submit(api, src, **f) for name, (src, f) in PROGRAMS.items()}
    assert {name: api.judged(t)["status"]["id"] for name, t in tokens.items()} == \
        {"AC": 3, "WA": 4, "TLE": 5, "RE": 11}
    assert {r[0] for r in cluster.all("SELECT attempts FROM submissions")} == {1}
    # wait=true across machines, and the /api/v1 surface: judged by the worker too
    r = api.submit({"wait": "true"}, source_code=PROGRAMS["WA"][0], language_id=71, **PROGRAMS["WA"][1])
    assert r.status_code == 201 and r.json()["status"]["id"] == 4, r.text
    r = api.http.post("/api/v1/submissions", json={"language": "python", "source": PROGRAMS["AC"][0], "wait": True,
                                                   "tests": [{"stdin": "1 2", "expected": "3"}]})
    assert r.status_code == 201 and r.json()["verdict"] == "AC", r.text
    r = api.http.post("/api/v1/run", json={"language": "python", "source": "print(1)"})
    assert r.status_code == 501 and "API only" in r.json()["error"], r.text


# ------------------------------------------------------------------ callbacks, draining, the embedded mode over PostgreSQL

def test_callback_is_sent_by_the_worker_with_retries(cluster):
    """The worker that finishes a submission PUTs it to callback_url; a refused PUT is tried again."""
    import base64
    import http.server
    import json
    import threading
    got = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(500 if len(got) == 1 else 200)       # the first try fails
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        api = cluster.api("--allow-callback", "127.0.0.1")
        cluster.worker("--allow-callback", "127.0.0.1")
        url = f"http://127.0.0.1:{receiver.server_port}/done"
        token = submit(api, "print('called')", callback_url=url)
        api.judged(token)
        _wait("two PUTs", lambda: len(got) >= 2)
        assert [b["token"] for b in got] == [token, token] and got[1]["status"]["id"] == 3
        assert base64.b64decode(got[1]["stdout"]) == b"called\n"
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_drained_worker_finishes_its_job_and_leaves(cluster):
    """SIGTERM (systemctl stop): the job in hand finishes on its first attempt, the worker exits 0
    and leaves /api/v1/workers; what it had not started waits for another worker."""
    api = cluster.api()
    w = cluster.worker()
    running = submit(api, SLOW, stdin="5", cpu_time_limit=15, wall_time_limit=20)
    waiting = submit(api, *PROGRAMS["AC"][:1], **PROGRAMS["AC"][1])
    _wait("it runs", lambda: cluster.one("SELECT 1 FROM submissions WHERE token = %s AND state = 'running'",
                                         (running,)))
    w.stop(signal.SIGTERM)
    assert w.proc.returncode == 0, w.log()
    assert cluster.one("SELECT state, attempts FROM submissions WHERE token = %s", (running,)) == ("done", 1)
    assert cluster.one("SELECT state FROM submissions WHERE token = %s", (waiting,)) == ("queued",)
    assert api.http.get("/api/v1/workers").json()["workers"] == []
    assert api.judged(running)["stdout"] == "10\n"
    cluster.worker()
    assert api.judged(waiting)["status"]["id"] == 3


def test_embedded_server_over_postgresql(cluster):
    """--database postgresql:// without --broker: the embedded server's threads, rows in PostgreSQL."""
    api = Server(cluster.user, cluster.data, "--database", cluster.database, workers=1)
    api.start = Api.start.__get__(api)
    api.port = free_port()
    cluster.apis.append(api)
    api.start()
    assert api.judged(submit(api, *PROGRAMS["WA"][:1], **PROGRAMS["WA"][1]))["status"]["id"] == 4
    assert api.http.get("/workers").json()[0]["queue"] == "sandbox"


@pytest.mark.parametrize("argv, where", [
    (["worker", "--broker", "redis://127.0.0.1:1/0"], "--database"),
    (["worker", "--database", "postgresql://u@127.0.0.1:1/db"], "--broker"),
    (["worker", "--database", "postgresql://u@127.0.0.1:1/db", "--broker", "redis://127.0.0.1:1/0",
      "--heartbeat", "2", "--lease", "3"], "--lease"),
    (["serve", "--broker", "redis://127.0.0.1:1/0"], "--database"),
    (["serve", "--sweep-interval", "1"], "--broker"),
    (["worker", "--database", "postgresql://u@127.0.0.1:1/db?nosuch=1", "--broker", "redis://127.0.0.1:1/0"],
     "--database"),
    (["worker", "--database", "postgresql://u@127.0.0.1:1/db", "--broker", "redis://127.0.0.1:1/0",
      "--queues", "cobol"], "--queues"),
])
def test_bad_options_say_which_and_how_to_fix(user, argv, where):
    r = user.run([SANDBOX, *argv], env={"SANDBOX_DATABASE": "", "SANDBOX_BROKER": ""})
    err = r.stderr.decode()
    assert r.returncode == 125 and where in err and "Traceback" not in err, err


def test_a_machine_without_any_toolchain_takes_no_queue(user):
    """Dramatiq reads "no queues" as "every queue": a worker with none available refuses to start."""
    import yaml
    from sandbox.service import languages
    with open(languages.default_path()) as f:
        table = [dict(e, run=dict(e["run"], argv=["/nonexistent/runtime"])) for e in yaml.safe_load(f)]
    d = _owned_dir(user, "sandbox-scale-")
    try:
        path = os.path.join(d, "languages.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(table, f)
        os.chmod(path, 0o644)
        for processes in ("1", "2"):
            r = user.run([SANDBOX, "worker", "--database", "postgresql://u@127.0.0.1:1/db", "--broker",
                          "redis://127.0.0.1:1/0", "--languages", path, "--processes", processes])
            err = r.stderr.decode()
            assert r.returncode == 125 and "--queues" in err and "no language" in err and "Traceback" not in err, err
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_worker_processes_are_supervised_restarted_and_drained(cluster):
    """--processes 2: two Dramatiq processes (one workers row each); one that dies is replaced;
    SIGTERM to the supervisor drains them all."""
    api = cluster.api()
    w = Worker(cluster.user, cluster.data, cluster.database, cluster.redis.url, "--processes", "2")
    cluster.workers.append(w)
    w.start()
    pids = lambda: {r[0] for r in cluster.all("SELECT pid FROM workers")}     # noqa: E731
    first = _wait("two processes beat", lambda: pids() if len(pids()) == 2 else None, proc=w.proc, log=w.log)
    assert w.proc.pid not in first
    os.kill(min(first), signal.SIGKILL)
    _wait("a replacement beats", lambda: len(pids() - first) == 1, proc=w.proc, log=w.log)
    assert api.judged(submit(api, *PROGRAMS["AC"][:1], **PROGRAMS["AC"][1]))["status"]["id"] == 3
    w.stop(signal.SIGTERM)
    assert w.proc.returncode == 0, w.log()
    assert pids() == {min(first)}       # the killed one's row ages out; the drained ones are gone
