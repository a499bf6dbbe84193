"""The launcher protocol, the Python side: the descriptors, the plan's encoding,
the per-run placeholders and one constructor per op (launcher.c: its OPS table
is the other side, tests/test_launch_protocol.py holds the two together).  And
starting the launcher: the plan goes in on a memfd, setup errors and status
come back on two pipes, the program's output on two more.

posix_spawn, not fork: the caller may be a threaded program, and nothing of
Python runs in the child.
"""
import os
import time

from .errors import ProfileError, SetupError, UsageError, shorten

LAUNCHER_NAME = "sandbox-launch"
_HERE = os.path.dirname(os.path.abspath(__file__))
SIGPIPE, SIGXFSZ, SIGTERM = 13, 25, 15

# The launcher's descriptors on entry (0-2: the program's stdio).
PLAN_FD = 3             # the encoded plan, a memfd
ERR_FD = 4              # setup errors: "E <op index> <errno> <text>"; the program's exec failure too
STATUS_FD = 5           # status records (launcher.c's header lists them)
NOTIFY_FD = 6           # in the program process: the seccomp listener goes to init here
WORKDIR_FD = 7          # optional: a unix socket the kept working directory is sent back on
GATE_FD = 8             # optional: a pipe; init waits for b"g" on it before it forks the program

MAGIC = b"SBX1"
MAX_TOKENS = 65536      # launcher.c MAX_TOKENS: the NUL-separated strings of an encoded plan
MAX_SLOTS = 256         # launcher.c MAX_SLOTS: bind sources and image layers held open at once

# Per-run values: a plan is built once and may run many times; each run
# substitutes its own at encode().  A NUL marks them: no real argument has one.
RUN_CGROUP = "\0cgroup\0"      # the whole argument: this run's fresh cgroup directory
RUNNER_PID = "\0pid\0"         # the whole argument: the process that runs the plan (the launcher dies with it)
HOST_ID = "\0hostid\0"         # inside an argument: the unprivileged host id a root caller's run claimed


def encode(ops, cgroup_path=None, host_id=None):
    """The launcher's input: MAGIC, then each op as NAME NARGS ARGS..., every token NUL-terminated."""
    out = [MAGIC]
    if sum(len(o) + 1 for o in ops) + 1 > MAX_TOKENS:
        raise ProfileError(f"the plan has more than the {MAX_TOKENS} parts the launcher reads (every "
                           "argument, environment variable and mount is one or more)", "plan",
                           "use fewer environment variables, arguments or binds")
    for o in ops:
        out.append(o[0].encode())
        out.append(str(len(o) - 1).encode())
        for a in o[1:]:
            if "\0" in a:              # a per-run value goes here (else: a NUL, refused below)
                if a == RUN_CGROUP:
                    a = cgroup_path
                elif a == RUNNER_PID:
                    a = str(os.getpid())
                elif host_id is not None:
                    a = a.replace(HOST_ID, str(host_id))
            a = os.fsencode(a)
            if b"\0" in a:
                raise UsageError(f"{shorten(a, 60)} contains a NUL byte", f"step {o[0]}", "remove the NUL byte")
            out.append(a)
    return b"\0".join(out) + b"\0"


def launcher_path():
    for candidate in (os.environ.get("SANDBOX_LAUNCHER"),
                      os.path.join(_HERE, "libexec", LAUNCHER_NAME)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f"the launcher {os.path.join(_HERE, 'libexec', LAUNCHER_NAME)} is missing",
                     "installation", "reinstall the package (pip install .), which compiles it; it needs a C "
                     "compiler: apt install gcc libc6-dev")


class Launched:
    """The running launcher, the runner's ends of its pipes, and when it was spawned (time.monotonic).
    `gate`: our end of GATE_FD when spawn(gate=True), else None: see go() and abandon()."""
    __slots__ = ("pid", "err", "status", "out", "errout", "t_spawn", "gate")

    def __init__(self, pid, err, status, out, errout, t_spawn, gate=None):
        self.pid, self.err, self.status, self.out, self.errout = pid, err, status, out, errout
        self.t_spawn, self.gate = t_spawn, gate

    def go(self):
        """Let init fork the program.  (If the launcher failed before the gate, its error is
        in the error pipe, which the supervise loop reads.)"""
        gate, self.gate = self.gate, None
        try:
            os.write(gate, b"g")
        except BrokenPipeError:
            pass
        finally:
            os.close(gate)

    def abandon(self):
        """End this launch before the program exists: init, at the gate, reads EOF and exits;
        the launcher is reaped and every pipe closed.  Nothing of it is reported."""
        os.close(self.gate)
        self.gate = None
        try:
            os.kill(self.pid, SIGTERM)      # (should init still be building: the usual way to end a run)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        for fd in (self.err, self.status, self.out, self.errout):
            os.close(fd)


def _pipe(mine, theirs):
    r, w = os.pipe()
    mine.append(r)
    theirs.append(w)
    return r, w


def spawn(plan_bytes, stdin_fd, workdir_sock=None, gate=False):
    """`workdir_sock`: a unix socket on which the launcher sends the kept working directory (WORKDIR_FD).
    `gate`: init builds the sandbox, then waits for Launched.go() before it forks the program (GATE_FD)."""
    path = launcher_path()
    plan = os.memfd_create("sandbox-plan", os.MFD_CLOEXEC)
    mine, theirs = [], [plan]
    try:
        os.write(plan, plan_bytes)
        err_r, err_w = _pipe(mine, theirs)
        st_r, st_w = _pipe(mine, theirs)
        out_r, out_w = _pipe(mine, theirs)
        eo_r, eo_w = _pipe(mine, theirs)
        gate_w = None
        if gate:
            gate_r, gate_w = os.pipe()
            mine.append(gate_w)
            theirs.append(gate_r)
        # target fd in the launcher <- our fd
        wiring = [(0, stdin_fd), (1, out_w), (2, eo_w), (PLAN_FD, plan), (ERR_FD, err_w), (STATUS_FD, st_w)]
        if workdir_sock is not None:
            wiring.append((WORKDIR_FD, workdir_sock))
        if gate:
            wiring.append((GATE_FD, gate_r))
        # Two passes through fds above every source, so that no dup2 can
        # clobber a source that is still to be moved, and no target keeps
        # close-on-exec (dup2 onto itself would).
        base = max(max(fd for _, fd in wiring), max(dst for dst, _ in wiring)) + 1
        actions = [(os.POSIX_SPAWN_DUP2, src, base + i) for i, (_, src) in enumerate(wiring)]
        actions += [(os.POSIX_SPAWN_DUP2, base + i, dst) for i, (dst, _) in enumerate(wiring)]
        actions += [(os.POSIX_SPAWN_CLOSE, base + i) for i in range(len(wiring))]
        t_spawn = time.monotonic()
        pid = os.posix_spawn(path, [LAUNCHER_NAME], {}, file_actions=actions,
                             setsigdef=(SIGPIPE, SIGXFSZ), setsigmask=())
    except BaseException:
        for fd in mine:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Launched(pid, err_r, st_r, out_r, eo_r, t_spawn, gate_w)


# ------------------------------------------------------------------ the ops
# One constructor per op of launcher.c's OPS table, its parameters the op's
# arguments in order; every argument travels as a string.  Who carries each
# out: the launcher up to `clone`, then init up to `fork`, then the program.

def _op(name, *args):
    return (name, *map(str, args))


def ppid(runner_pid):
    """Die with the runner (PR_SET_PDEATHSIG); stop at once if it is already gone."""
    return _op("ppid", runner_pid)


def cgroup(path):
    """The run's cgroup directory (RUN_CGROUP in a plan): init is cloned into it."""
    return _op("cgroup", path)


def outmap(mode, uid_map, gid_map):
    """Init's id maps, written by the launcher from outside once init exists (mode "write": a root
    caller; "newidmap": an unprivileged caller's subordinate ranges, through newuidmap/newgidmap)."""
    return _op("outmap", mode, uid_map, gid_map)


def clone(flags):
    """Clone init (pid 1) with these CLONE_* flags; the launcher then serves it and waits."""
    return _op("clone", flags)


def idmap(uid_in, uid_out, gid_in, gid_out):
    """Init maps itself: one uid and one gid, setgroups denied."""
    return _op("idmap", uid_in, uid_out, gid_in, gid_out)


def sysctl(path, value):
    """Write `value` to a /proc/sys file of the sandbox's namespaces."""
    return _op("sysctl", path, value)


def unshare(flags):
    return _op("unshare", flags)


def private():
    """Make / recursively private: no mount propagates back to the host."""
    return _op("private")


def hold(slot, path):
    """Open a bind source or image layer (O_PATH) into `slot`, before anything is mounted."""
    return _op("hold", slot, path)


def setids(uid, gid):
    """Init becomes these ids (a root caller's run, once the sources are held)."""
    return _op("setids", uid, gid)


def root(base, size):
    """The new root's tmpfs, mounted on `base` while it is built."""
    return _op("root", base, size)


def fusebin(path):
    """The fuse-overlayfs program an overlay op with backend "fuse" starts."""
    return _op("fusebin", path)


def overlay(backend, upper, work, *lowers):
    """The image's layers under a writable one, as the new root.  kernel: slots; fuse: host paths;
    upper/work "-" for directories on the root tmpfs."""
    return _op("overlay", backend, upper, work, *lowers)


def bind(slot, dst, ro):
    """Bind the source held in `slot` onto `dst` in the new root: nosuid, nodev, read-only if `ro`."""
    return _op("bind", slot, dst, 1 if ro else 0)


def symlink(target, dst):
    return _op("symlink", target, dst)


def copy(slot, dst):
    """Copy the file held in `slot` into a tmpfs of the sandbox at `dst` (writable, the program's)."""
    return _op("copy", slot, dst)


def tmpfs(path, size, mode, inodes):
    return _op("tmpfs", path, size, f"{mode:o}", inodes)


def proc(path):
    return _op("proc", path)


def dev(path, shm_size):
    return _op("dev", path, shm_size)


def rootro():
    """Remount the new root's tmpfs read-only."""
    return _op("rootro")


def pivot():
    """pivot_root into the new root and detach the host's tree (chroot where impossible: a D record)."""
    return _op("pivot")


def hostname(name):
    return _op("hostname", name)


def loopback():
    """Bring lo up in the new network namespace."""
    return _op("loopback")


def keyring():
    """Join a new, empty session keyring."""
    return _op("keyring")


def chdir(path):
    return _op("chdir", path)


def sample(ms):
    """Init samples the sandbox's processes every `ms` milliseconds."""
    return _op("sample", ms)


def keepdir(path):
    """Send the working directory (a tmpfs of the sandbox) to the runner on WORKDIR_FD."""
    return _op("keepdir", path)


def notify(spec, kills):
    """Init's answers to seccomp notifications: `spec` "*", "-" or the logged numbers, `kills` the
    exceptions (seccomp._kill_spec)."""
    return _op("notify", spec, kills)


def fork():
    """Init forks the program (pid 2) and stays pid 1; the ops after it run in the program."""
    return _op("fork")


def rlimit(resource, soft, hard):
    """setrlimit; -1 is unlimited."""
    return _op("rlimit", resource, soft, hard)


def rlimitcap(resource, cap):
    """Lower a limit to `cap`, never raise it."""
    return _op("rlimitcap", resource, cap)


def oomadj(value):
    return _op("oomadj", value)


def nnp():
    return _op("nnp")


def caps(keep=0):
    """Drop every capability but the mask `keep` (0: all, and lock the securebits)."""
    return _op("caps", f"{int(keep):x}")


def setsid():
    return _op("setsid")


def closefds():
    """Close every descriptor but stdio, ERR_FD and NOTIFY_FD (both close at exec)."""
    return _op("closefds")


def pdeathsig():
    """The program is killed when init dies."""
    return _op("pdeathsig")


def seccomp(bpf):
    """Load the filter (bytes of sock_filter) with a listener, handed to init on NOTIFY_FD."""
    return _op("seccomp", bpf.hex())


def exec_(argv, env):
    """execve argv with env ("K=V" strings), PATH searched inside: the last op."""
    return _op("exec", len(argv), *argv, *env)


# op name -> its constructor: every op launcher.c's OPS table knows, and no other
OPS = {f.__name__.rstrip("_"): f for f in (
    ppid, cgroup, outmap, clone, idmap, sysctl, unshare, private, hold, setids, root, fusebin, overlay, bind,
    symlink, copy, tmpfs, proc, dev, rootro, pivot, hostname, loopback, keyring, chdir, sample, keepdir, notify, fork,
    rlimit, rlimitcap, oomadj, nnp, caps, setsid, closefds, pdeathsig, seccomp, exec_)}
