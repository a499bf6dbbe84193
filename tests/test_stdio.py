"""What the program's stdin, stdout and stderr can be turned into, the caller's terminal, and the
honesty of the CLI's verdict line (issue 9 items 1, 7, 14; issue 16 item 13).

Rule: no descriptor the program holds refers to a host file or to the caller's terminal.  Every
attack here runs as the unprivileged test user and checks the host side afterwards, byte for byte.
"""
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import threading

import pytest

from conftest import SANDBOX, no_traceback, write

INPUT = "line1\nline2\nthe judge's input, which must survive\n"

# Every way a program might write through its stdin; the results go to stdout as JSON.
STDIN_ATTACK = r"""
import json, os, sys
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "done"
    except OSError as e:
        res[name] = e.errno
def reopen(path, flags):
    def go():
        fd = os.open(path, flags)
        try:
            if flags & 3:
                os.write(fd, b"PWNED")
        finally:
            os.close(fd)
    return go
for path in ("/proc/self/fd/0", "/dev/stdin"):
    attempt(path + " O_WRONLY", reopen(path, os.O_WRONLY))
    attempt(path + " O_RDWR", reopen(path, os.O_RDWR))
    attempt(path + " O_TRUNC", reopen(path, os.O_WRONLY | os.O_TRUNC))
    attempt(path + " O_APPEND", reopen(path, os.O_WRONLY | os.O_APPEND))
attempt("ftruncate", lambda: os.ftruncate(0, 0))
attempt("write", lambda: os.write(0, b"PWNED"))
attempt("pwrite", lambda: os.pwrite(0, b"PWNED", 0))
attempt("fchmod", lambda: os.fchmod(0, 0o666))
data = sys.stdin.buffer.read()
print(json.dumps({"res": res, "read": data.decode()}))
"""

SH_STDIN_ATTACK = ("for f in /proc/self/fd/0 /dev/stdin; do echo PWNED >$f; echo PWNED >>$f; echo PWNED 1<>$f; done "
                   "2>/dev/null; truncate -s 0 /proc/self/fd/0 2>/dev/null; cat")


def _input(sbx, name="in.txt"):
    # The judge's file, owned by the user the sandbox runs as: only the sandbox stands in the way.
    return write(os.path.join(sbx.box, name), INPUT, mode=0o644, owner=sbx.user)


def _unchanged(path):
    with open(path, "rb") as f:
        assert f.read() == INPUT.encode(), "the host's input file was changed by the program"


def test_stdin_file_cannot_be_written_through_proc_fd_py311(sbx):
    src = _input(sbx)
    script = sbx.script("attack.py", STDIN_ATTACK)
    r, rep = sbx.run("run", "--profile", "py311", "--stdin", src, script)
    no_traceback(r)
    _unchanged(src)
    out = json.loads(r.stdout)
    assert out["read"] == INPUT                  # what the program reads is still the judge's input
    assert r.returncode == 0 and rep["status"] == "OK", r.stderr


def test_stdin_file_cannot_be_written_through_proc_fd_shell(sbx):
    src = _input(sbx)
    r, rep = sbx.run("run", "--profile", "shell", "--stdin", src, "--", "sh", "-c", SH_STDIN_ATTACK)
    no_traceback(r)
    _unchanged(src)
    assert r.stdout.decode() == INPUT
    assert r.returncode == 0 and rep["status"] == "OK", r.stderr


def test_stdin_redirected_from_a_file_by_the_shell_is_protected_and_keeps_its_offset(sbx):
    """`sandbox run ... < FILE`: the CLI's own fd 0 is a host file; the program gets a copy, and
    what it consumed moves the caller's offset, so `{ sandbox run -- head -n1; cat; } < FILE` works."""
    src = _input(sbx)
    r = sbx.user.run(["sh", "-c", f"{SANDBOX} run --profile shell -- sh -c '{SH_STDIN_ATTACK}' < {src}"])
    no_traceback(r)
    _unchanged(src)
    assert r.returncode == 0 and r.stdout.decode() == INPUT, r.stderr
    r = sbx.user.run(["sh", "-c", f"{{ {SANDBOX} run --profile shell -- head -n 1; cat; }} < {src}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == INPUT               # line1 from the sandbox, the rest from cat


def test_stdin_path_and_fd_from_the_api_are_protected(user, sbx):
    src = _input(sbx)
    script = sbx.script("attack.py", STDIN_ATTACK)
    r = user.run([sys.executable, "-c", f"""
import json, os, sandbox
out = {{}}
r = sandbox.run("py311", script={script!r}, stdin={src!r})
out["path"] = (r.status, json.loads(r.stdout)["read"])
fd = os.open({src!r}, os.O_RDWR)           # the caller could write it: the program must not
r = sandbox.run("py311", script={script!r}, stdin=fd)
out["fd"] = (r.status, json.loads(r.stdout)["read"])
r = sandbox.run("shell", ["sh", "-c", {SH_STDIN_ATTACK!r}], stdin=fd)   # its offset is now at the end
out["fd_again"] = (r.status, r.stdout.decode())
print(json.dumps(out))
"""])
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout.decode().splitlines()[-1])
    _unchanged(src)
    assert out["path"] == ["OK", INPUT] and out["fd"] == ["OK", INPUT]
    assert out["fd_again"] == ["OK", ""]


def test_stdin_missing_file_is_125_not_127(sbx):
    r = sbx("run", "--profile", "shell", "--stdin", "/nonexistent/in", "--", "cat")
    text = no_traceback(r)
    assert r.returncode == 125, text
    assert "--stdin" in text and "/nonexistent/in" in text and "fix:" in text


def test_stdin_directory_is_refused(sbx):
    r = sbx("run", "--profile", "shell", "--stdin", sbx.box, "--", "cat")
    text = no_traceback(r)
    assert r.returncode == 125 and "--stdin" in text and "directory" in text, text


def test_stdout_and_stderr_files_cannot_be_read_or_truncated(sbx):
    """--stdout/--stderr FILE: the program holds pipes; the runner alone writes the files."""
    out, err = (write(os.path.join(sbx.box, n), "SECRET old content\n", owner=sbx.user) for n in ("o", "e"))
    script = sbx.script("attack.py", r"""
import json, os
seen, res = b"", {}
for path in ("/proc/self/fd/1", "/dev/stdout", "/proc/self/fd/2", "/dev/stderr"):
    for name, flags in (("rd", os.O_RDONLY), ("rdwr", os.O_RDWR), ("trunc", os.O_WRONLY | os.O_TRUNC)):
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as e:
            res[path + " " + name] = e.errno
            continue
        try:
            if name != "trunc":
                seen += os.read(fd, 4096)
        except OSError:
            pass
        os.close(fd)
for fd in (1, 2):
    for call in (lambda: os.ftruncate(fd, 0), lambda: os.lseek(fd, 0, 0), lambda: os.pread(fd, 100, 0)):
        try:
            seen += call() or b""
        except (OSError, TypeError):
            pass
os.write(2, b"E\n")
print(json.dumps({"leaked": b"SECRET" in seen, "kinds": [os.readlink(f"/proc/self/fd/{i}")[:5] for i in (1, 2)]}))
""")
    r, rep = sbx.run("run", "--profile", "py311", "--stdout", out, "--stderr", err, script)
    no_traceback(r)
    assert rep["status"] == "OK", r.stderr
    result = open(out).read()
    assert json.loads(result) == {"leaked": False, "kinds": ["pipe:", "pipe:"]}
    assert open(err).read() == "E\n"


def test_files_in_cannot_be_written_through_proc_fd(user, sbx):
    """files_in: bound read-only; a reopen through /proc/self/fd goes through that bind (EROFS).
    With files_out the inputs under the working directory are private copies."""
    src = _input(sbx)
    script = sbx.script("attack.py", r"""
import json, os, sys
res = {}
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    for name, flags in (("wronly", os.O_WRONLY), ("rdwr", os.O_RDWR), ("trunc", os.O_WRONLY | os.O_TRUNC)):
        try:
            w = os.open(f"/proc/self/fd/{fd}", flags)
            os.write(w, b"PWNED")
            os.close(w)
            res[path + name] = "done"
        except OSError as e:
            res[path + name] = e.errno
    for name, call in (("chmod", lambda: os.fchmod(fd, 0o666)), ("ftruncate", lambda: os.ftruncate(fd, 0)),
                       ("open", lambda: open(path, "w").write("PWNED"))):
        try:
            call()
            res[path + name] = "done"
        except OSError as e:
            res[path + name] = e.errno
print(json.dumps(res))
""")
    r = user.run([sys.executable, "-c", f"""
import json, sandbox
code = ["python3.11", "-I", "/code/attack.py"]
a = sandbox.run("py311", code + ["/data/in.txt"], files_in={{"/data/in.txt": {src!r}, "/code/attack.py": {script!r}}})
b = sandbox.run("py311", code + ["/box/in.txt", "/data/in.txt"], files_out=["/box/in.txt"],
                files_in={{"/box/in.txt": {src!r}, "/data/in.txt": {src!r}, "/code/attack.py": {script!r}}})
print(json.dumps([a.status, json.loads(a.stdout), b.status, a.stderr.decode() + b.stderr.decode()]))
"""])
    assert r.returncode == 0, r.stderr.decode()
    a_status, a_res, b_status, errors = json.loads(r.stdout.decode().splitlines()[-1])
    _unchanged(src)
    assert a_status == "OK" and b_status == "OK", errors
    assert "done" not in a_res.values(), a_res        # every write of the bound file failed


# ---------------------------------------------------------------------------------- the caller's terminal

TTY_ATTACK = r"""
import fcntl, json, os, sys, termios
res = {"isatty": [os.isatty(i) for i in (0, 1, 2)]}
def attempt(name, fn):
    try:
        fn()
        res[name] = "done"
    except (OSError, termios.error) as e:
        res[name] = e.args[0]
def raw():
    attrs = termios.tcgetattr(0)
    attrs[0] &= ~termios.IXON
    attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG)
    termios.tcsetattr(0, termios.TCSANOW, attrs)
attempt("tcsetattr", raw)
for fd in (0, 1, 2):
    attempt(f"nonblock{fd}", lambda: fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK))
attempt("tiocsctty", lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
attempt("tcoff", lambda: termios.tcflow(0, termios.TCOOFF))
attempt("tcoff1", lambda: termios.tcflow(1, termios.TCOOFF))
attempt("devtty", lambda: os.close(os.open("/dev/tty", os.O_RDWR)))
for fd in (0, 1, 2):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
print("ready", flush=True)
res["line"] = sys.stdin.readline()
print(json.dumps(res), flush=True)
"""


class Pty:
    """A pseudo-terminal standing in for the caller's: the runner gets the slave as
    stdin, stdout and stderr (owned by the test user, as a user's terminal is), the
    test reads and types on the master."""

    def __init__(self, user, own=True):
        self.master, self.slave = os.openpty()
        if os.geteuid() == 0 and own:
            os.fchown(self.slave, user.uid, user.gid)
        self.output = b""

    def read_until(self, marker, proc, watchdog):
        while marker not in self.output and not watchdog.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self.output += os.read(self.master, 65536)
            elif proc.poll() is not None and marker not in self.output:
                break
        return marker in self.output

    def drain(self):
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                break

    def close(self):
        os.close(self.master)
        os.close(self.slave)


def _watchdog(proc, seconds=30):
    fired = threading.Event()

    def fire():
        fired.set()
        proc.kill()
    timer = threading.Timer(seconds, fire)
    timer.start()
    return fired, timer


@pytest.mark.parametrize("owned", [True, False], ids=["own-terminal", "terminal-of-another-user"])
def test_callers_terminal_is_never_handed_to_the_program(user, sbx, owned):
    """owned=False: the terminal belongs to someone else (after su), so the runner cannot open a
    description of its own and relays through the caller's, in pieces that never block."""
    if not owned and os.geteuid() != 0:
        pytest.skip("needs root to hand the test user a terminal it does not own")
    script = sbx.script("tty.py", TTY_ATTACK)
    pty = Pty(user, own=owned)
    try:
        modes_before = termios.tcgetattr(pty.slave)
        flags_before = fcntl.fcntl(pty.slave, fcntl.F_GETFL)
        # The runner in a session of its own: the terminal is nobody's controlling tty, the
        # case where a program holding it could take it with TIOCSCTTY.
        p = user.popen([SANDBOX, "run", "--profile", "py311", script], stdin=pty.slave, stdout=pty.slave,
                       stderr=pty.slave, start_new_session=True)
        fired, timer = _watchdog(p)
        try:
            assert pty.read_until(b"ready", p, fired), pty.output
            os.write(pty.master, b"typed line\n")
            code = p.wait()
        finally:
            timer.cancel()
        pty.drain()
        assert not fired.is_set(), f"the runner did not exit after the program: {pty.output!r}"
        assert termios.tcgetattr(pty.slave) == modes_before
        assert fcntl.fcntl(pty.slave, fcntl.F_GETFL) == flags_before
        text = pty.output.decode(errors="replace")
        res = json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
        assert code == 0, text
        assert res["isatty"] == [False, False, False]            # pipes, never the caller's terminal
        assert res["line"] == "typed line\n"                     # interactive input goes through the relay
        for name in ("tcsetattr", "tiocsctty", "tcoff", "tcoff1"):
            assert res[name] == 25, (name, res)                  # ENOTTY: there is no terminal to act on
        assert res["devtty"] == 6                                # ENXIO: no controlling terminal
    finally:
        pty.close()


def test_stdin_is_relayed_line_by_line_and_eof_propagates(user):
    p = user.popen([SANDBOX, "run", "--profile", "shell", "--", "/bin/sh", "-c",
                    "read x; echo got $x; read y; echo got $y; cat; echo eof"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fired, timer = _watchdog(p)
    try:
        p.stdin.write(b"a\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"got a\n"     # answered before any more input: no read-ahead wait
        p.stdin.write(b"b\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"got b\n"
        p.stdin.write(b"the rest\n")
        p.stdin.close()                              # EOF reaches the program: cat ends
        assert p.stdout.read() == b"the rest\neof\n"
        assert p.wait() == 0, p.stderr.read()
    finally:
        timer.cancel()
        p.stdout.close()
        p.stderr.close()
    assert not fired.is_set()


def test_stdin_relay_is_bounded_when_the_program_does_not_read(user):
    """Backpressure: the runner reads the caller's stdin only as fast as the program takes it."""
    p = user.popen([SANDBOX, "run", "--profile", "shell", "--wall-time", "20", "--", "/bin/sh", "-c",
                    "echo ready; read line; echo got; exec sleep 100"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fired, timer = _watchdog(p, 60)
    try:
        assert p.stdout.readline() == b"ready\n"
        os.set_blocking(p.stdin.fileno(), False)
        accepted, chunk = 0, b"x" * 4095 + b"\n"
        idle = 0
        while idle < 20 and accepted < 64 << 20:     # stop once nothing more is taken for a while
            try:
                accepted += os.write(p.stdin.fileno(), chunk)
                idle = 0
            except BlockingIOError:
                idle += 1
                select.select([], [p.stdin], [], 0.05)
        assert p.stdout.readline() == b"got\n"
        # our pipe (64 KiB) + the relay's one chunk (64 KiB) + the program's pipe (64 KiB) + its read
        assert accepted < 1 << 20, f"the runner took {accepted} bytes the program never read"
    finally:
        timer.cancel()
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                f.close()
            except OSError:
                pass
    assert not fired.is_set()


def test_final_drain_to_a_stopped_terminal_is_abandoned_with_a_note(user, box):
    """The review's hang: output stopped on the caller's terminal (tcflow TCOOFF; the program can no
    longer do it, a user's ^S or another process still can).  Once the sandbox is gone the runner
    waits for the terminal only while it makes progress, then gives up with a note."""
    err = os.path.join(box, "err")
    pty = Pty(user)
    try:
        termios.tcflow(pty.slave, termios.TCOOFF)
        with open(err, "wb") as errf:
            if os.geteuid() == 0:
                os.chown(err, user.uid, user.gid)
            p = user.popen([SANDBOX, "run", "--profile", "shell", "--", "head", "-c", "100000", "/dev/zero"],
                           stdin=subprocess.DEVNULL, stdout=pty.slave, stderr=errf, start_new_session=True)
            fired, timer = _watchdog(p)
            try:
                code = p.wait()
            finally:
                timer.cancel()
        termios.tcflow(pty.slave, termios.TCOON)
        pty.drain()
        assert not fired.is_set(), "the runner hung on a stopped terminal"
        text = open(err).read()
        assert code == 0, text
        assert "sandbox: stdout:" in text and "not delivered" in text, text
        assert len(pty.output) < 100000
    finally:
        pty.close()


def test_a_slow_pipe_reader_gets_everything(user):
    """A pipe's reader is the caller's own pipeline: waited for, however long it pauses (here
    longer than a terminal is given, stdio.TERMINAL_IDLE)."""
    from sandbox.stdio import TERMINAL_IDLE
    r = user.run(["sh", "-c", f"{SANDBOX} run --profile shell -- head -c 300000 /dev/zero | "
                              f"{{ sleep {TERMINAL_IDLE + 1}; wc -c; }}"], timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == b"300000", r.stderr


# ---------------------------------------------------------------------------------- the verdict line

FORGED = "sandbox: TLE: CPU time limit exceeded: 9.999 s of CPU used, limit 1s"


def test_forged_verdict_line_is_followed_by_the_real_one(sbx):
    r = sbx("run", "--profile", "shell", "--", "sh", "-c", f"echo '{FORGED}' >&2; echo '{FORGED}'")
    text = no_traceback(r)
    assert r.returncode == 0
    lines = r.stderr.decode().splitlines()
    assert lines[0] == FORGED
    assert lines[-1].startswith("sandbox: OK: exited with status 0") and "real verdict" in lines[-1], text
    r = sbx("run", "--profile", "shell", "--quiet", "--", "sh", "-c", "echo 'SANDBOX: MLE: made up' >&2")
    last = r.stderr.decode().splitlines()[-1]
    assert r.returncode == 0 and last.startswith("sandbox: OK") and "real verdict" in last    # even --quiet


def test_forged_line_ending_in_a_carriage_return_cannot_swallow_the_real_one(sbx):
    """Into a pipe (a log shown on a terminal later replays the carriage return): a reset, then
    the real line on a line of its own.  A partial line without controls just gets a newline."""
    r = sbx("run", "--profile", "shell", "--", "sh", "-c", f"printf '{FORGED}\\r' >&2; exit 3")
    err = r.stderr.decode()
    assert r.returncode == 3
    last = err.splitlines()[-1]
    assert err.endswith("\n") and last.startswith("\x1b[2Ksandbox: RE: exited with status 3"), err
    assert "real verdict" in last and err.index(FORGED) < err.rindex("\x1b[0m") < err.rindex("sandbox: RE")
    r = sbx("run", "--profile", "shell", "--wall-time", "0.3", "--", "sh", "-c", "printf 'partial' >&2; sleep 5")
    assert r.returncode == 137 and r.stderr.startswith(b"partial\nsandbox: TLE: "), r.stderr


def test_no_extra_line_for_an_honest_program(sbx):
    r = sbx("run", "--profile", "shell", "--", "sh", "-c", "echo fine >&2")
    assert r.returncode == 0 and r.stderr == b"fine\n"


def test_terminal_attributes_are_reset_before_the_real_verdict(user, sbx):
    """stderr is a terminal and the program leaves concealed text on: the real line comes after a reset."""
    pty = Pty(user)
    try:
        p = user.popen([SANDBOX, "run", "--profile", "shell", "--", "sh", "-c",
                        f"printf '\\033[8m{FORGED}\\n\\033[8m' >&2"],
                       stdin=subprocess.DEVNULL, stdout=pty.slave, stderr=pty.slave, start_new_session=True)
        fired, timer = _watchdog(p)
        try:
            assert pty.read_until(b"real verdict", p, fired), pty.output
            code = p.wait()
        finally:
            timer.cancel()
        pty.drain()
        out = pty.output
        assert code == 0 and not fired.is_set()
        conceal, real = out.rindex(b"\x1b[8m"), out.rindex(b"sandbox: OK")
        assert conceal < out.rindex(b"\x1b[0m") < real, out
        assert out.rindex(b"\x1b[!p") < real                      # soft reset: margins, charsets, modes
    finally:
        pty.close()


# ---------------------------------------------------------------------------------- options checked first

def test_unwritable_report_is_refused_before_anything_runs(sbx, box):
    marker = os.path.join(box, "ran")
    r = sbx("run", "--profile", "shell", "--bind", f"{box}:/out:rw", "--report", "/nonexistent/x", "--",
            "touch", "/out/ran")
    text = no_traceback(r)
    assert r.returncode == 125 and "--report" in text and "/nonexistent/x" in text and "fix:" in text, text
    assert not os.path.exists(marker)


def test_quiet_does_not_hide_setup_errors(sbx):
    profile = sbx.script("p.yaml", "extends: shell\ntmpfs: {/usr/newdir: 1M}\n")
    r = sbx("run", "--profile", profile, "--quiet", "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125
    assert "step 'tmpfs' failed" in text and "XX" in text, text


def test_quiet_hides_limit_verdicts(sbx):
    r = sbx("run", "--profile", "shell", "--quiet", "--wall-time", "0.2", "--", "sleep", "5")
    assert r.returncode == 137 and r.stderr == b""


def test_stdin_from_a_file_whose_size_says_nothing_is_read_whole(sbx):
    """/proc files report size 0: relayed to their end, not copied as empty."""
    with open("/proc/version", "rb") as f:
        expected = f.read()
    r = sbx("run", "--profile", "shell", "--stdin", "/proc/version", "--", "cat")
    assert r.returncode == 0 and r.stdout == expected, r.stderr
