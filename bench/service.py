#!/usr/bin/env python3
"""The judging service against the judging API in-process: what HTTP, the queue and SQLite cost.

    python3 bench/service.py [--submissions 200] [--workers 2] [--sequential 40] [--user sandbox-test] [--json F]
                             [--broker redis://... --database postgresql://... [--only-broker]]

1. Throughput: the same submissions (C a+b and Python a+b, alternating) judged
   (a) in-process by `sandbox.judge` on a pool of --workers threads (compile, run, compare), and
   (b) by `sandbox serve` with the same number of workers: POST /submissions/batch with
       wait=false, then polling GET /submissions/batch as the Judge0 SDK does.
   Both start with every submission queued; per side: submissions per second and the p50/p99 of
   the time from the start to each submission's verdict.  Two rounds per side, in the order
   HTTP, in-process, in-process, HTTP, so that a change in the machine's load hits both alike.
2. Added latency of wait=true: --sequential Python a+b submissions one at a time, alternating an
   in-process compile+run with a POST /submissions?wait=true: the difference of the medians, and,
   paired (less noisy), each request's latency minus the time the server's worker spent compiling
   and running it (from its --log-json line): HTTP, validation, SQLite and the hand-offs.

3. With --broker redis://... --database postgresql://... (a Redis and a PostgreSQL you started; the
   database is emptied): the same submissions through `sandbox serve --broker` with 1 and then 2
   `sandbox worker` processes, against the embedded server with --workers 2 (one round each, in the
   order embedded, 1, 2); then all of them again over 2 workers with one SIGKILLed halfway and
   replaced (each must still end AC: the issue's fault 5 at full size); then the recovery time: a
   slow submission, the worker running it SIGKILLed, and the time on the database's clock from the
   kill to the submission finishing on the other worker, with the default heartbeat, lease and
   sweep settings.

Run it as an unprivileged user, or as root with --user NAME (it then runs itself as NAME, as the
server and the sandboxes must).  The server listens on 127.0.0.1 only and is stopped at the end.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

C_AB = b'#include <stdio.h>\nint main(){long a,b; scanf("%ld %ld",&a,&b); printf("%ld\\n",a+b);}\n'
PY_AB = b"a, b = map(int, input().split())\nprint(a + b)\n"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def workload(n):
    """[(judge language, Judge0 id, source, stdin, expected)]"""
    subs = []
    for i in range(n):
        lang, jid, src = ("c", 50, C_AB) if i % 2 == 0 else ("py", 71, PY_AB)
        subs.append((lang, jid, src, f"{i} {i + 1}\n".encode(), f"{2 * i + 1}\n".encode()))
    return subs


# The limits the service applies to a Judge0 request with the defaults (judge0.limits_of): the same
# work on both sides, down to the rlimits.
LIMITS = {"cpu_time": 6, "wall_time": 10, "memory": 128000 * 1024, "processes": 60, "stack": 64000 * 1024,
          "file_size": 1024 * 1024, "output": 1024 * 1024}


def judge_in_process(sub):
    from sandbox import judge
    lang, _, src, stdin, expected = sub
    art, compiled = judge.compile(lang, src)
    if art is None:
        return "CE"
    with art:
        r = art.run(stdin=stdin, limits=LIMITS)
    return "AC" if r.status == "OK" and r.stdout.rstrip() == expected.rstrip() else r.status


def in_process(subs, workers):
    start, done = time.monotonic(), []

    def one(sub):
        verdict = judge_in_process(sub)
        done.append(time.monotonic() - start)
        return verdict

    with ThreadPoolExecutor(workers) as pool:
        verdicts = list(pool.map(one, subs))
    return time.monotonic() - start, done, verdicts


class Server:
    def __init__(self, workers, n, extra=()):
        import httpx
        self.dir = tempfile.mkdtemp(prefix="bench-serve-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        sandbox = os.path.join(os.path.dirname(sys.executable), "sandbox")
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        database = ["--database", os.path.join(self.dir, "db.sqlite3")] if not extra else []
        self.proc = subprocess.Popen([sandbox, "serve", "--port", str(self.port), "--workers", str(workers),
                                      *database, "--max-queue", str(n + 10), "--log-json", *extra],
                                     stdout=self.log, stderr=self.log)
        self.http = httpx.Client(base_url=self.url, timeout=120)
        for _ in range(600):
            try:
                if self.http.get("/api/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit(f"the server did not start; its log is {self.log.name}")

    def judging_seconds(self):
        """{token: seconds the worker spent compiling and running it}, from the server's log."""
        self.log.flush()
        with open(self.log.name) as f:
            return {d["token"]: d["seconds"] for d in (json.loads(line) for line in f if line.startswith("{"))}

    def close(self):
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def b64(data):
    return base64.b64encode(data).decode()


def over_http(server, subs, batch=20):
    start = time.monotonic()
    tokens = []
    for i in range(0, len(subs), batch):
        body = {"submissions": [{"language_id": jid, "source_code": b64(src), "stdin": b64(stdin),
                                 "expected_output": b64(exp)} for _, jid, src, stdin, exp in subs[i:i + batch]]}
        r = server.http.post("/submissions/batch", params={"base64_encoded": "true"}, json=body)
        r.raise_for_status()
        tokens += [a["token"] for a in r.json()]
    finished, verdicts = {}, {}
    while len(finished) < len(tokens):
        left = [t for t in tokens if t not in finished]
        for i in range(0, len(left), batch):
            chunk = left[i:i + batch]
            r = server.http.get("/submissions/batch", params={"tokens": ",".join(chunk), "fields": "token,status"})
            for sub in r.json()["submissions"]:
                if sub["status"]["id"] not in (1, 2):
                    finished[sub["token"]] = time.monotonic() - start
                    verdicts[sub["token"]] = "AC" if sub["status"]["id"] == 3 else sub["status"]["description"]
        time.sleep(0.1)         # the official SDK polls every 0.1 s
    return time.monotonic() - start, list(finished.values()), [verdicts[t] for t in tokens]


def wait_latency(server, n):
    """Alternate in-process compile+run and POST wait=true of the same Python a+b."""
    local, remote, tokens = [], [], []
    sub = ("py", 71, PY_AB, b"20 22\n", b"42\n")
    body = {"language_id": 71, "source_code": PY_AB.decode(), "stdin": "20 22\n", "expected_output": "42\n"}
    for _ in range(n):
        t = time.monotonic()
        assert judge_in_process(sub) == "AC"
        local.append(time.monotonic() - t)
        t = time.monotonic()
        r = server.http.post("/submissions", params={"wait": "true"}, json=body)
        remote.append(time.monotonic() - t)
        assert r.json()["status"]["id"] == 3, r.text
        tokens.append(r.json()["token"])
    judging = server.judging_seconds()
    return local, remote, [latency - judging[t] for latency, t in zip(remote, tokens)]


def distributed(args, subs):
    """Throughput with 1 and 2 worker processes against the embedded server; recovery after a kill."""
    import psycopg
    sandbox = os.path.join(os.path.dirname(sys.executable), "sandbox")

    def empty():
        with psycopg.connect(args.database, autocommit=True) as c:
            c.execute("DROP TABLE IF EXISTS submissions, workers")
        import redis
        redis.Redis.from_url(args.broker).flushdb()

    def workers(n, logdir):
        procs = [subprocess.Popen([sandbox, "worker", "--database", args.database, "--broker", args.broker,
                                   "--processes", "1"], stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(logdir, f"worker-{i}.log"), "wb")) for i in range(n)]
        with psycopg.connect(args.database, autocommit=True) as c:
            while c.execute("SELECT count(*) FROM workers").fetchone()[0] < n:
                time.sleep(0.1)
        return procs

    def stop(procs):
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)

    out = {}
    embedded = Server(args.workers, len(subs))
    try:
        over_http(embedded, subs[:4])
        t, lat, v = over_http(embedded, subs)
        assert set(v) == {"AC"}, set(v)
        out["embedded"] = {"workers": args.workers, "per_second": len(subs) / t, "p50_s": pct(lat, 50)}
    finally:
        embedded.close()
    for n in (1, 2):
        empty()
        api = Server(1, len(subs), ["--database", args.database, "--broker", args.broker])
        procs = workers(n, api.dir)
        try:
            over_http(api, subs[:4])
            t, lat, v = over_http(api, subs)
            assert set(v) == {"AC"}, set(v)
            out[f"broker_{n}_processes"] = {"per_second": len(subs) / t, "p50_s": pct(lat, 50)}
        finally:
            stop(procs)
            api.close()
    empty()
    api = Server(1, 10, ["--database", args.database, "--broker", args.broker])
    procs = workers(2, api.dir)
    try:
        slow = "import time\nwhile time.process_time() < 3:\n    pass\nprint(42)\n"
        token = api.http.post("/submissions", json={"language_id": 71, "source_code": slow,
                                                     "cpu_time_limit": 15, "wall_time_limit": 20}).json()["token"]
        with psycopg.connect(args.database, autocommit=True) as c:
            while not (row := c.execute("SELECT worker FROM submissions WHERE token = %s AND state = 'running'",
                                        (token,)).fetchone()):
                time.sleep(0.05)
            victim = next(p for p in procs if row[0].endswith(f":{p.pid}"))
            victim.kill()
            killed = c.execute("SELECT now()").fetchone()[0]
            while not (done := c.execute("SELECT done_at, claimed_at, attempts FROM submissions WHERE token = %s "
                                         "AND state = 'done'", (token,)).fetchone()):
                time.sleep(0.05)
        out["recovery"] = {"kill_to_claim_s": (done[1] - killed).total_seconds(),
                           "kill_to_done_s": (done[0] - killed).total_seconds(), "attempts": done[2],
                           "settings": "heartbeat 2 s, lease 10 s, sweep 5 s (defaults)"}
    finally:
        stop([p for p in procs if p.poll() is None])
        api.close()
    # The fault 5 at full size: every submission over 2 workers, one SIGKILLed halfway and
    # replaced; each must end AC (what one unloaded worker gives every one of them).
    empty()
    api = Server(1, len(subs), ["--database", args.database, "--broker", args.broker])
    procs = workers(2, api.dir)
    try:
        def kill_halfway():
            with psycopg.connect(args.database, autocommit=True) as c:
                while c.execute("SELECT count(*) FROM submissions WHERE state = 'done'").fetchone()[0] < len(subs) // 2:
                    time.sleep(0.1)
            procs[0].kill()
            procs.append(subprocess.Popen([sandbox, "worker", "--database", args.database, "--broker", args.broker,
                                           "--processes", "1"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))         # the machine comes back

        killer = threading.Thread(target=kill_halfway)
        killer.start()
        t, _, v = over_http(api, subs)
        killer.join()
        with psycopg.connect(args.database, autocommit=True) as c:
            retried = c.execute("SELECT count(*) FROM submissions WHERE attempts > 1").fetchone()[0]
        out["kill_halfway"] = {"submissions": len(subs), "all_ac": set(v) == {"AC"}, "verdicts": sorted(set(v)),
                               "seconds": t, "retried": retried}
    finally:
        stop([p for p in procs if p.poll() is None])
        api.close()
    print(f"across machines (on this one), {len(subs)} submissions:")
    print(f"  embedded, {args.workers} worker threads: {out['embedded']['per_second']:.1f} subs/s")
    for n in (1, 2):
        print(f"  --broker, {n} worker process(es):  {out[f'broker_{n}_processes']['per_second']:.1f} subs/s")
    k = out["kill_halfway"]
    print(f"  {k['submissions']} over 2 workers, one SIGKILLed halfway and replaced: "
          f"{'every one AC' if k['all_ac'] else 'VERDICTS ' + ', '.join(k['verdicts'])} in {k['seconds']:.1f} s, "
          f"{k['retried']} started twice (the killed worker's job)")
    r = out["recovery"]
    print(f"  a worker SIGKILLed mid-run: claimed elsewhere {r['kill_to_claim_s']:.1f} s and finished "
          f"{r['kill_to_done_s']:.1f} s after the kill ({r['settings']})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sequential", type=int, default=40)
    ap.add_argument("--user", help="as root: run as this unprivileged user")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--broker", help="redis://...: also measure serve --broker with 1 and 2 sandbox worker processes")
    ap.add_argument("--database", help="postgresql://... for --broker (its tables are dropped)")
    ap.add_argument("--only-broker", action="store_true", help="with --broker: skip parts 1 and 2")
    args = ap.parse_args()
    if bool(args.broker) != bool(args.database):
        ap.error("--broker and --database go together")
    if args.user and os.geteuid() == 0:
        return as_user(args)
    subs = workload(args.submissions)
    if args.broker and args.only_broker:
        numbers = {"distributed": distributed(args, subs)}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(numbers, f, indent=2, default=str)
        return 0
    in_process(subs[:4], args.workers)                  # warm the profile and seccomp caches
    server = Server(args.workers, args.submissions)
    try:
        over_http(server, subs[:4])
        # two rounds each, in the order H L L H, so drift in the machine's load hits both sides alike
        runs = {"http": [], "local": []}
        for side in ("http", "local", "local", "http"):
            runs[side].append(over_http(server, subs) if side == "http" else in_process(subs, args.workers))
        local, remote, paired = wait_latency(server, args.sequential)
    finally:
        server.close()
    t_http, lat_http, v_http = (sum((r[i] for r in runs["http"]), 0 if i == 0 else []) for i in range(3))
    t_local, lat_local, v_local = (sum((r[i] for r in runs["local"]), 0 if i == 0 else []) for i in range(3))
    assert set(v_http) == {"AC"} and set(v_local) == {"AC"}, (set(v_http), set(v_local))
    n = 2 * len(subs)
    numbers = {
        "submissions": len(subs), "rounds": 2, "workers": args.workers, "load_average": os.getloadavg(),
        "in_process": {"per_second": n / t_local, "p50_s": pct(lat_local, 50), "p99_s": pct(lat_local, 99)},
        "http": {"per_second": n / t_http, "p50_s": pct(lat_http, 50), "p99_s": pct(lat_http, 99)},
        "throughput_ratio": t_local / t_http,
        "wait_true": {"in_process_p50_s": statistics.median(local), "http_p50_s": statistics.median(remote),
                      "added_p50_ms": 1000 * (statistics.median(remote) - statistics.median(local)),
                      "overhead_over_own_run_p50_ms": 1000 * statistics.median(paired),
                      "overhead_over_own_run_p99_ms": 1000 * pct(paired, 99)},
    }
    print(f"{len(subs)} submissions (C and Python a+b), {args.workers} workers, two rounds per side; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'':<12}{'subs/s':>9}{'p50':>10}{'p99':>10}")
    for side in ("in_process", "http"):
        s = numbers[side]
        print(f"  {side:<12}{s['per_second']:>9.1f}{s['p50_s']:>9.2f}s{s['p99_s']:>9.2f}s")
    print(f"  service throughput = {100 * numbers['throughput_ratio']:.0f}% of in-process (target >= 70%)")
    w = numbers["wait_true"]
    print(f"wait=true, {args.sequential} sequential Python a+b: in-process p50 {1000 * w['in_process_p50_s']:.1f} ms, "
          f"HTTP p50 {1000 * w['http_p50_s']:.1f} ms, added {w['added_p50_ms']:.1f} ms")
    print(f"  each request against the server's own compile+run of it: p50 {w['overhead_over_own_run_p50_ms']:.1f} ms, "
          f"p99 {w['overhead_over_own_run_p99_ms']:.1f} ms added (target p50 <= 5 ms)")
    if args.broker:
        numbers["distributed"] = distributed(args, subs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(numbers, f, indent=2, default=str)
    return 0


def as_user(args):
    """Run this script again as args.user, from a home of its own (the profile and seccomp caches)."""
    import pwd
    pw = pwd.getpwnam(args.user)
    home = tempfile.mkdtemp(prefix="bench-serve-home-")
    os.chown(home, pw.pw_uid, pw.pw_gid)
    script = os.path.join(home, "service.py")
    shutil.copy(__file__, script)
    os.chmod(script, 0o755)
    numbers = os.path.join(home, "numbers.json")
    argv = ["--submissions", str(args.submissions), "--workers", str(args.workers),
            "--sequential", str(args.sequential), "--json", numbers]
    if args.broker:
        argv += ["--broker", args.broker, "--database", args.database] + (["--only-broker"] if args.only_broker else [])
    try:
        code = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
                               sys.executable, script, *argv], cwd=home,
                              env={"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "HOME": home,
                                   "LANG": "C.UTF-8"}).returncode
        if code == 0 and args.json:
            shutil.copy(numbers, args.json)
        return code
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
