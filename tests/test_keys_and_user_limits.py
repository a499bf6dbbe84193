"""What no namespace covers: the caller's keyrings, and per-user counters (inotify, fanotify,
namespaces) that the kernel charges up to the caller's own allowance."""
import json
import subprocess
import sys

from conftest import SANDBOX

# x86_64: add_key 248, request_key 249, keyctl 250
PROBE_KEYS = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(4096)
n = libc.syscall(250, 11, -3, buf, 4096)                 # KEYCTL_READ of the session keyring: its key ids
n += libc.syscall(250, 11, -4, buf, 4096)                # ... and of the user keyring
found = libc.syscall(249, b"user", b"sbx-secret", None, 0)
err = ctypes.get_errno()
import json
print(json.dumps([open("/proc/keys").read(), open("/proc/key-users").read(), n, found, err]))
"""

# Run as the test user: a session keyring of its own with a key in it, then a sandbox that probes.
OUTER = """
import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(250, 1, None) > 0                    # KEYCTL_JOIN_SESSION_KEYRING: our own session
key = libc.syscall(248, b"user", b"sbx-secret", b"hunter2", 7, -3)   # add_key to @s
assert key > 0, ctypes.get_errno()
ukey = libc.syscall(248, b"user", b"sbx-secret-u", b"hunter3", 7, -4)   # and to @u, which outlives us
assert ukey > 0, ctypes.get_errno()
host = "sbx-secret" in open("/proc/keys").read()
r = subprocess.run([sys.argv[1], "run", "--profile", "py311", "--seccomp", "none", "--", "python3", "-c",
                    sys.argv[2]], capture_output=True)
libc.syscall(250, 21, ukey)                              # KEYCTL_INVALIDATE: leave nothing behind
print(host)
print(r.stdout.decode(), end="")
sys.stderr.write(r.stderr.decode())
"""


def test_caller_keys_are_invisible_and_unreachable(user):
    r = user.run([sys.executable, "-c", OUTER, SANDBOX, PROBE_KEYS])
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "True", (r.stdout, r.stderr)      # the key is there on the host side
    assert len(lines) == 2, (r.stdout, r.stderr)
    keys, key_users, n, found, err = json.loads(lines[1])
    assert keys == "" and key_users == "", lines[1]      # masked: empty files
    assert n == 0                                         # fresh session and user keyrings: no keys in them
    assert found == -1 and err == 126, lines[1]           # request_key: ENOKEY


def test_explain_shows_the_keyring_and_the_per_user_caps(sbx):
    text = sbx("run", "--profile", "shell", "--explain", "--", "true").stdout.decode()
    assert "session keyring: new and empty" in text
    assert "max_inotify_instances 16" in text and "max_user_namespaces 0" in text


HOG = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0: break
    fds.append(fd)
print(len(fds), ctypes.get_errno(), flush=True)
sys.stdin.readline()                                     # hold them until the test has looked
"""


def test_inotify_instances_are_capped_and_the_caller_keeps_its_own(user):
    p = user.popen([SANDBOX, "run", "--profile", "py311", "--", "python3", "-c", HOG],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        count, err = p.stdout.readline().split()
        assert int(count) <= 16 and int(err) == 24, (count, err)         # EMFILE at the sandbox's cap
        mine = user.run([sys.executable, "-c", "import ctypes; print(ctypes.CDLL(None).inotify_init1(0))"])
        assert int(mine.stdout) >= 0, mine                # the caller's host processes still get one
    finally:
        p.stdin.write(b"\n")
        p.stdin.close()
        p.wait(timeout=60)


SIGQUEUE = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
class Value(ctypes.Union):
    _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
n = 0
while n < 200000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, Value(1)) == 0:
    n += 1
print(n, ctypes.get_errno(), flush=True)
sys.stdin.readline()
"""


def test_pending_signals_are_capped_and_the_caller_keeps_its_own(user):
    """Queued signals are charged to the caller's uid as well: a run that queued them until EAGAIN
    took all 96365 of the caller's, and the caller's own sigqueue failed while it ran."""
    p = user.popen([SANDBOX, "run", "--profile", "py311", "--", "python3", "-c", SIGQUEUE],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        count, err = p.stdout.readline().split()
        assert int(count) <= 256 and int(err) == 11, (count, err)          # EAGAIN at the sandbox's cap
        mine = user.run([sys.executable, "-c", SIGQUEUE.replace("sys.stdin.readline()", "")])
        assert int(mine.stdout.split()[0]) > 256, mine.stdout              # the caller still has its own
    finally:
        p.stdin.write(b"\n")
        p.stdin.close()
        p.wait(timeout=60)
