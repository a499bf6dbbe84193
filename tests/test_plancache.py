"""`sandbox run` keeps the plans it builds (plancache.py) and uses one again only while the
host answers every question the build asked the same way.  Each test changes something a
plan depends on between two runs and checks that the second run behaves exactly as a run
without the cache (SANDBOX_NO_PLAN_CACHE=1) does: same output, same error, same exit code."""
import os
import shutil
import sys

from conftest import SANDBOX, write

from sandbox import plancache

NO_CACHE = {"SANDBOX_NO_PLAN_CACHE": "1"}
PLAN_MODULES = ("sandbox.plan", "sandbox.mounts", "sandbox.schema", "sandbox.seccomp", "sandbox.userns")


def _cache(user):
    return os.path.join(user.home, ".cache", "sandbox", "plans")


def _same_as_uncached(sbx, *args, env=None):
    """Run twice more (the plan kept by an earlier run, then none); return the first result."""
    kept = sbx(*args, env=env)
    fresh = sbx(*args, env=dict(env or {}, **NO_CACHE))
    assert (kept.returncode, kept.stdout, kept.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    return kept


def test_the_second_run_imports_nothing_that_builds_a_plan(user):
    argv = [sys.executable, "-X", "importtime", SANDBOX, "run", "--profile", "native", "--", "/bin/true"]
    first, second = user.run(argv), user.run(argv)
    assert first.returncode == second.returncode == 0, second.stderr
    imported = lambda r: {line.rsplit("|", 1)[-1].strip() for line in r.stderr.decode().splitlines()}  # noqa: E731
    assert set(PLAN_MODULES) <= imported(first)         # the first run built the plan
    assert not set(PLAN_MODULES) & imported(second)     # the second took it from the cache
    baseline = imported(user.run([sys.executable, "-X", "importtime", "-c", "pass"]))   # the interpreter's own
    assert not {"re", "yaml", "resource", "sandbox.cgroup"} & (imported(second) - baseline)
    assert os.listdir(_cache(user))


def test_report_and_supervision_are_imported_while_the_launcher_works(user):
    """The CLI imports the report and the supervise loop after it has spawned the launcher, so
    that a cold run does that work beside the launcher's instead of before it; and by then the
    garbage collector, off for the start-up (cli.entry), works again."""
    code = ("import gc, sys\nfrom sandbox import launch\nspawn = launch.spawn\n"
            "def spy(*a, **k):\n"
            "    seen = sorted({'sandbox.report', 'sandbox.supervise'} & set(sys.modules))\n"
            "    sys.stderr.write(repr((seen, gc.isenabled())))\n"
            "    return spawn(*a, **k)\n"
            "launch.spawn = spy\nsys.argv = ['sandbox', 'run', '--profile', 'native', '--', '/bin/true']\n"
            "from sandbox.cli import entry\nentry()\n")
    for _ in range(2):                  # the plan built, then kept
        r = user.run([sys.executable, "-c", code])
        assert (r.returncode, r.stderr) == (0, b"([], True)"), r.stderr


GATE_SCRIPT = """
import os, sys
import sandbox
box = sys.argv[1]
plan = sandbox.prepare("shell", ["/bin/sh", "-c", "echo ran >> /out/log; ls /proc/self/fd"], binds=[box + ":/out:rw"])
fds = sorted(os.listdir("/proc/self/fd"))

def left():
    try:
        return os.waitpid(-1, os.WNOHANG)       # a child not reaped
    except ChildProcessError:
        return None

def no():
    return False

def fails():
    raise KeyError("the check itself failed")

assert sandbox.execute(plan, confirm=no) is None
try:
    sandbox.execute(plan, confirm=fails)
except KeyError:
    pass
print(os.path.exists(box + "/log"), sorted(os.listdir("/proc/self/fd")) == fds, left())
r = sandbox.execute(plan, confirm=lambda: True)
print(r.status, r.stdout, open(box + "/log").read().count("ran"), sorted(os.listdir("/proc/self/fd")) == fds, left())
"""


def test_a_launch_whose_plan_no_longer_holds_runs_nothing_and_leaves_nothing(user, box):
    """What the CLI does with a kept plan: init builds the sandbox and waits at its gate while
    the facts are checked (runner.execute's confirm).  A no, or a check that fails, abandons
    the launch: the program never ran (its write to a bound host directory is not there), no
    descriptor or child process is left.  A yes runs it, once, holding no descriptor of the gate's."""
    r = user.run([sys.executable, "-c", GATE_SCRIPT, box])
    assert r.returncode == 0, r.stderr
    # (the program holds its stdio only, the gate least of all: 3 is ls's own listing)
    assert r.stdout.decode().splitlines() == ["False True None", "OK b'0\\n1\\n2\\n3\\n' 1 True None"]


def test_an_edited_profile_is_a_new_plan(sbx, box):
    profile = sbx.script("p.yaml", "extends: shell\nenv: {WHO: first}\n")
    argv = ("run", "--profile", profile, "--", "/bin/sh", "-c", 'echo "$WHO"')
    assert sbx(*argv).stdout == b"first\n"
    write(profile, "extends: shell\nenv: {WHO: second}\n", owner=sbx.user)
    assert _same_as_uncached(sbx, *argv).stdout == b"second\n"


def test_a_bind_source_that_disappears_gives_the_error_a_fresh_build_gives(sbx, box):
    src = os.path.join(box, "data")
    os.mkdir(src)
    os.chmod(src, 0o755)
    argv = ("run", "--profile", "shell", "--bind", f"{src}:/data", "--", "/bin/true")
    assert sbx(*argv).returncode == 0
    os.rmdir(src)
    r = _same_as_uncached(sbx, *argv)
    assert r.returncode == 125 and b"does not exist" in r.stderr, r.stderr


def test_an_optional_bind_that_appears_is_bound(sbx, box):
    src = os.path.join(box, "later")
    profile = sbx.script("opt.yaml", f"extends: shell\nbinds: [{{src: {src}, dst: /later, optional: true}}]\n")
    argv = ("run", "--profile", profile, "--", "/bin/sh", "-c", "cat /later/x 2>/dev/null || echo absent")
    assert sbx(*argv).stdout == b"absent\n"
    os.mkdir(src)
    write(os.path.join(src, "x"), "present\n")
    os.chmod(src, 0o755)
    assert _same_as_uncached(sbx, *argv).stdout == b"present\n"


def test_a_lowered_hard_limit_gives_the_error_a_fresh_build_gives(sbx, user):
    argv = ("run", "--profile", "shell", "--open-files", "200", "--", "/bin/true")
    assert sbx(*argv).returncode == 0
    lowered = ["prlimit", "--nofile=64:64", "--", SANDBOX, *argv]
    kept, fresh = user.run(lowered), user.run(lowered, env=NO_CACHE)
    assert (kept.returncode, kept.stderr) == (fresh.returncode, fresh.stderr)
    assert kept.returncode == 125 and b"above this caller's own hard limit" in kept.stderr, kept.stderr


def test_the_environment_is_part_of_the_key(sbx):
    argv = ("run", "--profile", "shell", "--env", "FROM_CALLER", "--", "/bin/sh", "-c", 'echo "$FROM_CALLER"')
    assert sbx(*argv, env={"FROM_CALLER": "one"}).stdout == b"one\n"
    assert sbx(*argv, env={"FROM_CALLER": "two"}).stdout == b"two\n"


def test_the_cache_is_bounded_and_survives_damage(sbx, user):
    for i in range(plancache.SLOTS + 6):
        assert sbx("run", "--profile", "shell", "--", "/bin/true", str(i)).returncode == 0
    entries = os.listdir(_cache(user))
    assert 0 < len(entries) <= plancache.SLOTS
    for name in entries:                                # every slot damaged: each run builds again
        with open(os.path.join(_cache(user), name), "wb") as f:
            f.write(b"\xff not marshal data")
    r = sbx("run", "--profile", "shell", "--", "/bin/sh", "-c", "echo fine")
    assert (r.returncode, r.stdout) == (0, b"fine\n"), r.stderr


def test_no_plan_cache_keeps_nothing(sbx, user):
    shutil.rmtree(_cache(user), ignore_errors=True)
    assert sbx("run", "--profile", "shell", "--", "/bin/true", env=NO_CACHE).returncode == 0
    assert not os.path.exists(_cache(user))


def test_the_unit_tests_hold_as_the_unprivileged_user(user, box):
    """tests/unit/test_plancache_unit.py again, as the test user: where plans are kept (a root
    caller's never are) and where the unprivileged path's host questions are asked."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unit", "test_plancache_unit.py")
    copy = os.path.join(box, "test_plancache_unit.py")
    shutil.copy(here, copy)
    os.chmod(copy, 0o644)
    r = user.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", copy], cwd=box, timeout=300)
    out = r.stdout.decode()
    assert r.returncode == 0 and "skipped" not in out, out


def test_a_working_directory_that_is_gone_runs_as_without_the_cache(sbx, user, box):
    gone = os.path.join(box, "gone")
    script = f'mkdir "{gone}" && cd "{gone}" && rmdir "{gone}" && exec "$0" "$@"'
    argv = ["/bin/sh", "-c", script, SANDBOX, "run", "--profile", "shell", "--", "/bin/echo", "ok"]
    kept, fresh = user.run(argv), user.run(argv, env=NO_CACHE)
    assert (kept.returncode, kept.stdout, kept.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr) \
        == (0, b"ok\n", b""), kept.stderr
