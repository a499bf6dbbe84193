"""Starting the launcher: the plan goes in on a memfd, setup errors and status
come back on two pipes, the program's output on two more.

posix_spawn, not fork: the caller may be a threaded program, and nothing of
Python runs in the child.
"""
import os

from .errors import SetupError

LAUNCHER_NAME = "sandbox-launch"
_HERE = os.path.dirname(os.path.abspath(__file__))
SIGPIPE, SIGXFSZ = 13, 25


def launcher_path():
    for candidate in (os.environ.get("SANDBOX_LAUNCHER"),
                      os.path.join(_HERE, "libexec", LAUNCHER_NAME)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f"the launcher {os.path.join(_HERE, 'libexec', LAUNCHER_NAME)} is missing",
                     "installation", "reinstall the package (pip install .), which compiles it; it needs a C "
                     "compiler: apt install gcc libc6-dev")


class Launched:
    """The running launcher and the runner's ends of its pipes."""
    __slots__ = ("pid", "err", "status", "out", "errout")

    def __init__(self, pid, err, status, out, errout):
        self.pid, self.err, self.status, self.out, self.errout = pid, err, status, out, errout


def _pipe(mine, theirs):
    r, w = os.pipe()
    mine.append(r)
    theirs.append(w)
    return r, w


def spawn(plan_bytes, stdin_fd, workdir_sock=None):
    """`workdir_sock`: a unix socket on which the launcher sends the kept working directory (fd 7)."""
    path = launcher_path()
    plan = os.memfd_create("sandbox-plan", os.MFD_CLOEXEC)
    mine, theirs = [], [plan]
    try:
        os.write(plan, plan_bytes)
        err_r, err_w = _pipe(mine, theirs)
        st_r, st_w = _pipe(mine, theirs)
        out_r, out_w = _pipe(mine, theirs)
        eo_r, eo_w = _pipe(mine, theirs)
        # target fd in the launcher <- our fd
        wiring = [(0, stdin_fd), (1, out_w), (2, eo_w), (3, plan), (4, err_w), (5, st_w)]
        if workdir_sock is not None:
            wiring.append((7, workdir_sock))
        # Two passes through fds above every source, so that no dup2 can
        # clobber a source that is still to be moved, and no target keeps
        # close-on-exec (dup2 onto itself would).
        base = max(max(fd for _, fd in wiring), max(dst for dst, _ in wiring)) + 1
        actions = [(os.POSIX_SPAWN_DUP2, src, base + i) for i, (_, src) in enumerate(wiring)]
        actions += [(os.POSIX_SPAWN_DUP2, base + i, dst) for i, (dst, _) in enumerate(wiring)]
        actions += [(os.POSIX_SPAWN_CLOSE, base + i) for i in range(len(wiring))]
        pid = os.posix_spawn(path, [LAUNCHER_NAME], {}, file_actions=actions,
                             setsigdef=(SIGPIPE, SIGXFSZ), setsigmask=())
    except BaseException:
        for fd in mine:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Launched(pid, err_r, st_r, out_r, eo_r)
