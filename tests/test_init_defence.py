"""The sandbox's init runs as the program's uid, so calls that act on a process by pid reach it.
These attacks run with `--seccomp none`: they test init's own defence, not the filter's rules."""
PRELUDE = """
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
class Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]
def prlimit(pid, res, cur, mx):
    new = Rlimit(cur, mx)
    if libc.prlimit(pid, res, ctypes.byref(new), None) != 0:
        raise OSError(ctypes.get_errno(), "prlimit")
def company(n):                                          # sleeping processes: every sample reads them all
    for _ in range(n):
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds: pass
"""


def py(sbx, code, *opts):
    return sbx.run("run", "--profile", "py311", "--seccomp", "none", *opts, "--", "python3", "-c", PRELUDE + code)


def test_forged_sigterm_does_not_end_the_run(sbx):
    """rt_sigqueueinfo lets the program claim si_pid 0 (the launcher's), but not SI_USER."""
    code = """
class Siginfo(ctypes.Structure):
    _fields_ = [("signo", ctypes.c_int), ("errno", ctypes.c_int), ("code", ctypes.c_int), ("pad", ctypes.c_int),
                ("pid", ctypes.c_int), ("uid", ctypes.c_int), ("rest", ctypes.c_char * 104)]
for code in (-1, -60):                                   # SI_QUEUE, and any other negative code
    si = Siginfo(signal.SIGTERM, 0, code, 0, 0, 0)
    print("sent", libc.syscall(129, 1, signal.SIGTERM, ctypes.byref(si)), flush=True)   # rt_sigqueueinfo
    burn(0.1)
os.kill(1, signal.SIGTERM)                               # and plain kill from inside
burn(0.2)
print("finished")
"""
    r, rep = py(sbx, code)
    assert r.stdout.decode().split("\n")[:2] == ["sent 0", "sent 0"], r.stdout      # the kernel delivered them
    assert rep["status"] == "OK" and r.stdout.endswith(b"finished\n"), (r.stdout, rep)


def test_sigchld_flood_costs_init_little(sbx):
    """kill(1, SIGCHLD) in a loop: init reads forged signals at most once per 10 ms tick and never
    samples for them.  Compared with the same run without the flood (the old init spent 80 %
    of a CPU on it): no extra sample, and init's CPU within a small factor."""
    flood = """
company(12)
t = time.process_time()
while time.process_time() - t < 1.0:
    for _ in range(100): os.kill(1, signal.SIGCHLD)
print("done")
"""
    _, quiet = py(sbx, flood.replace("os.kill(1, signal.SIGCHLD)", "os.getpid()"), "--time", "5", "--wall-time", "60")
    r, rep = py(sbx, flood, "--time", "5", "--wall-time", "60")
    assert rep["status"] == "OK" and quiet["status"] == "OK", (rep, quiet)
    assert rep["cpu_time_s"] >= 1.0
    init, wall = rep["init"], rep["wall_time_s"]
    assert init["samples"] <= 1.2 * wall * 100 + 10, (init, wall)      # the timer's, one per 10 ms
    assert init["cpu_s"] < 3 * quiet["init"]["cpu_s"], (init, quiet["init"])


def test_init_rlimit_cpu_lowered_then_flooded(sbx):
    """The review's attack: init's hard RLIMIT_CPU set to 1 s, then SIGCHLDs to make it burn it.
    Init stays cheap; the run ends with the program's own verdict and its true CPU."""
    code = """
company(12)
prlimit(1, 0, 1, 1)                                      # RLIMIT_CPU 1 s, hard
t = time.process_time()
while time.process_time() - t < 2.0:
    for _ in range(100): os.kill(1, signal.SIGCHLD)
print("done", flush=True)
os._exit(0)
"""
    r, rep = py(sbx, code, "--time", "5", "--wall-time", "60")
    assert rep["status"] == "OK" and r.stdout == b"done\n", (r.stderr, rep)
    assert rep["cpu_time_s"] >= 2.0, rep


def test_init_rlimit_nofile_lowered_to_3(sbx):
    """poll(2) refuses more descriptors than RLIMIT_NOFILE; init uses epoll and samples with the
    descriptors it has left, so nothing changes: the limits still hold and the verdict is true."""
    code = """
prlimit(1, 7, 3, 3)                                      # RLIMIT_NOFILE 3, hard
burn(0.3)
if os.fork() == 0:
    burn(0.3); os._exit(0)
os.wait()
print("done")
"""
    r, rep = py(sbx, code, "--time", "5")
    assert rep["status"] == "OK" and r.stdout == b"done\n", (r.stderr, rep)
    assert rep["cpu_time_s"] >= 0.6, rep
    over, rep2 = py(sbx, "prlimit(1, 7, 3, 3)\nburn(5)", "--time", "0.5")
    assert rep2["status"] == "TLE" and rep2["limit_hit"] == "cpu_time", rep2      # the monitor still works


def test_init_rlimit_nofile_lowered_to_nothing_ends_the_run(sbx):
    """With no descriptor left init cannot sample: it ends the run at once, as tampering (SYS),
    rather than supervise blind."""
    r, rep = py(sbx, "prlimit(1, 7, 0, 0)\nburn(3)\nprint('survived')", "--time", "10")
    assert rep["status"] == "SYS" and "open-files limit" in rep["message"], rep
    assert b"survived" not in r.stdout


def test_init_rlimit_cpu_within_reach_ends_the_run_before_the_kernel_kills_init(sbx):
    """A hard RLIMIT_CPU of 0 on init (the kernel would SIGKILL it at 1 s of its own CPU, taking
    the run's accounting with it): init ends the run itself at its next sample, SYS, the
    program's CPU counted."""
    r, rep = py(sbx, "burn(0.3)\nprlimit(1, 0, 0, 0)\nburn(3)\nprint('survived')", "--time", "10")
    assert rep["status"] == "SYS" and "CPU time limit of the sandbox's init" in rep["message"], rep
    assert b"survived" not in r.stdout
    assert 0.3 <= rep["cpu_time_s"] < 3, rep


def test_init_rlimit_stack_and_address_space_lowered(sbx):
    """Init's stack and heap limits, lowered below what it has: it needs no more (its stack is grown
    before the program runs, seccomp notifications use static buffers), so nothing changes."""
    code = """
prlimit(1, 3, 4096, 4096)                                # RLIMIT_STACK
prlimit(1, 9, 4096, 4096)                                # RLIMIT_AS
prlimit(1, 2, 0, 0)                                      # RLIMIT_DATA
burn(0.2)
for _ in range(3):
    if os.fork() == 0:
        burn(0.2); os._exit(0)
    os.wait()
print("done")
"""
    r, rep = py(sbx, code, "--time", "5")
    assert rep["status"] == "OK" and r.stdout == b"done\n", (r.stderr, rep)
    assert rep["cpu_time_s"] >= 0.8 and rep["init"]["samples"] > 10, rep
    r, rep = py(sbx, "prlimit(1, 3, 4096, 4096)\nprlimit(1, 9, 4096, 4096)\nburn(5)", "--time", "0.5")
    assert rep["status"] == "TLE" and rep["limit_hit"] == "cpu_time", rep      # the monitor still works
