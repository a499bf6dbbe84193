"""The sandbox's init runs as the program's uid, so calls that act on a process by pid reach it.
The seccomp base layer (test_seccomp_base.py) stops them from inside, with every policy; these
tests check init's own defence behind it: the same attacks come from a process of the same
unprivileged uid outside the sandbox, which no filter stands in front of (the program is burning
or waiting meanwhile)."""
import os
import sys

from conftest import SANDBOX

ATTACK_PRELUDE = """
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]
def prlimit(pid, res, cur, mx):
    new = Rlimit(cur, mx)
    if libc.prlimit(pid, res, ctypes.byref(new), None) != 0:
        raise OSError(ctypes.get_errno(), "prlimit")
class Siginfo(ctypes.Structure):
    _fields_ = [("signo", ctypes.c_int), ("errno", ctypes.c_int), ("code", ctypes.c_int), ("pad", ctypes.c_int),
                ("pid", ctypes.c_int), ("uid", ctypes.c_int), ("rest", ctypes.c_char * 104)]
def sigqueue(pid, sig, code):
    si = Siginfo(sig, 0, code, 0, 0, 0)
    return libc.syscall(129, pid, sig, ctypes.byref(si))   # rt_sigqueueinfo
def flood(pid, sig, seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        for _ in range(100): os.kill(pid, sig)
init = int(sys.argv[1])
"""
PRELUDE = """
import os, sys, time
def company(n):                                          # sleeping processes: every sample reads them all
    for _ in range(n):
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds: pass
def ready():                                             # the attack comes now, from outside
    print("ready", flush=True)
    sys.stdin.readline()
"""


def _init_pid(runner_pid):
    """The sandbox's init on the host: the launcher's child, the launcher the runner's."""
    def children(pid):
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    launcher = [c for c in children(runner_pid) if open(f"/proc/{c}/comm").read().strip() == "sandbox-launch"]
    return children(launcher[0])[0]


def attacked(sbx, code, attack, *opts):
    """Run CODE (it calls ready() once); when it is ready, ATTACK runs as the same unprivileged
    user outside the sandbox with init's host pid; then the program goes on.  (stdout, report)"""
    import json
    import subprocess
    report = os.path.join(sbx.box, "report.json")
    if os.path.exists(report):
        os.unlink(report)
    p = sbx.user.popen([SANDBOX, "run", "--report", report, "--profile", "py311", *opts, "--",
                        "python3", "-c", PRELUDE + code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        init = _init_pid(p.pid)
        a = sbx.user.run([sys.executable, "-c", ATTACK_PRELUDE + attack, str(init)], timeout=120)
        assert a.returncode == 0, a.stderr
        out, err = p.communicate(b"go\n", timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(report) as f:
        return out, json.load(f), a.stdout


def test_forged_sigterm_does_not_end_the_run(sbx):
    """rt_sigqueueinfo lets a sender claim si_pid 0 (the launcher's), but never SI_USER: init
    takes a SIGTERM as the stop request only with both."""
    attack = ("for code in (-1, -60):                     # SI_QUEUE, and any other negative code\n"
              "    print('sent', sigqueue(init, signal.SIGTERM, code), flush=True)\n")
    out, rep, said = attacked(sbx, "ready()\nburn(0.3)\nprint('finished')", attack)
    assert said.decode().split("\n")[:2] == ["sent 0", "sent 0"], said      # the kernel delivered them
    assert rep["status"] == "OK" and out.endswith(b"finished\n"), (out, rep)


def test_sigchld_flood_costs_init_little(sbx):
    """kill(init, SIGCHLD) in a loop: init reads forged signals at most once per 10 ms tick and
    never samples for them.  Compared with the same run without the flood (the old init spent
    80 % of a CPU on it): no extra sample, and init's CPU within a small factor."""
    program = "company(12)\nready()\nburn(1.0)\nprint('done')"
    _, quiet, _ = attacked(sbx, program, "pass", "--time", "5", "--wall-time", "60")
    out, rep, _ = attacked(sbx, program, "flood(init, signal.SIGCHLD, 1.0)", "--time", "5", "--wall-time", "60")
    assert rep["status"] == "OK" and quiet["status"] == "OK", (rep, quiet)
    init, wall = rep["init"], rep["wall_time_s"]
    assert init["samples"] <= 1.2 * wall * 100 + 10, (init, wall)      # the timer's, one per 10 ms
    assert init["cpu_s"] < 3 * quiet["init"]["cpu_s"] + 0.05, (init, quiet["init"])


def test_init_rlimit_cpu_lowered_then_flooded(sbx):
    """The review's attack: init's hard RLIMIT_CPU set to 1 s, then SIGCHLDs to make it burn it.
    Init stays cheap; the run ends with the program's own verdict and its true CPU."""
    attack = "prlimit(init, 0, 1, 1)                  # RLIMIT_CPU 1 s, hard\nflood(init, signal.SIGCHLD, 2.0)\n"
    out, rep, _ = attacked(sbx, "company(12)\nready()\nburn(1.0)\nprint('done', flush=True)\nos._exit(0)", attack,
                           "--time", "5", "--wall-time", "60")
    assert rep["status"] == "OK" and out == b"done\n", (out, rep)
    assert rep["cpu_time_s"] >= 1.0, rep


def test_init_rlimit_nofile_lowered_to_3(sbx):
    """poll(2) refuses more descriptors than RLIMIT_NOFILE; init uses epoll and samples with the
    descriptors it has left, so nothing changes: the limits still hold and the verdict is true."""
    code = "ready()\nburn(0.3)\nif os.fork() == 0:\n    burn(0.3); os._exit(0)\nos.wait()\nprint('done')"
    out, rep, _ = attacked(sbx, code, "prlimit(init, 7, 3, 3)                  # RLIMIT_NOFILE 3, hard", "--time", "5")
    assert rep["status"] == "OK" and out == b"done\n", (out, rep)
    assert rep["cpu_time_s"] >= 0.6, rep
    _, rep2, _ = attacked(sbx, "ready()\nburn(5)", "prlimit(init, 7, 3, 3)", "--time", "0.5")
    assert rep2["status"] == "TLE" and rep2["limit_hit"] == "cpu_time", rep2      # the monitor still works


def test_init_rlimit_nofile_lowered_to_nothing_ends_the_run(sbx):
    """With no descriptor left init cannot sample: it ends the run at once, as tampering (SYS),
    rather than supervise blind."""
    out, rep, _ = attacked(sbx, "ready()\nburn(3)\nprint('survived')", "prlimit(init, 7, 0, 0)", "--time", "10")
    assert rep["status"] == "SYS" and "open-files limit" in rep["message"], rep
    assert b"survived" not in out


def test_init_rlimit_cpu_within_reach_ends_the_run_before_the_kernel_kills_init(sbx):
    """A hard RLIMIT_CPU of 0 on init: the kernel SIGKILLs it at a timer tick that finds it running.
    Init ends the run itself at its next sample, SYS, the program's CPU counted -- unless that tick
    comes first (init runs a few hundred microseconds every 10 ms; from inside, the base layer stops
    the call, so only a process of the caller's own uid outside can race it): then the run is XX,
    init's death said as such.  Never a verdict of the program's, never a program that goes on."""
    out, rep, _ = attacked(sbx, "burn(0.3)\nready()\nburn(3)\nprint('survived')", "prlimit(init, 0, 0, 0)",
                           "--time", "10")
    assert b"survived" not in out
    if rep["status"] == "XX":
        assert "init died" in rep["message"], rep
        return
    assert rep["status"] == "SYS" and "CPU time limit of the sandbox's init" in rep["message"], rep
    assert 0.3 <= rep["cpu_time_s"] < 3, rep


def test_init_rlimit_stack_and_address_space_lowered(sbx):
    """Init's stack and heap limits, lowered below what it has: it needs no more (its stack is grown
    before the program runs, seccomp notifications use static buffers), so nothing changes."""
    attack = ("prlimit(init, 3, 4096, 4096)            # RLIMIT_STACK\n"
              "prlimit(init, 9, 4096, 4096)            # RLIMIT_AS\n"
              "prlimit(init, 2, 0, 0)                  # RLIMIT_DATA\n")
    code = "ready()\nburn(0.2)\nfor _ in range(3):\n    if os.fork() == 0:\n        burn(0.2); os._exit(0)\n" \
           "    os.wait()\nprint('done')"
    out, rep, _ = attacked(sbx, code, attack, "--time", "5")
    assert rep["status"] == "OK" and out == b"done\n", (out, rep)
    assert rep["cpu_time_s"] >= 0.8 and rep["init"]["samples"] > 10, rep
    _, rep, _ = attacked(sbx, "ready()\nburn(5)", attack, "--time", "0.5")
    assert rep["status"] == "TLE" and rep["limit_hit"] == "cpu_time", rep      # the monitor still works
