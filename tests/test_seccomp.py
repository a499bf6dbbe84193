"""seccomp: every denied family tried for real from inside a sandbox, foreign ABIs,
errno answers that are not violations, learn mode, built-in allow-list, bad policies."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import SANDBOX, no_traceback

PRELUDE = ("import ctypes, os, sys\n"
           "libc = ctypes.CDLL(None, use_errno=True)\n"
           "sc = libc.syscall\nsc.restype = ctypes.c_long\n"
           "def call(*a):\n"
           "    r = sc(*[ctypes.c_long(x) for x in a])\n"
           "    return r if r >= 0 else -ctypes.get_errno()\n"
           "print('before', flush=True)\n")

# (expected name, Python that makes the call); x86_64 numbers
KILLED = {
    "unshare": "call(272, 0x10000000)",                                  # unshare(CLONE_NEWUSER)
    "setns": "call(308, 0, 0)",
    "clone": "call(56, 0x10000000 | 17, 0, 0, 0, 0)",                    # clone(CLONE_NEWUSER | SIGCHLD)
    "mount": "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
    "umount2": "call(166, 0, 0)",
    "pivot_root": "call(155, 0, 0)",
    "chroot": "libc.chroot(b'/')",
    "ptrace": "libc.ptrace(0, 0, 0, 0)",                                  # PTRACE_TRACEME
    "process_vm_readv": "call(310, 2, 0, 0, 0, 0, 0)",                  # pid 2: pid 1 is the base layer's
    "keyctl": "call(250, 0, 0, 0, 0, 0)",
    "add_key": "call(248, 0, 0, 0, 0, 0)",
    "request_key": "call(249, 0, 0, 0, 0)",
    "io_uring_setup": "call(425, 8, 0)",
    "bpf": "call(321, 0, 0, 0)",
    "perf_event_open": "call(298, 0, 0, -1, -1, 0)",
    "userfaultfd": "call(323, 0)",
    "kexec_load": "call(246, 0, 0, 0, 0)",
    "init_module": "call(175, 0, 0, 0)",
    "open_by_handle_at": "call(304, 0, 0, 0)",
}


def py(sbx, code, *opts, profile="py311"):
    return sbx.run("run", "--profile", profile, *opts, "--", "python3", "-c", PRELUDE + code)


@pytest.mark.parametrize("name", sorted(KILLED))
def test_denied_call_is_killed_and_named(sbx, name):
    r, rep = py(sbx, KILLED[name] + "\nprint('after')")
    assert r.stdout == b"before\n", (r.stdout, r.stderr)
    assert rep["status"] == "SYS", rep
    assert rep["syscall"]["name"] == name and rep["syscall"]["arch"] == "x86_64"
    assert f"killed by the seccomp policy default: {name}".encode() in r.stderr
    assert r.returncode == 137


def test_the_report_carries_the_arguments(sbx):
    r, rep = py(sbx, "call(272, 0x10000000)")
    assert rep["syscall"] == {"name": "unshare", "number": 272, "arch": "x86_64",
                              "args": [0x10000000] + rep["syscall"]["args"][1:]}


def test_answers_with_errno_are_not_violations(sbx):
    code = ("import socket, threading\n"
            "print('clone3', call(435, 0, 0))\n"                                    # ENOSYS: libc falls back
            "print('vsock', call(41, 40, 1, 0))\n"                                  # AF_VSOCK: EAFNOSUPPORT
            "print('vsock-high-bits', call(41, 40 | 1 << 32, 1, 0))\n"              # the 64-bit bypass
            "print('packet', call(41, 17, 3, 0))\n"
            "print('netlink-diag', call(41, 16, 3, 4))\n"
            "print('netlink-route', call(41, 16, 3, 0) >= 0)\n"                     # what getaddrinfo needs
            "print('inet', socket.socket().fileno() >= 0, 'unix', socket.socket(socket.AF_UNIX).fileno() >= 0)\n"
            "print('personality', call(135, 0x0400000), call(135, 0))\n"           # READ_IMPLIES_EXEC refused
            "t = threading.Thread(target=lambda: print('thread ok')); t.start(); t.join()\n"
            "pid = os.fork()\n"
            "if pid == 0: os._exit(7)\n"
            "print('fork', os.waitpid(pid, 0)[1] >> 8)\n")
    r, rep = py(sbx, code)
    assert rep["status"] == "OK", (rep, r.stderr)
    assert r.stdout.decode().splitlines() == [
        "before", "clone3 -38", "vsock -97", "vsock-high-bits -97", "packet -97", "netlink-diag -97",
        "netlink-route True", "inet True unix True", "personality -1 0", "thread ok", "fork 7"]


def test_tiocsti_is_refused_even_on_its_own_terminal(user):
    """With a controlling terminal of its own (setsid + TIOCSCTTY on a pty it opened), the
    program still cannot push input: EPERM, also with the 64-bit command trick; without
    the filter the same calls get the kernel's own answer, which is not EPERM."""
    code = ("import os, fcntl, termios, ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "m, s = os.openpty()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.setsid(); fcntl.ioctl(s, termios.TIOCSCTTY, 0)\n"
            "    r1 = libc.ioctl(s, termios.TIOCSTI, b'x'); e1 = ctypes.get_errno()\n"
            "    r2 = libc.syscall(16, s, ctypes.c_ulong(termios.TIOCSTI | 1 << 32), b'x'); e2 = ctypes.get_errno()\n"
            "    print(r1, e1, r2, e2, flush=True); os._exit(0)\n"
            "os.waitpid(pid, 0)\n")
    out = {}
    for policy in ("default", "none"):
        r = user.run([SANDBOX, "run", "--profile", "py311", "--seccomp", policy, "--", "python3", "-c", code])
        out[policy] = r.stdout.decode().split()
    assert out["default"] == ["-1", "1", "-1", "1"], out            # EPERM from the filter, twice
    assert out["none"][1] != "1", out                               # the kernel alone: success (0) or EIO


@pytest.fixture(scope="module")
def shared_dir():
    """A directory the test user can read (pytest's own temp dirs are private to root)."""
    d = tempfile.mkdtemp(prefix="sandbox-test-progs-")
    os.chmod(d, 0o755)
    yield __import__("pathlib").Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def abi_prog(shared_dir):
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the foreign-ABI test program"
    d = shared_dir
    src = d / "abi.c"
    src.write_text("#define _GNU_SOURCE\n#include <stdio.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n"
                   "int main(int c, char **v) {\n"
                   "  printf(\"before\\n\"); fflush(stdout);\n"
                   "  if (v[1][0] == 'x') syscall(39 | 0x40000000);            /* x32 getpid */\n"
                   "  else { int r; __asm__ volatile(\"int $0x80\" : \"=a\"(r) : \"a\"(20)); } /* i386 getpid */\n"
                   "  printf(\"after\\n\"); return 0; }\n")
    out = d / "abi"
    subprocess.run([gcc, "-O0", "-o", str(out), str(src)], check=True)
    return str(out)


@pytest.mark.parametrize("policy", ["default", "none"])        # none: the base layer's rules are x86_64 numbers
@pytest.mark.parametrize("kind,arch", [("x32", "x32"), ("int80", "i386")])
def test_foreign_abi_calls_are_killed(sbx, abi_prog, kind, arch, policy):
    d = os.path.dirname(abi_prog)
    r, rep = sbx.run("run", "--profile", "native", "--seccomp", policy, "--bind", f"{d}:/abi", "--", "/abi/abi", kind)
    assert r.stdout == b"before\n", r.stderr
    assert rep["status"] == "SYS" and rep["syscall"]["arch"] == arch and rep["syscall"]["name"] == "getpid", rep


def test_foreign_abi_reaches_the_kernel_without_the_filter(user, abi_prog):
    """The i386 call works on this kernel when no filter stands in the way: the test above is not
    vacuous.  (Outside a sandbox: every sandbox has a filter, `seccomp: none` the base layer,
    which kills foreign ABIs too, or an i386 prlimit64 would reach init.)"""
    r = user.run([abi_prog, "i"])
    assert r.returncode == 0 and r.stdout == b"before\nafter\n", r


def test_seccomp_none_is_said_in_the_report(sbx):
    r, rep = sbx.run("run", "--profile", "shell", "--seccomp", "none", "--", "true")
    assert rep["seccomp"] == "none"
    r, rep = sbx.run("run", "--profile", "shell", "--", "true")
    assert rep["seccomp"] == "default"


# ------------------------------------------------------------------ learn mode

def test_learn_round_trip(sbx):
    policy = os.path.join(sbx.box, "learned.yaml")
    prog = ["--", "python3", "-c", "import sys; print(sum(map(int, sys.stdin.read().split())))"]
    stdin = sbx.script("in.txt", "1 2 3\n")
    r = sbx("learn", "--profile", "py311", "--output", policy, "--stdin", stdin, *prog)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"6\n"
    text = open(policy).read()
    assert "default_action: kill" in text and "      - read" in text and "      - execve" in text
    # the learned policy lets the same run pass ...
    r, rep = sbx.run("run", "--profile", "py311", "--seccomp", policy, "--stdin", stdin, *prog)
    assert rep["status"] == "OK" and r.stdout == b"6\n", (rep, r.stderr)
    # ... and stops a program that needs one more call, naming it
    r, rep = sbx.run("run", "--profile", "py311", "--seccomp", policy, "--stdin", stdin, "--",
                     "python3", "-c", "import os, sys; print(sum(map(int, sys.stdin.read().split())));"
                                      "os.getpriority(os.PRIO_PROCESS, 0)")
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == "getpriority", rep
    assert b"getpriority (number 140) is not allowed" in r.stderr


def test_learn_needs_an_output(sbx):
    r = sbx("learn", "--profile", "shell", "--", "true")
    assert r.returncode == 125 and b"no --output given" in r.stderr
    no_traceback(r)


# ------------------------------------------------------------------ judge-strict

@pytest.fixture(scope="module")
def hello_programs(shared_dir):
    d = shared_dir
    (d / "a.c").write_text('#include <stdio.h>\nint main(){long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 1;'
                           ' printf("%ld\\n",a+b); return 0;}\n')
    (d / "a.cpp").write_text("#include <iostream>\nint main(){long a,b; std::cin>>a>>b; std::cout<<a+b<<std::endl;}\n")
    (d / "a.py").write_text("import sys\nprint(sum(map(int, sys.stdin.read().split())))\n")
    (d / "in.txt").write_text("3 4\n")
    built = {}
    for name, compiler, src, extra in (("c", "gcc", "a.c", []), ("c-static", "gcc", "a.c", ["-static"]),
                                       ("cpp", "g++", "a.cpp", []), ("cpp-static", "g++", "a.cpp", ["-static"])):
        assert shutil.which(compiler), f"{compiler} is needed for the judge-strict test programs"
        subprocess.run([compiler, "-O2", *extra, "-o", str(d / name), str(d / src)], check=True)
        built[name] = str(d / name)
    for p in d.iterdir():
        os.chmod(p, 0o755)
    return d, built


@pytest.mark.parametrize("lang", ["c", "c-static", "cpp", "cpp-static", "python"])
def test_judge_strict_runs_stdin_stdout_programs(sbx, hello_programs, lang):
    d, built = hello_programs
    stdin = str(d / "in.txt")
    if lang == "python":
        r, rep = sbx.run("run", "--profile", "py311", "--seccomp", "judge-strict", "--stdin", stdin, str(d / "a.py"))
    else:
        r, rep = sbx.run("run", "--profile", "native", "--seccomp", "judge-strict", "--stdin", stdin, built[lang])
    assert rep["status"] == "OK" and r.stdout == b"7\n", (rep, r.stderr)


@pytest.mark.parametrize("code,name", [("open('/tmp/x', 'w')", "openat"), ("import os; os.fork()", "clone"),
                                       ("import _socket; _socket.socket()", "socket")])
def test_judge_strict_stops_everything_else(sbx, code, name):
    r, rep = sbx.run("run", "--profile", "py311", "--seccomp", "judge-strict", "--", "python3", "-c", code)
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == name, rep


# ------------------------------------------------------------------ policies: cache, errors

def test_a_cached_filter_is_loaded_without_the_binding(user):
    code = ("import sys, sandbox.runner as r; r.prepare('py311', ['true']); "
            "print('seccomp' in sys.modules or 'pyseccomp' in sys.modules)")
    user.run([sys.executable, "-c", code])
    r = user.run([sys.executable, "-c", code])
    assert r.stdout == b"False\n", r.stderr


BAD_POLICIES = {
    "unknown_syscall": ("default_action: allow\nrules: [{syscall: mout, action: kill}]\n",
                        ["bad.yaml: rules[0].syscall", "unknown system call 'mout'", "did you mean 'mount'?"]),
    "bad_action": ("default_action: allow\nrules: [{syscall: mount, action: deny}]\n",
                   ["bad.yaml: rules[0].action", "'deny' is not an action", "errno NAME"]),
    "bad_errno": ("default_action: allow\nrules: [{syscall: mount, action: errno EWHAT}]\n",
                  ["rules[0].action", "'EWHAT' is not an errno"]),
    "bad_default": ("default_action: maybe\n", ["bad.yaml: default_action", "'maybe' is not an action"]),
    "no_default": ("rules: []\n", ["default_action", "no default action"]),
    "bad_arg": ("default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg7: 1}}]\n",
                ["rules[0].when.arg7", "arguments arg0 .. arg5"]),
    "bad_operator": ("default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg0: {equals: 1}}}]\n",
                     ["rules[0].when.arg0.equals", "unknown operator 'equals'"]),
    "bad_constant": ("default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg0: AF_INTE}}]\n",
                     ["rules[0].when.arg0", "'AF_INTE' is not a number or a known constant", "did you mean AF_INET?"]),
    "kill_and_log": ("default_action: allow\nrules: [{syscall: read, action: kill, when: {arg0: 5}},"
                     " {syscall: read, action: log}]\n", ["'read' has both kill and log rules"]),
    "unknown_key": ("default_action: allow\nrulez: []\n", ["rulez", "did you mean 'rules'?"]),
    "unknown_rule_key": ("default_action: allow\nrules: [{syscal: mount, action: kill}]\n",
                         ["bad.yaml: rules[0].syscal", "unknown key 'syscal'", "did you mean 'syscall'?"]),
    "missing_extends": ("extends: defualt\n", ["bad.yaml: extends", "no built-in seccomp policy named 'defualt'",
                                               "did you mean 'default'?"]),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_bad_policy_is_refused_with_where_and_fix(sbx, case):
    body, expected = BAD_POLICIES[case]
    path = sbx.script("bad.yaml", body)
    r = sbx("run", "--profile", "shell", "--seccomp", path, "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125, text
    for piece in expected:
        assert piece in text, (piece, text)
    assert "fix:" in text


def test_policy_named_in_a_profile_and_extended(sbx):
    """A profile names a policy file next to it; the policy extends the default and removes a rule."""
    sbx.script("mypolicy.yaml", "extends: default\nremove: [personality]\n"
                                "rules: [{syscall: getpriority, action: errno EACCES}]\n")
    profile = sbx.script("p.yaml", "extends: py311\nseccomp: mypolicy.yaml\n")
    code = "print(call(135, 0x0400000) >= 0, call(140, 0, 0))"
    r, rep = py(sbx, code, profile=profile)
    assert rep["seccomp"] == "mypolicy.yaml"
    assert r.stdout.decode().splitlines()[1] == "True -13", r.stderr   # personality allowed again; EACCES
    r, rep = py(sbx, KILLED["mount"], profile=profile)
    assert rep["status"] == "SYS"                                     # the rest of default still holds


def test_bad_policy_reference_in_a_profile(sbx):
    profile = sbx.script("p.yaml", "extends: shell\nseccomp: judge-strickt\n")
    r = sbx("run", "--profile", profile, "--", "true")
    assert r.returncode == 125
    assert b"p.yaml: seccomp" in r.stderr and b"did you mean 'judge-strict'?" in r.stderr


def test_log_action_lets_the_call_through_and_lists_it(sbx):
    policy = sbx.script("logpol.yaml", "extends: default\nrules: [{syscall: getpriority, action: log}]\n")
    r, rep = py(sbx, "print(call(140, 0, 0) >= 0); print(call(140, 0, 0) >= 0)", "--seccomp", policy)
    assert rep["status"] == "OK", rep
    assert r.stdout.decode().splitlines()[1:] == ["True", "True"]
    assert rep["seccomp_logged"] == [{"name": "getpriority", "number": 140, "arch": "x86_64"}]   # once
