"""`sandbox serve`: the real server, started as the unprivileged test user on a free loopback port,
driven by the official Judge0 SDK, by judge0-client and by plain HTTP.

Every verdict the service maps (AC WA CE TLE MLE RE SG SYS OLE) for C, C++ and Python; the other
installed languages; a server killed with SIGKILL mid-queue loses nothing; every bad input gets a
4xx naming its field.  No test may reach a non-loopback address: `loopback_only` makes any other
connection from this process fail, and the SDK's client is built on the server's endpoint.
"""
import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

import httpx
import pytest

from conftest import SANDBOX, write

C_AB = '#include <stdio.h>\nint main(){long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 1; printf("%ld\\n",a+b);}\n'
CPP_AB = '#include <iostream>\nint main(){long a,b; std::cin>>a>>b; std::cout<<a+b<<"\\n";}\n'
PY_AB = "a, b = map(int, input().split())\nprint(a + b)\n"


# ------------------------------------------------------------------ the harness

@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection or name lookup from this process to a non-loopback address fails the test."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6) \
                and host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a test tried to connect to {address}: only loopback is allowed")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kw):
        if host not in ("127.0.0.1", "::1", "localhost", None):
            raise AssertionError(f"a test tried to resolve {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in list(os.environ):
        if name.startswith("JUDGE0_"):
            monkeypatch.delenv(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`sandbox serve` as the test user, with its data directory in a temp dir the user owns."""

    def __init__(self, user, data, *options, workers=2):
        self.user, self.data, self.options, self.workers = user, data, options, workers
        self.database = os.path.join(data, "db", "submissions.sqlite3")
        self.log_path = os.path.join(data, "server.log")
        self.proc = None

    def start(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        self.proc = self.user.popen([SANDBOX, "serve", "--port", str(self.port), "--database", self.database,
                                     "--workers", str(self.workers), *self.options],
                                    stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sandbox serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    self.http = httpx.Client(base_url=self.url, timeout=60)
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"sandbox serve did not answer within 60 s:\n{self.log()}")

    def kill(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "http", None):
            self.http.close()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def submit(self, params=None, **body):
        return self.http.post("/submissions", params=params or {}, json=body)

    def judged(self, token, timeout=120, **params):
        """Poll until the submission has a final status (as a Judge0 client does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(f"/submissions/{token}", params={"fields": "*", **params})
            assert r.status_code == 200, r.text
            sub = r.json()
            if sub["status"]["id"] not in (1, 2):
                return sub
            time.sleep(0.05)
        pytest.fail(f"submission {token} was not judged within {timeout} s:\n{self.log()}")


def _data_dir(user):
    d = tempfile.mkdtemp(prefix="sandbox-serve-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, user.uid, user.gid)
    return d


@pytest.fixture
def make_server(user):
    """Start servers as needed; each is stopped and its directory removed at the end."""
    started = []

    def make(*options, workers=2, data=None):
        s = Server(user, data or _data_dir(user), *options, workers=workers)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.kill()
    for d in {s.data for s in started}:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(user):
    data = _data_dir(user)
    config = write(os.path.join(data, "config.yaml"), "max_body_size: 1048576\n", owner=user)
    s = Server(user, data, "--config", config).start()
    yield s
    s.kill()
    shutil.rmtree(data, ignore_errors=True)


def b64(text):
    return base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()


# ------------------------------------------------------------------ every verdict, three languages

C_CASES = {
    "AC": (C_AB, {"expected_output": "3\n"}, 3),
    "WA": (C_AB, {"expected_output": "4\n"}, 4),
    "CE": ("int main() { return 0 }\n", {}, 6),
    "TLE": ("int main(){volatile unsigned long i=0; for(;;) i++;}\n", {"cpu_time_limit": 0.3, "cpu_extra_time": 0.1}, 5),
    "MLE": ("#include <stdlib.h>\nint main(){volatile char*p=malloc(300<<20); for(long i=0;i<(300<<20);i+=4096) "
            "p[i]=1; return p[4096]==7;}\n", {"memory_limit": 65536}, 11),
    "RE": ("int main(){return 3;}\n", {}, 11),
    "SG": ("int main(){volatile int *p=0; *p=1; return 0;}\n", {}, 7),
    "SYS": ("#include <sys/mount.h>\nint main(){mount(\"none\",\"/box\",\"tmpfs\",0,0); return 0;}\n", {}, 12),
    "OLE": ("#include <stdio.h>\nint main(){for(;;) fputs(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n\", stdout);}\n", {}, 8),
}
CPP_CASES = {
    "AC": (CPP_AB, {"expected_output": "3\n"}, 3),
    "WA": (CPP_AB, {"expected_output": "30\n"}, 4),
    "CE": ("int main() { undeclared(); }\n", {}, 6),
    "TLE": ("int main(){volatile unsigned long i=0; for(;;) i++;}\n", {"cpu_time_limit": 0.3, "cpu_extra_time": 0.1}, 5),
    "MLE": ("#include <vector>\nint main(){std::vector<char> v(300<<20, 1); return v[999]==7;}\n",
            {"memory_limit": 65536}, 11),
    "RE": ("#include <cstdlib>\nint main(){std::exit(4);}\n", {}, 11),
    "SG": ("int main(){volatile int z=0; return 10/z;}\n", {}, 9),
    "SYS": ("#include <sys/socket.h>\nint main(){return socket(AF_INET, SOCK_STREAM, 0) < 0;}\n", {}, 12),
    "OLE": ("#include <iostream>\nint main(){for(;;) std::cout << \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n\";}\n", {}, 8),
}
PY_CASES = {
    "AC": (PY_AB, {"expected_output": "3\n"}, 3),
    "WA": ("print(0)\n", {"expected_output": "3\n"}, 4),
    "CE": ("def f(:\n    pass\n", {}, 6),
    "TLE": ("while True:\n    pass\n", {"cpu_time_limit": 0.3, "cpu_extra_time": 0.1}, 5),
    "MLE": ("x = b'x' * (300 << 20)\nprint(len(x))\n", {"memory_limit": 65536}, 11),
    "RE": ("raise SystemExit(5)\n", {}, 11),
    "SG": ("import ctypes\nctypes.string_at(0)\n", {}, 7),
    "SYS": ("import os\nos.chroot('/')\n", {}, 12),
    "OLE": ("while True:\n    print('x' * 1000)\n", {}, 8),
}
LANGUAGE_CASES = {50: C_CASES, 54: CPP_CASES, 71: PY_CASES}
CASES = [(lang, verdict) for lang, cases in LANGUAGE_CASES.items() for verdict in cases]


@pytest.fixture(scope="module")
def verdict_tokens(server):
    """Every case submitted at once in batches (the server judges them in parallel); {case: token}."""
    cases = [(lang, v, *LANGUAGE_CASES[lang][v]) for lang, v in CASES]
    tokens = {}
    for i in range(0, len(cases), 20):
        chunk = cases[i:i + 20]
        body = {"submissions": [dict({"language_id": lang, "source_code": b64(src), "stdin": b64("1 2\n")},
                                     **{k: b64(v) if k == "expected_output" else v for k, v in extra.items()})
                                for lang, _, src, extra, _ in chunk]}
        r = server.http.post("/submissions/batch", params={"base64_encoded": "true"}, json=body)
        assert r.status_code == 201, r.text
        for (lang, v, *_), answer in zip(chunk, r.json()):
            tokens[(lang, v)] = answer["token"]
    return tokens


@pytest.mark.parametrize("lang,verdict", CASES, ids=[f"{lang}-{v}" for lang, v in CASES])
def test_every_verdict_maps_to_its_judge0_status(server, verdict_tokens, lang, verdict):
    expected_status = LANGUAGE_CASES[lang][verdict][2]
    sub = server.judged(verdict_tokens[(lang, verdict)], base64_encoded="true")
    message = base64.b64decode(sub["message"]).decode() if sub["message"] else None
    assert sub["status"]["id"] == expected_status, (sub, message)
    assert sub["status_id"] == expected_status
    if verdict == "AC":
        assert base64.b64decode(sub["stdout"]) == b"3\n"
    if verdict == "WA":
        assert base64.b64decode(sub["stdout"]) != base64.b64decode(sub["expected_output"])
    if verdict == "CE":
        assert sub["compile_output"] and sub["time"] is None
    if verdict == "MLE":
        assert message == "Memory limit exceeded" and sub["exit_signal"] == 9
    if verdict == "SYS":
        assert {50: "mount", 54: "socket", 71: "chroot"}[lang] in message
    if verdict == "TLE":
        assert float(sub["time"]) >= 0.3
    if verdict == "RE":
        assert sub["exit_code"] in (3, 4, 5) and message == f"Exited with error status {sub['exit_code']}"
    if verdict not in ("CE",):
        assert sub["time"] is not None and sub["wall_time"] is not None and isinstance(sub["memory"], int)
    for stamp in (sub["created_at"], sub["finished_at"]):
        time.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert set(sub) == set(JUDGE0_COLUMNS), set(sub) ^ set(JUDGE0_COLUMNS)


JUDGE0_COLUMNS = ("source_code", "language_id", "stdin", "expected_output", "stdout", "status_id", "created_at",
                  "finished_at", "time", "memory", "stderr", "token", "number_of_runs", "cpu_time_limit",
                  "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit", "max_processes_and_or_threads",
                  "enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
                  "max_file_size", "compile_output", "exit_code", "exit_signal", "message", "wall_time",
                  "compiler_options", "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
                  "additional_files", "enable_network", "status", "language")


@pytest.mark.parametrize("lang,source", [
    (62, "import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner("
         "System.in); System.out.println(s.nextLong() + s.nextLong()); } }\n"),
    (63, "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n"),
    (46, "read a b\necho $((a + b))\n"),
], ids=["java", "node", "bash"])
def test_other_installed_languages_accept_a_plus_b(server, lang, source):
    listed = {entry["id"] for entry in server.http.get("/languages").json()}
    assert lang in listed, f"language {lang} is not offered: {server.http.get('/languages/all').json()}"
    r = server.submit({"wait": "true", "fields": "*"}, language_id=lang, source_code=source, stdin="20 22\n",
                      expected_output="42\n")
    assert r.status_code == 201, r.text
    assert r.json()["status"]["id"] == 3, r.json()
    assert r.json()["stdout"] == "42\n"


def test_missing_toolchains_are_not_offered_and_say_why(server):
    offered = {e["id"] for e in server.http.get("/languages").json()}
    everything = server.http.get("/languages/all").json()
    assert {50, 52, 54, 71} <= offered
    for entry in everything:
        if entry["is_archived"]:
            assert entry["id"] not in offered and "not present on this host" in entry["unavailable"], entry
            r = server.submit(language_id=entry["id"], source_code="x")
            assert r.status_code == 422 and "doesn't exist" in r.json()["language_id"][0]
    one = server.http.get("/languages/50").json()
    assert one["source_file"] == "main.c" and "gcc" in one["compile_cmd"] and one["run_cmd"] == "/box/main"


# ------------------------------------------------------------------ the official SDK and judge0-client

def sdk_client(server, headers=None):
    import judge0
    client = judge0.Client(server.url, headers=dict(headers or {}))
    assert client.endpoint.startswith("http://127.0.0.1:"), client.endpoint
    assert str(client.client.base_url).startswith("http://127.0.0.1:")
    return client


def test_official_sdk_runs_with_an_alias_and_an_id(server):
    import judge0
    client = sdk_client(server)
    result = judge0.run(source_code=PY_AB, stdin="2 40\n", language=judge0.PYTHON, client=client)
    assert result.status == judge0.Status.ACCEPTED and result.stdout == "42\n"
    assert result.time is not None and result.memory > 0
    result = judge0.run(source_code=C_AB, stdin="1 1\n", language=50, client=client)
    assert result.status == judge0.Status.ACCEPTED and result.stdout == "2\n"
    result = judge0.run(source_code=CPP_AB, stdin="1 2\n", language=judge0.CPP, client=client)
    assert result.status == judge0.Status.ACCEPTED and result.stdout == "3\n"


def test_official_sdk_test_cases_use_the_batch_endpoints(server):
    import judge0
    client = sdk_client(server)
    results = judge0.run(source_code=C_AB, language=judge0.C, client=client,
                         test_cases=[("1 2\n", "3\n"), ("10 20\n", "30\n"), ("2 2\n", "5\n")])
    assert [r.status for r in results] == [judge0.Status.ACCEPTED, judge0.Status.ACCEPTED,
                                           judge0.Status.WRONG_ANSWER]
    assert [r.stdout for r in results] == ["3\n", "30\n", "4\n"]


def test_official_sdk_sees_compile_errors_and_time_limits(server):
    import judge0
    client = sdk_client(server)
    ce = judge0.run(source_code="int main( {", language=judge0.C, client=client)
    assert ce.status == judge0.Status.COMPILATION_ERROR and "error" in ce.compile_output
    tle = judge0.run(source_code="while True: pass", language=judge0.PYTHON, client=client, cpu_time_limit=0.3,
                     cpu_extra_time=0.1)
    assert tle.status == judge0.Status.TIME_LIMIT_EXCEEDED


def test_judge0_client_creates_polls_and_reads_workers(server):
    from judge0_client import Judge0Client
    from judge0_client.models.base_submission import BaseSubmission

    class Submission(BaseSubmission):
        source_code: str
        language_id: int

        def to_body(self):
            body = self.model_dump(exclude_none=True)
            for f in ("source_code", "stdin", "expected_output"):
                if f in body:
                    body[f] = b64(body[f])
            return body

    async def go():
        async with Judge0Client(server.url) as client:
            assert str(client.client.base_url).startswith("http://127.0.0.1:")
            made = await client.create_submission(Submission(source_code="print(input()[::-1])", language_id=71,
                                                             stdin="olleh"))
            for _ in range(1200):
                detail = await client.get_submission(made.token)
                if detail.status.id not in (1, 2):
                    break
                await asyncio.sleep(0.05)
            mle = await client.create_submission(Submission(source_code="x = b'x' * (300 << 20)", language_id=71,
                                                            memory_limit=65536))
            for _ in range(1200):
                mle_detail = await client.get_submission(mle.token)
                if mle_detail.status.id not in (1, 2):
                    break
                await asyncio.sleep(0.05)
            return detail, mle_detail, await client.get_workers(), await client.get_about()

    detail, mle, workers, about = asyncio.run(go())
    assert detail.status.id == 3 and detail.stdout == "hello\n"
    assert mle.status.id == 11 and mle.message == "Memory limit exceeded"    # judge0-client decodes message
    assert workers[0].available == 2 and about.version == "1.13.1"


def test_config_info_has_every_key_the_sdk_requires(server):
    from judge0.base_types import Config
    info = server.http.get("/config_info").json()
    assert set(info) == set(Config.model_fields) and len(info) == 39
    Config(**info)


# ------------------------------------------------------------------ the rest of the Judge0 surface

def test_plain_text_requests_and_the_default_fields(server):
    r = server.submit({"wait": "true"}, language_id=71, source_code="print(input())", stdin="plain")
    assert r.status_code == 201
    assert set(r.json()) == {"token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"}
    assert r.json()["stdout"] == "plain\n"
    token = r.json()["token"]
    sub = server.http.get(f"/submissions/{token}", params={"fields": "stdout,status_id,language"}).json()
    assert sub == {"stdout": "plain\n", "status_id": 3, "language": {"id": 71, "name": "Python (3.11)"}}
    bad = server.http.get(f"/submissions/{token}", params={"fields": "stdout,queue_host"})
    assert bad.status_code == 400 and "queue_host" in bad.json()["error"]
    bad = server.submit({"wait": "true", "fields": "nope"}, language_id=71, source_code="print(1)")
    assert bad.status_code == 400 and "nope" in bad.json()["error"]
    assert server.http.get("/submissions/not-a-token").status_code == 404


def test_non_utf8_output_needs_base64(server):
    token = server.submit(language_id=71, source_code="import sys; sys.stdout.buffer.write(b'\\xff\\xfe')").json()["token"]
    sub = server.judged(token, base64_encoded="true")
    assert base64.b64decode(sub["stdout"]) == b"\xff\xfe"
    r = server.http.get(f"/submissions/{token}")
    assert r.status_code == 400 and "base64_encoded=true" in r.json()["error"]


def test_batch_get_list_and_delete(server):
    made = server.http.post("/submissions/batch", json={"submissions": [
        {"language_id": 71, "source_code": "print(1)"}, {"language_id": 9999, "source_code": "x"},
        {"language_id": 71, "source_code": "print(2)"}]})
    assert made.status_code == 201
    answers = made.json()
    assert "token" in answers[0] and "language_id" in answers[1] and "token" in answers[2]
    tokens = [answers[0]["token"], answers[2]["token"]]
    for t in tokens:
        server.judged(t)
    got = server.http.get("/submissions/batch", params={"tokens": ",".join(tokens + ["missing"]),
                                                        "fields": "token,stdout"}).json()
    assert got["submissions"][:2] == [{"token": tokens[0], "stdout": "1\n"}, {"token": tokens[1], "stdout": "2\n"}]
    assert got["submissions"][2] is None
    page = server.http.get("/submissions", params={"page": 1, "per_page": 2}).json()
    assert len(page["submissions"]) == 2 and page["meta"]["current_page"] == 1
    assert page["meta"]["total_count"] >= 2 and page["meta"]["prev_page"] is None
    gone = server.http.delete(f"/submissions/{tokens[0]}")
    assert gone.status_code == 200 and base64.b64decode(gone.json()["stdout"]) == b"1\n"
    assert server.http.get(f"/submissions/{tokens[0]}").status_code == 404


def test_info_routes(server):
    statuses = server.http.get("/statuses").json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    assert server.http.get("/about").json()["version"] == "1.13.1"
    assert server.http.get("/version").text == "1.13.1"
    info = server.http.get("/system_info").json()
    assert int(info["CPU(s)"]) >= 1 and info["Mem"].endswith("G")
    workers = server.http.get("/workers").json()[0]
    assert set(workers) == {"queue", "size", "available", "idle", "working", "paused", "failed"}
    assert server.http.post("/authenticate").status_code == 200
    assert server.http.post("/authorize").status_code == 200
    assert server.http.get("/docs").status_code == 200 and "/api/v1/run" in server.http.get("/openapi.json").text


def test_stderr_redirect_arguments_options_and_runs(server):
    r = server.submit({"wait": "true", "fields": "stdout,stderr,status"}, language_id=50,
                      source_code='#include <stdio.h>\nint main(int c, char**v){fprintf(stderr,"E%s ", v[1]); '
                                  'fflush(stderr); printf("O%d\\n", X); return 0;}',
                      command_line_arguments="one two", compiler_options="-DX=7", redirect_stderr_to_stdout=True,
                      number_of_runs=3)
    # one stream holding both; the order between the two is not kept (they reach the runner by two pipes)
    assert sorted(r.json()["stdout"].split()) == ["Eone", "O7"], r.json()
    assert r.json()["stderr"] is None and r.json()["status"]["id"] == 3
    py = server.submit(language_id=71, source_code="print(1)", compiler_options="-O")
    assert py.status_code == 422 and "compiled languages" in py.json()["compiler_options"][0]


def zip_of(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            if isinstance(data, zipfile.ZipInfo):
                z.writestr(data, b"/etc/passwd")
            else:
                z.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def test_additional_files_are_there_for_compile_and_run(server):
    files = zip_of({"data.txt": "40 2\n", "inc/add.h": "#define ADD(a, b) ((a) + (b))\n"})
    r = server.submit({"wait": "true"}, language_id=50, additional_files=files,
                      source_code='#include <stdio.h>\n#include "inc/add.h"\nint main(){int a,b; FILE*f=fopen('
                                  '"data.txt","r"); fscanf(f,"%d %d",&a,&b); printf("%d\\n", ADD(a,b));}')
    assert r.status_code == 201 and r.json()["stdout"] == "42\n", r.json()


# ------------------------------------------------------------------ bad input

def test_malformed_json_and_wrong_types_name_the_field(server):
    r = server.http.post("/submissions", content=b'{"language_id": 71, "source_code": ',
                         headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = server.submit(language_id=71, source_code="print(1)", memory_limit="lots", redirect_stderr_to_stdout="yes")
    assert r.status_code == 422
    assert r.json()["memory_limit"] == ["is not an integer"]
    assert r.json()["redirect_stderr_to_stdout"] == ["must be true or false"]
    r = server.http.post("/submissions", content=b'{"language_id": 71, "source_code": "print(1)", '
                         b'"cpu_time_limit": NaN, "wall_time_limit": "Infinity"}',
                         headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"cpu_time_limit": ["is not a number"], "wall_time_limit": ["is not a number"]}
    r = server.submit(language_id=9999, source_code="x")
    assert r.status_code == 422 and "9999" in r.json()["language_id"][0]
    r = server.submit(language_id=71)
    assert r.status_code == 422 and r.json()["source_code"] == ["can't be blank"]
    r = server.http.post("/submissions", json=[1, 2])
    assert r.status_code == 422 and "submission" in r.json()


def test_limits_above_the_maxima_are_refused_naming_each(server):
    r = server.submit(language_id=71, source_code="print(1)", cpu_time_limit=16, memory_limit=512001,
                      wall_time_limit=0.5, max_processes_and_or_threads=121, number_of_runs=21, max_file_size=4097,
                      stack_limit=128001, cpu_extra_time=6)
    assert r.status_code == 422
    errors = r.json()
    assert "less than or equal to 15.0" in errors["cpu_time_limit"][0]
    assert "less than or equal to 512000" in errors["memory_limit"][0]
    assert "greater than or equal to 1" in errors["wall_time_limit"][0]
    for field in ("max_processes_and_or_threads", "number_of_runs", "max_file_size", "stack_limit", "cpu_extra_time"):
        assert "less than or equal to" in errors[field][0], field
    r = server.submit(language_id=71, source_code="print(1)", enable_network=True)
    assert r.status_code == 422 and "allow_enable_network" in r.json()["enable_network"][0]
    r = server.submit(language_id=71, source_code="print(1)", callback_url="http://127.0.0.1:1/")
    assert r.status_code == 422 and "--allow-callback" in r.json()["callback_url"][0]


def test_invalid_base64_is_refused(server):
    r = server.submit({"base64_encoded": "true"}, language_id=71, source_code="not*base64!", stdin=b64("ok"))
    assert r.status_code == 422 and "base64" in r.json()["source_code"][0] and "stdin" not in r.json()


@pytest.mark.parametrize("entries,why", [
    ({"../escape.txt": "x"}, "climbs out"),
    ({"/abs.txt": "x"}, "relative"),
    ({"a/../../b": "x"}, "climbs out"),
    ({"link": "symlink"}, "symlinks are refused"),
    ({"main.c": "int x;"}, "replace the submission's own"),
    ({"big": "\0" * (10241 * 1024)}, "max_extract_size"),
], ids=["dotdot", "absolute", "nested-dotdot", "symlink", "replaces-source", "bomb"])
def test_a_hostile_zip_is_refused_and_writes_nothing_outside(server, entries, why):
    if entries.get("link") == "symlink":
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        entries = {"link": info}
    before = set(os.listdir(server.data))
    r = server.submit(language_id=50, source_code="int main(){}", additional_files=zip_of(entries))
    assert r.status_code == 422, r.text
    assert why in r.json()["additional_files"][0]
    assert set(os.listdir(server.data)) == before
    assert not os.path.exists(os.path.join(server.data, "db", "escape.txt"))
    [scratch] = os.listdir(os.path.join(server.data, "db", "tmp"))
    assert all(n.startswith(("sandbox-", "submission-"))          # only runs in flight, nothing of the zip
               for n in os.listdir(os.path.join(server.data, "db", "tmp", scratch)))


def test_a_body_over_the_limit_is_413_with_or_without_a_length(server):
    big = json.dumps({"language_id": 71, "source_code": "#" * (2 << 20)}).encode()
    r = server.http.post("/submissions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_size" in r.json()["error"]

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    r = server.http.post("/submissions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = server.http.post("/api/v1/run", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_size" in r.json()["error"]


def test_a_sandbox_failure_is_internal_error_and_an_unrunnable_program_exec_format_error(make_server, user):
    data = _data_dir(user)
    broken = write(os.path.join(data, "broken-run.yaml"),
                   "extends: c-run\nbinds: [/nonexistent/sandbox-test-dir]\n", owner=user)
    # a "compiler" that leaves a text file as the program: the exec step fails, Judge0's 14
    text = write(os.path.join(data, "text-compile.yaml"),
                 "extends: c-compile\nscript: {interpreter: [cp, '{script}', main]}\n", owner=user)
    table = write(os.path.join(data, "languages.yaml"),
                  "- {id: 50, name: C, source: main.c, compile: c-compile, artifact: main,\n"
                  f"   run: {{profile: {broken}, argv: [/box/main]}}}}\n"
                  f"- {{id: 43, name: Text, source: main.c, compile: {text}, artifact: main,\n"
                  "   run: {profile: c-run, argv: [/box/main]}}\n", owner=user)
    s = make_server("--languages", table, data=data)
    r = s.submit({"wait": "true", "fields": "status,message"}, language_id=50, source_code="int main(){}")
    assert r.status_code == 201
    assert r.json()["status"]["id"] == 13 and "/nonexistent/sandbox-test-dir" in r.json()["message"], r.json()
    r = s.submit({"wait": "true", "fields": "status,message"}, language_id=43, source_code="not a program")
    assert r.json()["status"]["id"] == 14 and "Exec format error" in r.json()["message"], r.json()
    assert "Traceback" not in s.log()


# ------------------------------------------------------------------ the server itself

def running_program(server, timeout=60):
    """Wait until the server runs a submitted program: a descendant `python3.11 -I /box/main.py`.
    (A compile's working directory is the core's, in /dev/shm, and a SIGKILLed runner cannot
    remove it; a run has none, so the test kills there and leaves nothing behind.)"""
    import psutil
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.Process(server.proc.pid).children(recursive=True):
            try:
                if p.cmdline()[-1:] == ["/box/main.py"]:
                    return
            except psutil.Error:
                continue
        time.sleep(0.01)
    pytest.fail(f"no program started within {timeout} s:\n{server.log()}")


def test_a_server_killed_mid_queue_loses_nothing(make_server, user):
    """SIGKILL while one submission runs and others wait; a restart on the same database runs each."""
    s = make_server(workers=1)
    burn = "import time\nwhile time.process_time() < 0.3: pass\nprint(input())\n"
    body = {"submissions": [{"language_id": 71, "source_code": burn, "stdin": f"n{i}"} for i in range(6)]}
    tokens = [a["token"] for a in s.http.post("/submissions/batch", json=body).json()]
    running_program(s)      # killed while a program runs (not while it compiles: see running_program)
    old = s.proc.pid
    s.kill(signal.SIGKILL)
    s.start()
    for i, t in enumerate(tokens):
        sub = s.judged(t)
        assert sub["status"]["id"] == 3 and sub["stdout"] == f"n{i}\n", sub
    scratch = os.listdir(os.path.join(s.data, "db", "tmp"))     # the killed server's scratch is gone
    assert len(scratch) == 1 and not scratch[0].startswith(f"{old}-"), scratch
    log = s.log()
    assert all(f"token={t}" in log for t in tokens)
    assert f"token={tokens[0]} kind=judge0 language=71 status=3" in log


def test_a_full_queue_answers_503_with_retry_after(make_server):
    s = make_server("--max-queue", "2", "--log-json", workers=1)
    burn = "import time\nwhile time.process_time() < 0.5: pass\n"
    codes = [s.submit(language_id=71, source_code=burn) for _ in range(5)]
    full = [r for r in codes if r.status_code == 503]
    assert full, [r.status_code for r in codes]
    assert full[0].json()["error"] == "queue is full" and int(full[0].headers["retry-after"]) >= 1
    accepted = [r.json()["token"] for r in codes if r.status_code == 201]
    for t in accepted:
        assert s.judged(t)["status"]["id"] == 3
    lines = [json.loads(line) for line in s.log().splitlines() if line.startswith("{")]
    assert {line["token"] for line in lines} == set(accepted)
    assert all(line["status"] == 3 and line["language"] == 71 and float(line["time"]) >= 0.5 for line in lines)


def test_a_token_is_required_when_set_and_the_sdk_sends_it(make_server):
    s = make_server("--auth-token", "s3cret")
    assert s.http.get("/languages").status_code == 401
    assert s.http.get("/languages", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert s.http.get("/languages", headers={"X-Auth-Token": "s3cret"}).status_code == 200
    assert s.http.get("/languages", params={"X-Auth-Token": "s3cret"}).status_code == 200
    assert s.http.post("/authenticate", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert s.http.get("/api/v1/health").status_code == 200
    import judge0
    client = sdk_client(s, {"X-Auth-Token": "s3cret"})
    assert judge0.run(source_code="print(7)", language=71, client=client).stdout == "7\n"


def test_non_loopback_without_a_token_is_refused(user):
    r = user.run([SANDBOX, "serve", "--host", "0.0.0.0", "--port", str(free_port())], timeout=60)
    assert r.returncode == 125
    err = r.stderr.decode()
    assert "refusing to listen on 0.0.0.0 without a token" in err and "--auth-token" in err
    assert "Traceback" not in err


def test_serve_without_the_extra_says_how_to_get_it(user):
    code = ("import sys; sys.modules['fastapi'] = None\nfrom sandbox.cli import main\n"
            "sys.exit(main(['serve']))")
    r = user.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == 125
    assert "pip install 'sandbox[service]'" in r.stderr.decode() and "Traceback" not in r.stderr.decode()


def test_the_service_writes_only_its_data_directory(server):
    """After its runs the data directory holds the database and an empty scratch directory."""
    for t in [server.submit(language_id=50, source_code=C_AB, stdin="1 2").json()["token"]]:
        server.judged(t)
    deadline = time.monotonic() + 10
    while server.http.get("/workers").json()[0]["working"] and time.monotonic() < deadline:
        time.sleep(0.05)
    db = os.path.join(server.data, "db")
    assert set(os.listdir(db)) <= {"submissions.sqlite3", "submissions.sqlite3-wal", "submissions.sqlite3-shm", "tmp"}
    [scratch] = os.listdir(os.path.join(db, "tmp"))           # this server's, named by its pid
    assert scratch.startswith(f"{server.proc.pid}-")
    if not server.http.get("/workers").json()[0]["working"]:
        assert os.listdir(os.path.join(db, "tmp", scratch)) == []
    with open(os.path.join(db, "submissions.sqlite3"), "rb") as f:
        assert f.read(16) == b"SQLite format 3\0"
    import sqlite3
    con = sqlite3.connect(f"file:{os.path.join(db, 'submissions.sqlite3')}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


# ------------------------------------------------------------------ /api/v1

def test_api_run_returns_the_full_report(server):
    from sandbox.report import FIELDS
    r = server.http.post("/api/v1/run", json={"profile": "shell", "argv": ["sh", "-c", "cat /box/in.txt; read x; echo $x"],
                                              "stdin": "typed\n", "files_in": {"/box/in.txt": b64("given\n")},
                                              "limits": {"cpu_time": "1s", "memory": "64M"}})
    assert r.status_code == 200, r.text
    report = r.json()
    assert set(FIELDS) <= set(report)
    assert report["status"] == "OK" and report["stdout"] == "given\ntyped\n" and report["profile"] == "shell"
    assert report["limits"]["cpu_time"]["value"] == 1.0
    compiled = server.http.post("/api/v1/run", json={"language": "cpp", "source": CPP_AB, "stdin": "5 6"}).json()
    assert compiled["status"] == "OK" and compiled["stdout"] == "11\n" and compiled["compile"]["status"] == "OK"
    ce = server.http.post("/api/v1/run", json={"language": 50, "source": "int main( {"}).json()
    assert ce["status"] == "CE" and "error" in ce["compile"]["stderr"]


def test_api_run_refuses_what_it_cannot_do_naming_the_field(server):
    cases = [({"profile": "../../etc/x", "argv": ["true"]}, "profile"),
             ({"profile": "shel", "argv": ["true"]}, "profile"),
             ({"profile": "shell"}, "argv"),
             ({"language": "cobol", "source": "x"}, "language"),
             ({"profile": "shell", "argv": ["true"], "limits": {"memory": "100G"}}, "limits.memory"),
             ({"profile": "shell", "argv": ["true"], "limits": {"cpu_time": "lots"}}, "limits.cpu_time"),
             ({"profile": "shell", "argv": ["true"], "limits": {"processes": 0}}, "limits.processes"),
             ({"language": "c", "source": "int main(){}", "limits": {"wall_time": -1}}, "limits.wall_time"),
             ({"profile": "shell", "argv": ["true"], "stdin_base64": "***"}, "stdin_base64")]
    for body, field in cases:
        r = server.http.post("/api/v1/run", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert "shell" in server.http.post("/api/v1/run", json=cases[1][0]).json()["fix"]
    r = server.http.post("/api/v1/run", json={"profile": "shell", "argv": ["true"], "limit": {}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "limit"]


def test_api_submissions_check_each_test_with_the_chosen_checker(server):
    sqrt = "import math\nprint(math.sqrt(float(input())))\n"
    body = {"language": "python", "source": sqrt, "wait": True,
            "checker": {"type": "float", "abs": 1e-6, "rel": 1e-6},
            "tests": [{"stdin": "2", "expected": "1.4142136"}, {"stdin": "9", "expected": "3"},
                      {"stdin": "10", "expected": "3.2"}]}
    r = server.http.post("/api/v1/submissions", json=body)
    assert r.status_code == 201, r.text
    done = r.json()
    assert [t["verdict"] for t in done["tests"]] == ["AC", "AC", "WA"] and done["verdict"] == "WA"
    assert done["tests"][0]["report"]["stdout"].startswith("1.414213")
    assert server.http.get(f"/api/v1/submissions/{done['id']}").json()["verdict"] == "WA"
    queued = server.http.post("/api/v1/submissions", json=dict(body, wait=False, checker={"type": "tokens"},
                                                               tests=[{"stdin": "4", "expected": "2.0"}])).json()
    deadline = time.monotonic() + 60
    while (got := server.http.get(f"/api/v1/submissions/{queued['id']}").json())["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert got["verdict"] == "AC"
    for kind, out, ok in (("exact", "2.0\n", True), ("exact", "2.0", False), ("lines", "2.0  \n\n", True)):
        from sandbox.service.native import check
        assert check(kind, out, "2.0\n") is ok, (kind, out)
    tle = server.http.post("/api/v1/submissions", json={"language": "c", "wait": True, "source": C_CASES["TLE"][0],
                                                        "limits": {"cpu_time": 0.3},
                                                        "tests": [{"stdin": "", "expected": ""}]}).json()
    assert tle["verdict"] == "TLE" and tle["tests"][0]["report"]["limit_hit"] == "cpu_time"
    ce = server.http.post("/api/v1/submissions", json={"language": "c", "wait": True, "source": "int main( {",
                                                       "tests": [{"stdin": "", "expected": ""}]}).json()
    assert ce["verdict"] == "CE" and ce["tests"] == []


def test_api_health(server):
    h = server.http.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["workers"] == 2 and h["queue"] >= 0 and "done" in h["submissions"]


def test_callbacks_go_only_to_allowed_hosts(make_server):
    """callback_url: a PUT of the finished submission (default fields, base64) to an allowed host;
    any other host, and a server without --allow-callback, refuse it at submission."""
    import http.server
    import threading
    got = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            got.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        s = make_server("--allow-callback", "127.0.0.1")
        assert s.http.get("/config_info").json()["enable_callbacks"] is True
        url = f"http://127.0.0.1:{receiver.server_port}/done"
        token = s.submit(language_id=71, source_code="print('called')", callback_url=url).json()["token"]
        s.judged(token)
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        path, body = got[0]
        assert path == "/done" and body["token"] == token and body["status"]["id"] == 3
        assert base64.b64decode(body["stdout"]) == b"called\n"
        other = s.submit(language_id=71, source_code="print(1)", callback_url="http://localhost.example:9/x")
        assert other.status_code == 422 and "not one this server calls back" in other.json()["callback_url"][0]
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_api_checker_programs_and_interactors_run_in_their_own_sandboxes(server):
    checker = ("import sys\ninp, out, ans = (open(p).read() for p in sys.argv[1:4])\n"
               "n = int(inp)\nsys.exit(0 if sorted(map(int, out.split())) == [1, n] else 1)\n")
    body = {"language": "c", "wait": True, "source": '#include <stdio.h>\nint main(){int n; scanf("%d",&n); '
            'if (n == 7) printf("%d 1\\n", n); else printf("1 %d\\n", n + (n == 5));}',
            "checker": {"type": "program", "program": {"language": "python", "source": checker}},
            "tests": [{"stdin": "7"}, {"stdin": "3"}, {"stdin": "5"}]}
    done = server.http.post("/api/v1/submissions", json=body).json()
    assert [t["verdict"] for t in done["tests"]] == ["AC", "AC", "WA"], done
    assert done["tests"][2]["checker"]["exit_code"] == 1
    broken = server.http.post("/api/v1/submissions", json=dict(body, checker={
        "type": "program", "program": {"language": "c", "source": "int main( {"}})).json()
    assert broken["verdict"] == "XX" and broken["message"] == "the checker did not compile"
    interactor = ("import sys\nsecret = int(open(sys.argv[1]).read())\n"
                  "for _ in range(20):\n    g = int(input())\n"
                  "    if g == secret:\n        print('=', flush=True)\n        sys.exit(0)\n"
                  "    print('<' if g < secret else '>', flush=True)\nsys.exit(1)\n")
    guess = ("lo, hi = 1, 100\nwhile True:\n    m = (lo + hi) // 2\n    print(m, flush=True)\n    r = input()\n"
             "    if r == '=':\n        break\n    lo, hi = (m + 1, hi) if r == '<' else (lo, m - 1)\n")
    done = server.http.post("/api/v1/submissions", json={
        "language": "python", "source": guess, "wait": True, "interactor": {"language": "python", "source": interactor},
        "tests": [{"stdin": "1"}, {"stdin": "64"}, {"stdin": "100"}]}).json()
    assert [t["verdict"] for t in done["tests"]] == ["AC", "AC", "AC"], done
    idle = server.http.post("/api/v1/submissions", json={
        "language": "python", "source": "import time\ntime.sleep(30)", "wait": True, "limits": {"wall_time": 1},
        "interactor": {"language": "python", "source": interactor}, "tests": [{"stdin": "5"}]}).json()
    assert idle["verdict"] == "TLE", idle


def test_sigterm_stops_promptly_and_leaves_the_queue_for_the_next_start(make_server):
    """A stopped server finishes the submission it is on and starts no other: the rest stay queued
    in the database and run after the next start."""
    s = make_server(workers=1)
    burn = "import time\nwhile time.process_time() < 0.3: pass\nprint('done')\n"
    tokens = [a["token"] for a in s.http.post("/submissions/batch", json={"submissions": [
        {"language_id": 71, "source_code": burn} for _ in range(8)]}).json()]
    while s.http.get(f"/submissions/{tokens[0]}").json()["status"]["id"] == 1:
        time.sleep(0.02)
    s.kill(signal.SIGTERM)
    assert s.proc.returncode == 0, s.log()
    assert "Traceback" not in s.log()
    s.start()
    assert s.http.get(f"/submissions/{tokens[-1]}").json()["status"]["id"] in (1, 2)   # not judged while stopped
    assert all(s.judged(t)["stdout"] == "done\n" for t in tokens)


@pytest.mark.parametrize("files,options,what", [
    ({}, ["--workers", "0"], "--workers must be at least 1"),
    ({}, ["--port", "{busy}"], "cannot listen on 127.0.0.1:"),
    ({"l.yaml": "- {id: 50, name: C}\n"}, ["--languages", "{d}/l.yaml"], "missing key 'source'"),
    ({"l.yaml": "- {id: 50, name: C, source: a.c, compile: c-compile, artifact: a, run: {profile: c-run, "
                "argv: [/box/a]}, extra: 1}\n"}, ["--languages", "{d}/l.yaml"], "unknown key 'extra'"),
    ({"c.yaml": "max_queue_sise: 5\n"}, ["--config", "{d}/c.yaml"], "did you mean 'max_queue_size'?"),
    ({"c.yaml": "max_queue_size: many\n"}, ["--config", "{d}/c.yaml"], "max_queue_size must be int"),
], ids=["workers", "port-in-use", "languages-missing-key", "languages-unknown-key", "config-typo", "config-type"])
def test_bad_serve_options_exit_125_saying_what_and_where(user, box, files, options, what):
    for name, text in files.items():
        write(os.path.join(box, name), text, owner=user)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    options = [o.replace("{d}", box).replace("{busy}", str(busy.getsockname()[1])) for o in options]
    try:
        r = user.run([SANDBOX, "serve", "--port", str(free_port()), "--database", f"{box}/db/s.sqlite3", *options],
                     timeout=60)
    finally:
        busy.close()
    err = r.stderr.decode()
    assert r.returncode == 125 and what in err and "Traceback" not in err, err


def test_unknown_language_ids_and_bad_paging_are_4xx(server):
    assert server.http.get("/languages/9999").status_code == 404
    assert server.http.get("/languages/abc").status_code == 404
    r = server.http.get("/submissions", params={"page": "0"})
    assert r.status_code == 400 and "page" in r.json()["error"]
    r = server.http.get("/submissions", params={"per_page": "100000"})
    assert r.status_code == 400 and "per_page must be at most 1000" in r.json()["error"]
    r = server.http.get("/submissions/batch")
    assert r.status_code == 400 and "tokens" in r.json()["fix"]
    r = server.http.post("/submissions/batch", json={"submissions": [{"language_id": 71, "source_code": "1"}] * 21})
    assert r.status_code == 422 and "max_submission_batch_size" in r.json()["submissions"][0]


def test_the_sdks_default_language_trap_is_caught_by_the_loopback_guard(server):
    """judge0.run without language= resolves the SDK's public-cloud client: the guard stops it before
    any packet leaves (this is why every call above passes language= and an explicit client)."""
    import judge0
    with pytest.raises(BaseException) as caught:
        judge0.run(source_code="print(1)")
    chain, e = [], caught.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("only loopback is allowed" in text for text in chain), chain


def test_the_sdk_reports_a_wrong_token_and_ruby_style_base64_is_accepted(make_server):
    import judge0
    s = make_server("--auth-token", "right")
    with pytest.raises(RuntimeError, match="Authentication failed"):
        judge0.Client(s.url, headers={"X-Auth-Token": "wrong"})
    ruby = base64.encodebytes(("print('x' * 50)\n" * 6).encode()).decode()       # a newline every 76 chars
    assert "\n" in ruby.rstrip("\n")
    r = s.http.post("/submissions", params={"base64_encoded": "true", "wait": "true"}, headers={"X-Auth-Token": "right"},
                    json={"language_id": 71, "source_code": ruby})
    assert r.status_code == 201 and base64.b64decode(r.json()["stdout"]) == ("x" * 50 + "\n").encode() * 6


def test_no_value_of_any_type_in_any_field_is_a_server_error(server):
    fields = ["language_id", "source_code", "stdin", "expected_output", "compiler_options", "command_line_arguments",
              "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
              "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
              "enable_per_process_and_thread_memory_limit", "max_file_size", "redirect_stderr_to_stdout",
              "enable_network", "number_of_runs", "additional_files", "callback_url"]
    for field in fields:
        for value in (None, -1, 1e300, "x", "", [], {}, True, "\udcff"):
            for encoded in ("true", "false"):
                # always one bad field besides (nothing gets queued), so every value is parsed and answered
                other = "callback_url" if field != "callback_url" else "enable_network"
                body = {"language_id": 71, "source_code": b64("print(1)") if encoded == "true" else "print(1)",
                        other: "x", field: value}
                r = server.http.post("/submissions", params={"base64_encoded": encoded},
                                     content=json.dumps(body).encode(), headers={"content-type": "application/json"})
                assert r.status_code == 422 and other in r.json(), (field, value, r.status_code, r.text)
    for body in ([1, "x", None], {"submissions": "x"}, {"submissions": [[]]}, "str", 1, None):
        r = server.http.post("/submissions/batch", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)


def test_a_multi_file_program_compiles_and_runs_its_scripts(server):
    """Judge0's language 89: the zip's `compile` script builds, its `run` script runs, arguments reach both."""
    files = zip_of({"compile": "gcc -O2 \"$@\" -o prog src/main.c\n",
                    "run": "./prog \"$@\" < /dev/stdin\n",
                    "src/main.c": '#include <stdio.h>\nint main(int c, char **v){int a, b; scanf("%d %d", &a, &b); '
                                  'printf("%s %d\\n", c > 1 ? v[1] : "-", a * b * K);}\n'})
    r = server.submit({"wait": "true", "fields": "status,stdout,compile_output,message"}, language_id=89,
                      additional_files=files, stdin="6 7\n", compiler_options="-DK=1",
                      command_line_arguments="product")
    assert r.status_code == 201 and r.json()["status"]["id"] == 3, r.json()
    assert r.json()["stdout"] == "product 42\n"
    ce = server.submit({"wait": "true", "fields": "status,compile_output"}, language_id=89, additional_files=files)
    assert ce.json()["status"]["id"] == 6 and "K" in ce.json()["compile_output"]     # K undefined without -DK
    for extra, why in (({"compile": "true\n"}, "needs a `run` script"), (None, "needs its files")):
        r = server.submit(language_id=89, **({"additional_files": zip_of(extra)} if extra else {}))
        assert r.status_code == 422 and why in r.json()["additional_files"][0], r.text
