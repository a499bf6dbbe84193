"""Judging on top of the runner: compile once, run many test cases, interactive pairs.

    from sandbox import judge
    art, res = judge.compile("cpp", source_bytes)        # art is None on a compile error (res says why)
    for case in cases:
        r = art.run(stdin=case.input)                    # a Result; r.stdout holds the output (capped)
    s, i, verdict = judge.interact(art, ["python3", "/box/interactor.py"], files={...})
    art.close()

Everything runs in-process (the sandbox's pre-exec work happens in the
launcher, so this is safe from threads), and a compiled artifact is bound
read-only into every run: nothing is copied per test case.
"""
import os
import shutil
import tempfile
import threading
import time
import weakref

from . import runner
from .files import bind
from .profile import load as load_profile

WORK = "/box"


class Language:
    __slots__ = ("name", "compile_profile", "run_profile", "source", "artifact", "run_argv")

    def __init__(self, name, compile_profile, run_profile, source, artifact, run_argv):
        self.name, self.compile_profile, self.run_profile = name, compile_profile, run_profile
        self.source, self.artifact, self.run_argv = source, artifact, run_argv


LANGUAGES = {
    "c": Language("c", "c-compile", "c-run", "main.c", "main", ["/box/main"]),
    "cpp": Language("cpp", "cpp-compile", "cpp-run", "main.cpp", "main", ["/box/main"]),
    "py": Language("py", "py311-compile", "py311-run", "main.py", "main.py", ["python3.11", "-I", "/box/main.py"]),
}


def language(name):
    from .errors import UsageError
    if name not in LANGUAGES:
        raise UsageError(f"unknown language {name!r}", "judge", f"languages: {', '.join(sorted(LANGUAGES))}")
    return LANGUAGES[name]


class Artifact:
    """A compiled program on the host, ready to be bound into run after run."""

    def __init__(self, lang, data, limits=None):
        self.lang = lang
        self.dir = tempfile.mkdtemp(prefix="sandbox-artifact-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, lang.artifact)
        with open(self.path, "wb") as f:
            f.write(data)
        os.chmod(self.path, 0o755)
        self._plans = {}
        self.limits = limits
        # removed by close(), or when the Artifact is collected if a caller forgets
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, True)

    def plan(self, limits=None, extra_files=None):
        """One prepared plan per set of limits: profile loading and checks happen once."""
        key = (tuple(sorted((limits or self.limits or {}).items())), tuple(sorted((extra_files or {}).items())))
        if key not in self._plans:
            binds = [bind(self.path, f"{WORK}/{self.lang.artifact}")]
            binds += [bind(host, inside) for inside, host in (extra_files or {}).items()]
            self._plans[key] = runner.prepare(self.lang.run_profile, self.lang.run_argv,
                                              limits=limits or self.limits, binds=binds)
        return self._plans[key]

    def run(self, stdin=None, limits=None, stdout=None, cancel=None, relay_timeout=None):
        """Run once on `stdin` (bytes, a path or an fd); the output is captured in the Result."""
        return runner.execute(self.plan(limits), stdin=stdin, stdout=stdout, cancel=cancel,
                              relay_timeout=relay_timeout)

    def close(self):
        self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compile(lang, source, limits=None, run_limits=None):
    """Compile `source` (bytes or a host path) in the language's compile profile.
    Returns (Artifact, Result), or (None, Result) when it did not compile."""
    from .plan import check_interpreter, environment, script_argv
    lang = language(lang) if isinstance(lang, str) else lang
    profile = load_profile(lang.compile_profile)
    # the compiler must be on the host: say which package is missing, as `run SCRIPT` would
    check_interpreter(profile, environment(profile))
    argv = script_argv(profile, lang.source)
    if isinstance(source, str):
        with open(source, "rb") as f:
            source = f.read()
    result = runner.run(profile, argv, limits=limits, files_in={f"{WORK}/{lang.source}": source},
                        files_out=[f"{WORK}/{lang.artifact}"], files_out_max=256 << 20)
    produced = (result.files or {}).get(f"{WORK}/{lang.artifact}")
    if result.status != "OK" or produced is None:
        return None, result
    return Artifact(lang, produced, run_limits), result


def interact(solution, interactor_argv, *, interactor_profile="py311", interactor_files=None,
             solution_limits=None, interactor_limits=None, grace=1.0):
    """Run an Artifact wired to an interactor: the solution's stdout is the interactor's
    stdin and the other way round, each in its own sandbox with its own limits and report.

    Returns (solution Result, interactor Result, verdict), the verdict being the
    solution's limit verdict (TLE, MLE, OLE, SYS) if it had one, else AC when the
    interactor exits 0, WA when it exits 1, RE when the solution crashed, and XX
    when the interactor itself failed.  A solution that stops reading or writing
    meets its wall limit (its interactor is given a longer one, so the blame
    falls on the solution); output goes through the runners' relays, which never
    block on a full pipe, so neither side can deadlock the judge."""
    # the interactor's plan first: a profile error must find no pipe to leak
    int_plan = runner.prepare(interactor_profile, interactor_argv, limits=interactor_limits,
                              binds=[bind(host, inside) for inside, host in (interactor_files or {}).items()])
    fds = []
    try:
        for _ in range(4):
            fds += os.pipe()
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    (to_int_r, to_int_w,                    # solution stdout -> interactor stdin
     to_sol_r, to_sol_w,                    # interactor stdout -> solution stdin
     cancel_sol_r, cancel_sol_w, cancel_int_r, cancel_int_w) = fds
    results, done = {}, {"sol": threading.Event(), "int": threading.Event()}

    def side(name, fn):
        try:
            results[name] = fn()
        except BaseException as e:           # reported, never swallowed: the caller sees it below
            results[name] = e
        finally:
            done[name].set()

    sol_thread = threading.Thread(target=side, args=("sol", lambda: solution.run(
        stdin=to_sol_r, stdout=to_int_w, limits=solution_limits, cancel=cancel_sol_r, relay_timeout=grace)))
    int_thread = threading.Thread(target=side, args=("int", lambda: runner.execute(
        int_plan, stdin=to_int_r, stdout=to_sol_w, cancel=cancel_int_r, relay_timeout=grace)))
    sol_thread.start()
    int_thread.start()
    # When one side ends, the other reads EOF, gets `grace` seconds to finish (an interactor
    # reads the last answer, a solution prints its last line) and is then stopped.
    other = {"sol": "int", "int": "sol"}
    write_end = {"sol": to_int_w, "int": to_sol_w}       # ours, into the other side's stdin
    cancel_w = {"sol": cancel_sol_w, "int": cancel_int_w}
    closed, deadline = set(), {}
    try:
        while not (done["sol"].is_set() and done["int"].is_set()):
            for name in ("sol", "int"):
                if done[name].is_set() and name not in closed:
                    os.close(write_end[name])
                    closed.add(name)
                    deadline[other[name]] = time.monotonic() + grace
            for name, when in list(deadline.items()):
                if not done[name].is_set() and time.monotonic() > when:
                    os.write(cancel_w[name], b"x")
                    del deadline[name]
            done["sol"].wait(0.01)
    finally:
        sol_thread.join()
        int_thread.join()
        for name in ("sol", "int"):
            if name not in closed:
                os.close(write_end[name])
        for fd in (to_int_r, to_sol_r, cancel_sol_r, cancel_sol_w, cancel_int_r, cancel_int_w):
            os.close(fd)
    for r in results.values():
        if isinstance(r, BaseException):
            raise r
    sol, it = results["sol"], results["int"]
    return sol, it, interactive_verdict(sol, it)


def interactive_verdict(sol, it):
    """Whose fault: the solution's limits first, then the interactor's word (exit 0 AC,
    exit 1 WA, as testlib does), then a solution crash; anything else is the judge's (XX)."""
    cancelled = sol.cancelled           # we ended it after the interactor
    if sol.status in ("TLE", "MLE", "OLE", "SYS") and not cancelled:
        return sol.status
    if it.status == "OK":
        return "AC" if sol.status == "OK" or cancelled else "RE"
    if it.status == "RE" and it.exit_code == 1:
        return "WA"
    if sol.status in ("RE", "SG") and not cancelled:
        return "RE"
    return "XX"
