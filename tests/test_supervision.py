"""The sandbox's processes never outlive the run: program exit, runner killed, interrupted."""
import os
import signal
import subprocess
import time

from conftest import SANDBOX


def procs_of(uid):
    """pid -> (ppid, state, cmdline) for every process of uid."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.stat(f"/proc/{p}").st_uid != uid:
                continue
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(p)] = (int(rest[1]), rest[0], cmd)
    return out


def alive(uid, marker):
    """Live `sleep MARKER` processes (not the runner, whose command line also holds the marker)."""
    return [pid for pid, (_, state, cmd) in procs_of(uid).items() if cmd.startswith(f"sleep {marker}") and state != "Z"]


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def descendants(uid, root):
    table = procs_of(uid)
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def test_background_children_die_with_the_program(sbx, user):
    marker = "1001.25"
    r = sbx("run", "--profile", "shell", "--", "sh", "-c", f"sleep {marker} & setsid sleep {marker} & echo started")
    assert r.stdout == b"started\n"
    assert alive(user.uid, marker) == []


def test_runner_killed_with_sigkill_leaves_nothing_behind(user):
    marker = "1002.5"
    runner = user.popen([SANDBOX, "run", "--profile", "shell", "--", "sh", "-c",
                         f"sleep {marker} & exec sleep {marker}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(alive(user.uid, marker)) == 2), "the sandboxed program did not start"
        tree = descendants(user.uid, runner.pid)
        assert len(tree) >= 4          # launcher, init, sh/sleep, sleep
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        gone = wait_for(lambda: not [p for p in tree if p in {q for q, v in procs_of(user.uid).items() if v[1] != "Z"}])
        assert gone, f"left behind: {[procs_of(user.uid).get(p) for p in tree]}"
        assert alive(user.uid, marker) == []
    finally:
        runner.kill()


def test_interrupt_kills_the_sandbox_and_exits_130(user):
    marker = "1003.75"
    runner = user.popen([SANDBOX, "run", "--profile", "shell", "--", "sleep", marker],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: alive(user.uid, marker)), "the sandboxed program did not start"
        os.kill(runner.pid, signal.SIGINT)
        _, err = runner.communicate(timeout=10)
        assert runner.returncode == 130
        assert b"interrupted; the sandbox was killed" in err and b"Traceback" not in err
        assert wait_for(lambda: not alive(user.uid, marker))
    finally:
        runner.kill()


def test_a_reader_that_goes_away_ends_the_program_like_a_pipe(user, box):
    """`sandbox run -- yes | head -c 10`: the program gets EPIPE/SIGPIPE, the run ends."""
    report = os.path.join(box, "r.json")
    cmd = f"{SANDBOX} run --profile shell --report {report} -- yes | head -c 10"
    r = user.run(["sh", "-c", cmd], timeout=30)
    assert r.stdout == b"y\ny\ny\ny\ny\n"
    with open(report) as f:
        assert '"signal_name": "SIGPIPE"' in f.read()


def test_program_signalling_init_is_ignored(sbx):
    """A broadcast (kill -1) does not reach init; a signal aimed at pid 1 is stopped by the
    seccomp base layer before it is sent (test_seccomp_base.py has every form)."""
    r, rep = sbx.run("run", "--profile", "shell", "--", "sh", "-c", "kill -TERM -1; sleep 0.2; echo alive")
    assert r.stdout == b"alive\n" and rep["status"] == "OK", rep
    r, rep = sbx.run("run", "--profile", "shell", "--", "sh", "-c", "kill -TERM 1; echo alive")
    assert r.stdout == b"" and rep["status"] == "SYS" and rep["syscall"]["name"] == "kill", rep
