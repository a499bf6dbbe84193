"""This project's own API, /api/v1: the full sandbox report, per-test verdicts, checkers.

Where Judge0's surface squeezes a run into its 14 statuses, this one returns
what `sandbox.run` reports (every field of the README's report) and lets the
client say how outputs are compared.  Requests are pydantic models, so the
OpenAPI document at /docs describes them, and an unknown or mistyped field is a
422 naming it.  Limits are the sandbox's own units ("1s", "64M") and are capped
by the same maxima as Judge0's (GET /config_info).
"""
import base64
import math
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SandboxError
from . import execute
from .workers import now

LIMIT_KEYS = ("cpu_time", "wall_time", "memory", "processes", "output", "file_size", "stack", "open_files")
OUTPUT_CAP = 64 << 20


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(Strict):
    cpu_time: str | float | None = Field(None, description='CPU time of the whole process tree: 1.5, "500ms"')
    wall_time: str | float | None = None
    memory: str | int | None = Field(None, description='bytes or "256M"')
    processes: int | None = None
    output: str | int | None = None
    file_size: str | int | None = None
    stack: str | int | None = None
    open_files: int | None = None


class RunRequest(Strict):
    profile: str | None = Field(None, description="a built-in profile (GET /api/v1/profiles), with argv")
    argv: list[str] | None = None
    language: str | int | None = Field(None, description="a language id or alias, with source")
    source: str | None = None
    args: list[str] = []
    stdin: str = ""
    stdin_base64: str | None = None
    files_in: dict[str, str] = Field({}, description="{path inside: base64 content}")
    files_out: list[str] = []
    limits: Limits = Limits()


class Test(Strict):
    stdin: str = ""
    expected: str = ""


class Program(Strict):
    language: str | int
    source: str


class Checker(Strict):
    type: Literal["exact", "tokens", "lines", "float", "program"] = "tokens"
    abs: float = Field(1e-9, description="float: the absolute error allowed")
    rel: float = Field(1e-9, description="float: the relative error allowed")
    program: Program | None = Field(None, description="program: run as `checker /box/input /box/output "
                                    "/box/answer` in its own sandbox; exit 0 AC, 1 WA, anything else XX")


class SubmissionRequest(Strict):
    language: str | int
    source: str
    tests: list[Test] = Field(min_length=1, max_length=100)
    checker: Checker = Checker()
    interactor: Program | None = Field(None, description="interactive: run with the test's stdin as /box/input, "
                                       "its stdout the solution's stdin and the other way round; exit 0 AC, 1 WA")
    limits: Limits = Limits()
    wait: bool = False


def check(kind, out, expected, abs_err=1e-9, rel_err=1e-9):
    """Whether `out` matches `expected` (both text) by the checker's rule."""
    if kind == "exact":
        return out == expected
    if kind == "lines":
        return [line.rstrip() for line in out.rstrip().split("\n")] == \
               [line.rstrip() for line in expected.rstrip().split("\n")]
    got, want = out.split(), expected.split()
    if kind == "tokens":
        return got == want
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        try:
            a, b = float(g), float(w)
        except ValueError:
            if g != w:
                return False
            continue
        if not (math.isclose(a, b, rel_tol=rel_err, abs_tol=abs_err) or (math.isnan(a) and math.isnan(b))):
            return False
    return True


def _text(data):
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), base64.b64encode(data).decode()
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode()


def report(result):
    """The whole report, with the captured output as text (when UTF-8) and base64."""
    d = result.to_dict()
    d["stdout"], d["stdout_base64"] = _text(result.stdout)
    d["stderr"], d["stderr_base64"] = _text(result.stderr)
    if result.files is not None:
        d["files"] = {k: base64.b64encode(v).decode() for k, v in result.files.items()}
        d["file_errors"] = result.file_errors
    return d


VERDICT = {"OK": "AC", "RE": "RE", "SG": "RE", "TLE": "TLE", "MLE": "MLE", "OLE": "OLE", "SYS": "SYS", "XX": "XX"}


def routes(app, state):
    from .apierror import ApiError, error
    cfg = state.settings.judge0

    def invalid(field, message, fix=None):
        return ApiError(422, {"error": message, "field": field, **({"fix": fix} if fix else {})})

    def limits_of(limits):
        """The request's limits, defaults from config_info, each checked against its maximum."""
        from ..units import parse_duration, parse_size
        given = limits.model_dump(exclude_none=True)
        out = {"cpu_time": cfg["cpu_time_limit"], "wall_time": cfg["wall_time_limit"],
               "memory": cfg["memory_limit"] * 1024, "processes": cfg["max_processes_and_or_threads"]}
        caps = {"cpu_time": cfg["max_cpu_time_limit"], "wall_time": cfg["max_wall_time_limit"],
                "memory": cfg["max_memory_limit"] * 1024, "processes": cfg["max_max_processes_and_or_threads"],
                "output": OUTPUT_CAP, "file_size": OUTPUT_CAP, "stack": cfg["max_stack_limit"] * 1024,
                "open_files": 1024}
        for key, value in given.items():
            try:
                if key in ("processes", "open_files"):
                    if value < 1:
                        raise ValueError(f"{key} must be at least 1")
                    n = value
                else:
                    n = parse_duration(value) if key.endswith("time") else parse_size(value)
            except ValueError as e:
                raise invalid(f"limits.{key}", str(e)) from None
            if n is None or n > caps[key]:
                raise invalid(f"limits.{key}", f"{value} is over this server's maximum of {caps[key]}",
                              "ask for less (the maxima are in GET /config_info)")
            out[key] = n
        return out

    def language(ref, field="language"):
        for lang in state.languages.values():
            if ref == lang.id or str(ref) == str(lang.id) or str(ref).lower() in lang.aliases:
                if lang.unavailable:
                    raise invalid(field, f"language {ref} is not available here: {lang.unavailable}")
                return lang
        names = sorted(a for lang in state.languages.values() if not lang.unavailable for a in lang.aliases)
        raise invalid(field, f"unknown language {ref!r}", f"languages: {', '.join(names)} (or a Judge0 id)")

    def decode(value, field):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise invalid(field, "is not valid base64") from None

    @app.post("/api/v1/run", tags=["sandbox"])
    async def run(req: RunRequest):
        """Run one program: a profile and argv, or a source and a language (compiled first). The
        full sandbox report comes back, with `compile` holding the compile's report."""
        import sandbox
        from ..profile import builtin_names
        limits = limits_of(req.limits)
        stdin = decode(req.stdin_base64, "stdin_base64") if req.stdin_base64 is not None else req.stdin.encode()
        files_in = {path: decode(v, f"files_in.{path}") for path, v in req.files_in.items()}
        if (req.profile is None) == (req.language is None):
            raise invalid("profile", "give either profile + argv, or language + source")
        if req.profile is not None:
            if req.profile not in builtin_names() or req.profile == "languages":
                from ..errors import did_you_mean
                raise invalid("profile", f"no built-in profile named {req.profile!r} (only built-in profiles "
                              "may be named over HTTP)", did_you_mean(req.profile, builtin_names(), "") or None)
            if not req.argv:
                raise invalid("argv", "a profile needs argv: the program and its arguments")

            def job():
                return report(sandbox.run(req.profile, req.argv, stdin=stdin, limits=limits, files_in=files_in or None,
                                          files_out=req.files_out or None))
        else:
            lang = language(req.language)
            if req.source is None:
                raise invalid("source", "a language needs a source")

            def job():
                art, compiled = execute.compile(lang, req.source.encode(), limits["memory"] // 1024, args=req.args)
                if art is None:
                    return {"status": "CE", "compile": report(compiled)}
                with art:
                    return dict(report(execute.run(art, stdin, limits)), compile=report(compiled))
        try:
            return await state.call(job)
        except SandboxError as e:
            raise ApiError(422, {"error": e.what, "where": e.where, "fix": e.fix}) from None

    @app.post("/api/v1/submissions", status_code=201, tags=["sandbox"])
    async def submit(req: SubmissionRequest):
        """Compile once, run every test, check each output: per-test verdicts with full reports."""
        lang = language(req.language)
        if (req.checker.type == "program") != (req.checker.program is not None):
            raise invalid("checker.program", "a checker of type program needs its program, and only it")
        for field, program in (("checker.program", req.checker.program), ("interactor", req.interactor)):
            if program is not None:
                language(program.language, f"{field}.language")
        stored = {"language": lang.id, "source": req.source, "tests": [t.model_dump() for t in req.tests],
                  "checker": req.checker.model_dump(), "limits": limits_of(req.limits),
                  "interactor": req.interactor.model_dump() if req.interactor else None}
        if stored["checker"]["program"]:
            stored["checker"]["program"]["language"] = language(req.checker.program.language).id
        if stored["interactor"]:
            stored["interactor"]["language"] = language(req.interactor.language).id
        if state.pool.pending() + 1 > cfg["max_queue_size"]:
            raise ApiError(503, {"error": "queue is full"}, {"Retry-After": "1"})
        token = str(uuid.uuid4())
        state.storage.add([(token, "native", stored, now())])
        if not req.wait:
            state.pool.submit([token])
            return {"id": token, "state": "queued"}
        await state.wait_for([token])
        return view(state.storage.get(token))

    @app.get("/api/v1/submissions/{token}", tags=["sandbox"])
    async def get(token: str):
        row = state.storage.get(token)
        if row is None or row["kind"] != "native":
            raise error(404, f"no submission with id {token}")
        return view(row)

    @app.get("/api/v1/workers", tags=["sandbox"])
    async def workers():
        """Each worker: host, queues, the submission it is on, its load (psutil), whether it beats."""
        return {"workers": state.pool.worker_list()}

    @app.get("/api/v1/health", tags=["sandbox"])
    async def health():
        from ..version import __version__
        return {"status": "ok", "queue": state.pool.pending(), "workers": state.pool.count,
                "busy": state.pool.busy, "submissions": state.storage.counts(), "version": __version__}


def view(row):
    return dict({"id": row["token"], "state": row["state"], "created_at": row["created_at"],
                 "finished_at": row["finished_at"]}, **(row["result"] or {}))


# A checker or an interactor is trusted no more than the solution: each runs in its own sandbox,
# under these limits, and only its exit code is believed.
HELPER_LIMITS = {"cpu_time": 10, "wall_time": 20, "memory": 512 << 20}


def process(req, languages):
    """A stored /api/v1 submission -> its verdicts (run by a worker)."""
    lang = languages[req["language"]]
    helpers, opened = {}, []
    try:
        for role, program in (("checker", req["checker"].get("program")), ("interactor", req.get("interactor"))):
            if program:
                args = ["/box/input", "/box/output", "/box/answer"] if role == "checker" else ["/box/input"]
                art, compiled = execute.compile(languages[program["language"]], program["source"].encode(),
                                                HELPER_LIMITS["memory"] // 1024, args=args)
                if art is None:
                    return {"verdict": "XX", "message": f"the {role} did not compile", role: report(compiled),
                            "tests": []}
                opened.append(art)
                helpers[role] = (art, languages[program["language"]])
        art, compiled = execute.compile(lang, req["source"].encode(), req["limits"]["memory"] // 1024)
        result = {"compile": report(compiled)}
        if art is None:
            return dict(result, verdict="CE" if compiled.status in ("OK", "RE") else VERDICT[compiled.status],
                        tests=[])
        opened.append(art)
        result["tests"] = [_test(art, test, req, helpers) for test in req["tests"]]
        result["verdict"] = next((t["verdict"] for t in result["tests"] if t["verdict"] != "AC"), "AC")
        return result
    finally:
        for a in opened:
            a.close()


def _test(art, test, req, helpers):
    import tempfile
    import sandbox
    from sandbox import judge
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(tmp, input=test["stdin"].encode(), answer=test["expected"].encode())
        if "interactor" in helpers:
            inter, inter_lang = helpers["interactor"]
            sol, it, verdict = judge.interact(
                art, inter.lang.run_argv, interactor_profile=inter_lang.run_profile,
                interactor_files={f"/box/{inter.lang.artifact}": inter.path, "/box/input": files["/box/input"]},
                solution_limits=req["limits"], interactor_limits=dict(HELPER_LIMITS, wall_time=max(
                    HELPER_LIMITS["wall_time"], 2 * req["limits"]["wall_time"])))
            return {"verdict": verdict, "report": report(sol), "interactor": report(it)}
        r = execute.run(art, test["stdin"].encode(), req["limits"])
        verdict = VERDICT[r.status]
        out = {"verdict": verdict, "report": report(r)}
        if verdict != "AC":
            return out
        ck = req["checker"]
        if "checker" in helpers:
            checker, _ = helpers["checker"]
            files.update(_files(tmp, output=r.stdout or b""))
            c = sandbox.execute(checker.plan(HELPER_LIMITS, files))
            out["checker"] = report(c)
            out["verdict"] = "AC" if c.status == "OK" else "WA" if c.status == "RE" and c.exit_code == 1 else "XX"
        elif not check(ck["type"], (r.stdout or b"").decode("utf-8", "replace"), test["expected"], ck["abs"],
                       ck["rel"]):
            out["verdict"] = "WA"
        return out


def _files(tmp, **contents):
    """Files for a helper's sandbox: {"/box/NAME": host path}, readable by the sandbox's user."""
    import os
    os.chmod(tmp, 0o755)
    paths = {}
    for name, data in contents.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        paths[f"/box/{name}"] = path
    return paths


def internal(reason):
    return {"verdict": "XX", "message": reason, "tests": []}
