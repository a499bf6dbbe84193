"""What the program can and cannot see or touch.  Each test tries it from inside."""
import os
import pty

from conftest import SANDBOX

EXPECTED_ROOT = {"bin", "box", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"}


def sh(sbx, script, *extra, profile="shell"):
    return sbx("run", "--profile", profile, *extra, "--", "sh", "-c", script)


def test_root_holds_only_the_profile_binds(sbx):
    r = sh(sbx, "ls -A /")
    assert set(r.stdout.decode().split()) <= EXPECTED_ROOT | {"lib32", "libx32"}, r.stdout
    assert {"home", "root", "var", "run", "srv", "opt", "mnt", "media"}.isdisjoint(r.stdout.decode().split())


def test_host_files_outside_the_binds_are_invisible(sbx, box):
    secret = os.path.join(box, "secret.txt")
    with open(secret, "w") as f:
        f.write("host secret")
    os.chmod(secret, 0o644)
    r = sh(sbx, f"cat {secret}; cat /etc/hostname; cat /etc/passwd; ls /home")
    assert r.returncode != 0
    assert b"host secret" not in r.stdout
    err = r.stderr.decode()
    assert err.count("No such file or directory") == 4, err


def test_binds_and_root_are_read_only(sbx):
    r = sh(sbx, "touch /usr/x 2>&1; touch /x 2>&1; touch /etc/x 2>&1; mkdir /newdir 2>&1; touch /dev/x 2>&1; true")
    out = r.stdout.decode()
    assert out.count("Read-only file system") == 5, out


def test_bind_option_read_only_by_default_and_rw_when_asked(sbx, box):
    ro_dir, rw_dir = os.path.join(box, "ro"), os.path.join(box, "rw")
    for d in (ro_dir, rw_dir):
        os.mkdir(d)
        os.chmod(d, 0o777)
    r = sh(sbx, "touch /ro/a 2>&1; echo written > /rw/b; cat /rw/b", "--bind", f"{ro_dir}:/ro", "--bind", f"{rw_dir}:/rw:rw")
    assert b"Read-only file system" in r.stdout and b"written" in r.stdout
    assert not os.path.exists(os.path.join(ro_dir, "a"))
    st = os.stat(os.path.join(rw_dir, "b"))
    assert st.st_uid == sbx.user.uid, "a file written inside belongs to the caller outside"


def test_every_bind_is_nosuid_and_nodev(sbx, box):
    r = sh(sbx, "cat /proc/self/mountinfo", "--bind", f"{box}:/data:rw")
    for line in r.stdout.decode().splitlines():
        fields = line.split()
        mountpoint, options = fields[4], fields[5].split(",")
        if mountpoint in ("/usr", "/data", "/etc/ld.so.cache", "/tmp", "/box"):
            assert "nosuid" in options and "nodev" in options, line
        if mountpoint in ("/usr", "/etc/ld.so.cache", "/"):
            assert "ro" in options, line


def test_tmp_is_private_and_vanishes_after_the_run(sbx):
    r = sh(sbx, "echo data > /tmp/left-behind && cat /tmp/left-behind && df -k /tmp | tail -1")
    assert r.stdout.startswith(b"data\n"), r.stderr
    assert b"65536" in r.stdout       # the profile's 64M cap
    r = sh(sbx, "ls -A /tmp")
    assert r.stdout == b""
    assert not os.path.exists("/tmp/left-behind")


def test_tmpfs_size_is_enforced(sbx):
    r = sh(sbx, "head -c 2000000 /dev/zero > /tmp/big", "--file-size", "unlimited",
           profile=sbx.script("small.yaml", "extends: shell\ntmpfs: {/tmp: {size: 1M}}\n"))
    assert r.returncode != 0 and b"No space left on device" in r.stderr


def test_host_mount_table_is_unchanged_by_a_run(sbx):
    def table():
        with open("/proc/self/mountinfo") as f:
            return f.read()
    before = table()
    assert sh(sbx, "true").returncode == 0
    assert table() == before


def test_pid_namespace_program_is_pid_2_and_sees_only_the_sandbox(sbx):
    code = "import os; print(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    r = sbx("run", "--profile", "py311", "--", "python3", "-c", code)
    assert r.stdout == b"2 [1, 2]\n", r.stderr     # init is 1, the program 2, nothing of the host


def test_no_network_only_loopback(sbx):
    code = ("import socket\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n"
            "try:\n socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
            "except OSError as e: print('blocked', e.errno)\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "c = socket.create_connection(s.getsockname()); print('loopback ok')\n")
    r = sbx("run", "--profile", "py311", "--", "python3", "-c", code)
    assert r.stdout.decode().splitlines() == ["['lo']", "blocked 101", "loopback ok"], r.stderr


def test_own_hostname_and_ids(sbx):
    r = sh(sbx, "hostname; id -u; id -g")
    assert r.stdout.decode().split() == ["sandbox", "1000", "1000"]


def test_no_capabilities_and_no_new_privs(sbx):
    r = sh(sbx, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields)
    assert fields["NoNewPrivs"].strip() == "1"


def test_uid_0_inside_gains_no_capabilities(sbx):
    profile = sbx.script("root.yaml", "extends: shell\nuser: {uid: 0, gid: 0}\n")
    r = sh(sbx, "id -u; grep CapEff /proc/self/status; touch /usr/x 2>&1 || true", profile=profile)
    out = r.stdout.decode()
    assert out.startswith("0\n") and "0000000000000000" in out and "Read-only" in out


def test_only_stdio_is_inherited(user, box):
    """A descriptor the runner leaks (not close-on-exec) must not reach the program."""
    leaked = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leaked, True)
    try:
        r = user.run([SANDBOX, "run", "--profile", "shell", "--", "ls", "/proc/self/fd"], pass_fds=(leaked,))
    finally:
        os.close(leaked)
    assert r.stdout.split() == [b"0", b"1", b"2", b"3"], r.stdout   # 3 is ls's own directory handle


def test_init_cannot_be_traced_or_read(sbx):
    """Without the seccomp filter (which kills ptrace outright): init still cannot be traced or read."""
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())\n"       # PTRACE_ATTACH to init
            "try:\n open('/proc/1/environ').read()\nexcept OSError as e: print('environ', e.errno)\n")
    r = sbx("run", "--profile", "py311", "--seccomp", "none", "--", "python3", "-c", code)
    assert r.stdout == b"-1 1\nenviron 13\n", r.stderr     # EPERM, EACCES


def test_cwd_is_inside_the_sandbox(sbx):
    r = sh(sbx, "readlink /proc/self/cwd; readlink /proc/1/cwd 2>&1 || true")
    assert r.stdout.decode().splitlines()[0] == "/box"


def test_new_session_without_controlling_terminal(user):
    """setsid: even with a terminal as stdin, the program has no controlling terminal
    (so TIOCSTI cannot push input into the caller's shell)."""
    master, slave = pty.openpty()
    try:
        code = ("import os, fcntl, termios\n"
                "print('sid', os.getsid(0) == os.getpid())\n"
                "try:\n open('/dev/tty')\nexcept OSError as e: print('tty', e.errno)\n"
                "try:\n fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('tiocsti ok')\n"
                "except OSError as e: print('tiocsti', e.errno)\n")
        r = user.run([SANDBOX, "run", "--profile", "py311", "--", "python3", "-c", code], stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["sid True", "tty 6"], r.stdout   # ENXIO: no controlling terminal
    assert lines[2] in ("tiocsti 1", "tiocsti 5"), lines   # EPERM (not our tty) or EIO (disabled)


def test_proc_sys_and_friends_are_read_only(sbx):
    r = sh(sbx, "{ echo 1 > /proc/sys/kernel/ns_last_pid; } 2>&1; cat /proc/self/mountinfo")
    out = r.stdout.decode()
    assert "cannot create /proc/sys/kernel/ns_last_pid: Read-only file system" in out
    mounts = {line.split()[4]: line.split()[5] for line in out.splitlines()[1:]}
    covered = [p for p in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus") if p in mounts]
    assert "/proc/sys" in covered
    for p in covered:
        assert mounts[p].startswith("ro,"), (p, mounts[p])


def test_minimal_dev(sbx):
    r = sh(sbx, "ls /dev | sort | tr '\\n' ' '; echo; head -c 4 /dev/zero | od -An -tx1; "
                "echo ok > /dev/null && echo null-ok; echo shm > /dev/shm/x && cat /dev/shm/x")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == sorted(["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                                       "stdout", "tty", "urandom", "zero"])
    assert lines[1].split() == ["00", "00", "00", "00"]
    assert lines[2:] == ["null-ok", "shm"]


def test_nested_user_namespaces_are_disabled(sbx):
    """A nested user namespace would give the program capabilities over new mount and
    network namespaces (kernel attack surface): user.max_user_namespaces is 0 inside.
    Tested without the seccomp filter, which kills unshare before this layer is reached."""
    r = sh(sbx, "cat /proc/sys/user/max_user_namespaces; "
                "unshare -Urm sh -c 'mount -t tmpfs x /tmp && echo MOUNTED' 2>&1; true", "--seccomp", "none")
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "0"
    assert "No space left on device" in lines[1] and "MOUNTED" not in r.stdout.decode()


def test_setuid_binaries_do_not_elevate(sbx):
    r = sh(sbx, "ls -l /usr/bin/su | cut -c1-10; su -c id root 2>&1; id -u")
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("-rws")                 # setuid on the host
    assert lines[-1] == "1000" and "uid=0" not in r.stdout.decode()
