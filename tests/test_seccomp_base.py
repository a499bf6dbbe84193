"""The seccomp base layer: in every filter (default, judge-strict, `seccomp: none`, learn mode)
init (pid 1, same uid as the program) is out of reach of calls that act on another process by
pid; the launcher's own calls work whatever a policy says; socketpair obeys the family rule."""
import os

import pytest

from test_seccomp import PRELUDE

# (name the report must give, the attack); x86_64 numbers.  Each would reach init without the layer.
ATTACKS = {
    "prlimit64": "lim = (ctypes.c_ulong * 2)(1, 1); call(302, 1, 0, ctypes.addressof(lim), 0)",   # RLIMIT_CPU 1 s
    "prlimit64-high-bits": "call(302, 1 | 1 << 32, 7, 0, 0)",              # the kernel reads pid_t: still init
    "sched_setaffinity": "mask = ctypes.c_ulong(1); call(203, 1, 8, ctypes.addressof(mask))",
    "sched_setscheduler": "p = ctypes.c_int(0); call(144, 1, 5, ctypes.addressof(p))",  # SCHED_IDLE
    "sched_setparam": "p = ctypes.c_int(0); call(142, 1, ctypes.addressof(p))",
    "sched_setattr": "a = (ctypes.c_uint * 14)(56); call(314, 1, ctypes.addressof(a), 0)",
    "setpriority": "call(141, 0, 1, 19)",                                   # PRIO_PROCESS, init, nice 19
    "ioprio_set": "call(251, 1, 1, 3 << 13)",                               # IOPRIO_WHO_PROCESS, init, idle
    "kill": "call(62, 1, 15)",
    "tkill": "call(200, 1, 15)",
    "tgkill": "call(234, 1, 1, 15)",
    "rt_sigqueueinfo": "info = (ctypes.c_int * 32)(15, 0, -1); call(129, 1, 15, ctypes.addressof(info))",
    "rt_tgsigqueueinfo": "info = (ctypes.c_int * 32)(15, 0, -1); call(297, 1, 1, 15, ctypes.addressof(info))",
    "pidfd_open": "call(434, 1, 0)",
    "migrate_pages": "call(256, 1, 64, 0, 0)",
    "move_pages": "call(279, 1, 0, 0, 0, 0, 0)",
    "get_robust_list": "h = ctypes.c_ulong(); n = ctypes.c_ulong(); call(274, 1, ctypes.addressof(h), ctypes.addressof(n))",
    "kcmp": "call(312, 2, 1, 0, 0, 0)",
    "process_madvise": "call(440, 3, 0, 0, 0, 0)",
    "process_vm_readv": "call(310, 1, 0, 0, 0, 0, 0)",
    # init as a pipe's owner gets F_SETSIG's signal (SIGTERM: a forged stop request) on each write
    "fcntl": "r, w = os.pipe(); call(72, r, 10, 15); call(72, r, 8, 1); call(72, r, 4, 0o20000); os.write(w, b'x')",
    "fcntl-high-bits": "call(72, 0, 8 | 1 << 32, 1 | 1 << 32)",
}


def py(sbx, code, *opts, profile="py311"):
    return sbx.run("run", "--profile", profile, *opts, "--", "python3", "-c", PRELUDE + code)


def burn(seconds):
    """Python that spends `seconds` of CPU first: what the report must still count."""
    return f"import time\nwhile time.process_time() < {seconds}: pass\n"


def assert_killed(r, rep, attack):
    name = attack.split("-")[0]
    assert r.stdout == b"before\n", (r.stdout, r.stderr)
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == name, (rep, r.stderr)
    assert r.returncode == 137


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("policy", ["default", "none"])
def test_calls_aimed_at_init_are_killed(sbx, policy, attack):
    r, rep = py(sbx, ATTACKS[attack] + "\nprint('after')", "--seccomp", policy)
    assert_killed(r, rep, attack)
    assert rep["seccomp"] == policy                                # `none` is still said honestly
    if policy == "none":
        assert b"killed by the seccomp base layer" in r.stderr


@pytest.mark.parametrize("attack", sorted(set(ATTACKS) - {"fcntl"}))   # (its pipe2 is killed first; fcntl-high-bits
def test_calls_aimed_at_init_are_killed_under_judge_strict(sbx, attack):  # makes the same call on fd 0)
    r, rep = py(sbx, ATTACKS[attack] + "\nprint('after')", "--seccomp", "judge-strict")
    assert_killed(r, rep, attack)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_calls_aimed_at_init_are_killed_in_learn_mode(sbx, attack):
    """Learn mode lets every call through and lists it -- but not these: init checks a
    notification against the base layer's rules before it takes it for a log."""
    out = os.path.join(sbx.box, "learned.yaml")
    r = sbx("learn", "--profile", "py311", "--output", out, "--", "python3", "-c",
            PRELUDE + ATTACKS[attack] + "\nprint('after')")
    assert r.stdout == b"before\n", r.stderr
    assert b"killed by the seccomp base layer" in r.stderr and attack.split("-")[0].encode() in r.stderr


@pytest.mark.parametrize("policy", ["default", "judge-strict", "none"])
def test_init_survives_the_rlimit_attack_and_cpu_is_honest(sbx, policy):
    """The review's attack: init's RLIMIT_CPU set to 1 s, then SIGCHLDs to make it spend it.  Now
    the first call ends the run as SYS, and the CPU the program spent before is all reported."""
    code = burn(0.3) + ATTACKS["prlimit64"] + "\nprint('after')"
    r, rep = py(sbx, code, "--seccomp", policy)
    assert_killed(r, rep, "prlimit64")
    assert rep["cpu_time_s"] >= 0.3, rep


def test_pid_0_and_own_children_are_untouched(sbx):
    """The base layer is aimed at pid 1 only: the same calls on the program itself or a child work."""
    code = ("import signal\n"
            "lim = (ctypes.c_ulong * 2)()\n"
            "print('self', call(302, 0, 7, 0, ctypes.addressof(lim)), call(302, os.getpid(), 7, 0, 0))\n"
            "mask = ctypes.c_ulong(1); print('affinity', call(203, 0, 8, ctypes.addressof(mask)))\n"
            "print('nice', call(141, 0, 0, 5))\n"
            "r, w = os.pipe(); print('owner', call(72, r, 8, os.getpid()))\n"
            "pid = os.fork()\n"
            "if pid == 0: time.sleep(5); os._exit(0)\n"
            "print('child', call(302, pid, 7, 0, 0), call(62, pid, signal.SIGKILL), os.waitpid(pid, 0)[1])\n")
    for policy in ("default", "none"):
        r, rep = py(sbx, "import time\n" + code, "--seccomp", policy)
        assert rep["status"] == "OK", (rep, r.stderr)
        assert r.stdout.decode().splitlines()[1:] == ["self 0 0", "affinity 0", "nice 0", "owner 0", "child 0 0 9"], r.stdout


def test_group_and_user_forms_are_refused(sbx):
    """setpriority / ioprio_set on a process group or a whole user would include init: EPERM.
    pidfd_send_signal takes a /proc/1 descriptor, which a filter cannot tell from a child's: ENOSYS,
    so runtimes fall back to kill(2).  A descriptor's owner given in memory (F_SETOWN_EX, FIOSETOWN,
    SIOCSPGRP): EPERM.  The program goes on (not a violation)."""
    code = ("fd = os.open('/proc/1', os.O_RDONLY | os.O_DIRECTORY)\n"
            "import socket; s = socket.socket(); owner = (ctypes.c_int * 2)(1, 1); pid = ctypes.c_int(1)\n"
            "print(call(141, 2, 0, 19), call(141, 1, 0, 19), call(251, 3, 0, 3 << 13), call(251, 2, 0, 3 << 13),"
            " call(424, fd, 15, 0, 0), call(72, s.fileno(), 15, ctypes.addressof(owner)),"
            " call(16, s.fileno(), 0x8901, ctypes.addressof(pid)), call(16, s.fileno(), 0x8902, ctypes.addressof(pid)))\n")
    for policy in ("default", "none"):
        r, rep = py(sbx, code, "--seccomp", policy)
        assert rep["status"] == "OK", (rep, r.stderr)
        assert r.stdout.decode().splitlines()[1] == "-1 -1 -1 -1 -38 -1 -1 -1", r.stdout


def test_a_refused_form_is_still_a_kill_where_the_policy_kills_the_call(sbx):
    """judge-strict kills setpriority altogether: the base layer's EPERM does not soften that."""
    r, rep = py(sbx, "call(141, 2, 0, 19)", "--seccomp", "judge-strict")
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == "setpriority", rep


def test_a_policy_cannot_allow_what_the_base_layer_kills(sbx):
    """A learned allow-list that lists prlimit64, kill... (the program used them on itself), and a
    deny-list that allows them explicitly: the base layer's rules still come first."""
    benign = "print(call(302, 0, 7, 0, 0), call(141, 0, 0, 1), call(62, 0, 0), call(129, os.getpid(), 0, 0))"
    learned = os.path.join(sbx.box, "learned.yaml")
    r = sbx("learn", "--profile", "py311", "--output", learned, "--", "python3", "-c", PRELUDE + benign)
    assert r.returncode == 0, r.stderr
    assert all(f"      - {n}\n" in open(learned).read() for n in ("prlimit64", "setpriority", "kill", "rt_sigqueueinfo"))
    loose = sbx.script("loose.yaml", "extends: default\nrules:\n"
                       "  - {syscalls: [prlimit64, setpriority, kill, rt_sigqueueinfo], action: allow}\n")
    for policy in (learned, loose):
        for attack in ("prlimit64", "setpriority", "kill", "rt_sigqueueinfo"):
            r, rep = py(sbx, ATTACKS[attack], "--seccomp", policy)
            assert_killed(r, rep, attack)
        r, rep = py(sbx, benign, "--seccomp", policy)
        assert rep["status"] == "OK" and r.stdout.decode().split()[1:3] == ["0", "0"], (rep, r.stderr)


@pytest.mark.parametrize("policy", ["default", "none"])
def test_normal_programs_run(sbx, policy):
    r, rep = sbx.run("run", "--profile", "shell", "--seccomp", policy, "--", "sh", "-c",
                     "echo a | cat; ls / >/dev/null; python3 -c 'import threading, subprocess, os; "
                     "t = threading.Thread(target=print, args=(\"t\",)); t.start(); t.join(); "
                     "print(subprocess.run([\"true\"]).returncode, os.nice(1))'")
    assert rep["status"] == "OK" and r.stdout == b"a\nt\n0 1\n", (rep, r.stderr)


def test_base_layer_numbers_match_libseccomp():
    """`seccomp: none` compiles without a binding, from numbers written in seccomp.py: they must be right."""
    from sandbox import seccomp
    known = seccomp.known_syscalls()
    assert {n: known[n] for n in seccomp.BASE_NUMBERS} == seccomp.BASE_NUMBERS


# ------------------------------------------------------------------ the launcher's own calls

@pytest.mark.parametrize("body,expected", [
    ("default_action: allow\nrules: [{syscall: sendmsg, action: kill}]\n", "SYS"),
    ("default_action: log\nrules: [{syscall: sendmsg, action: errno EPERM}]\n", "-1"),
])
def test_a_sendmsg_rule_does_not_block_the_listener_hand_over(sbx, body, expected):
    """The launcher hands the seccomp listener to init with sendmsg after the filter is loaded:
    that call comes before every policy rule, so the run starts; the program's own sendmsg
    gets what the rule says."""
    policy = sbx.script("send.yaml", body)
    r, rep = py(sbx, "print('started', flush=True)", "--seccomp", policy)
    assert rep["status"] == "OK" and r.stdout == b"before\nstarted\n", (rep, r.stderr)
    code = ("import socket\na, b = socket.socketpair()\n"
            "try:\n    print(a.sendmsg([b'x']))\nexcept OSError as e:\n    print(-1, e.errno)\n")
    r, rep = py(sbx, code, "--seccomp", policy)
    if expected == "SYS":
        assert rep["status"] == "SYS" and rep["syscall"]["name"] == "sendmsg", rep
    else:
        assert rep["status"] == "OK" and r.stdout.decode().splitlines()[1] == "-1 1", (rep, r.stdout)


def test_a_write_rule_does_not_hide_an_exec_failure(sbx):
    """A failed exec is reported on the launcher's error pipe (write on fd 4), before any policy rule."""
    policy = sbx.script("nowrite.yaml", "default_action: allow\nrules: [{syscall: write, action: kill}]\n")
    r = sbx("run", "--profile", "shell", "--seccomp", policy, "--", "/no/such/program")
    assert r.returncode == 127 and b"exec /no/such/program: No such file or directory" in r.stderr, r.stderr


# ------------------------------------------------------------------ socketpair

def test_socketpair_obeys_the_socket_family_rule(sbx):
    code = ("sv = (ctypes.c_int * 2)()\n"
            "print(*[call(53, fam, typ, proto, ctypes.addressof(sv)) for fam, typ, proto in "
            "((40, 1, 0), (17, 3, 0), (44, 3, 0), (16, 3, 9), (40 | 1 << 32, 1, 0), (1, 1, 0))])\n")
    r, rep = py(sbx, code)
    assert rep["status"] == "OK", (rep, r.stderr)
    assert r.stdout.decode().splitlines()[1] == "-97 -97 -97 -97 -97 0", r.stdout      # EAFNOSUPPORT; AF_UNIX works
    r, rep = py(sbx, code, "--seccomp", "none")                    # the kernel alone answers otherwise
    answers = r.stdout.decode().splitlines()[1].split()
    assert answers[-1] == "0" and any(a != "-97" for a in answers[:4]), answers


def test_a_log_rule_on_a_base_layer_call_still_kills_at_init(sbx):
    """kill and log are both notifications; with `prlimit64: log` init checks the base layer's
    rule itself: prlimit64(0, ...) is logged and goes on, prlimit64(1, ...) ends the run."""
    policy = sbx.script("logprl.yaml", "extends: default\nrules: [{syscall: prlimit64, action: log}]\n")
    r, rep = py(sbx, "print(call(302, 0, 7, 0, 0))", "--seccomp", policy)
    assert rep["status"] == "OK" and {"name": "prlimit64", "number": 302, "arch": "x86_64"} in rep["seccomp_logged"]
    r, rep = py(sbx, ATTACKS["prlimit64"], "--seccomp", policy)
    assert_killed(r, rep, "prlimit64")


def test_making_init_the_tracer_forges_no_verdict(sbx):
    """PTRACE_TRACEME makes the parent, init, the tracer; a SIGSTOP then reached init as a wait
    status, which it took for an exit: verdict OK, 0 s. (Allowed under `none`, where a debugger
    may need it.)  Init now ignores ptrace stops: the frozen program runs out of wall time."""
    code = "libc.ptrace(0, 0, 0, 0); import signal; os.kill(os.getpid(), signal.SIGSTOP); print('after')"
    r, rep = py(sbx, code, "--seccomp", "none", "--wall-time", "1s")
    assert rep["status"] == "TLE" and rep["limit_hit"] == "wall_time" and r.stdout == b"before\n", rep
