"""Running idtree.py where the caller's subordinate ids are mapped.

An unprivileged caller cannot chown to its subordinate ids, nor read or remove what they own
(a layer's directory of _apt, mode 0700), on the host: only a process of a user namespace
whose map holds them can, as its uid 0.  This runs our own small program (idtree.py, with the
host's Python: -I -S, standard library only) as uid 0 of a sandbox with the subordinate
mapping of `user: {map: subordinate}`: the launcher writes the maps with newuidmap/newgidmap,
the program keeps the file-ownership capabilities only, under no_new_privs, with no network,
and its mount namespace holds the host's system directories read-only plus exactly the
directories it works on.  So even a bug in idtree.py's walk over an untrusted layer could not
reach the caller's other files.

posix_spawn of the launcher, as every run: the caller may be threaded.
"""
import os
import sys

from . import launch, privileges, userns
from .errors import SetupError
from .namespaces import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS

SYSTEM = ("/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache")
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "idtree.py")
INSIDE = "/sandbox-idtree.py"


class _Want:
    """The profile part userns reads: subordinate ids, uid 0 inside."""

    def __init__(self, where):
        self.where = where

    def get(self, key, default=None):
        return {"user": {"map": "subordinate", "uid": 0, "gid": 0}}.get(key, default)

    def origin(self, key):
        return self.where


def maps(where):
    """(uid map, gid map) of the caller's subordinate ids (userns.subordinate_maps' errors)."""
    return tuple(userns.subordinate_maps(_Want(where)))


def top_id(id_map):
    """The highest inside id a map "0 OUT 1 1 START COUNT" covers."""
    nums = [int(n) for n in id_map.split()]
    return max(nums[i] + nums[i + 2] - 1 for i in range(0, len(nums), 3))


def _python():
    """The host's interpreter and the directory it needs bound (when not under /usr)."""
    base = os.path.realpath(sys.base_exec_prefix)
    exe = os.path.join(base, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    if not os.access(exe, os.X_OK):
        exe = os.path.realpath(sys.executable)
    return exe, ([] if base == "/usr" or base.startswith("/usr/") else [base])


def run(args, binds, where):
    """idtree.py ARGS with `binds` [(host path, inside path, rw)]; its stdout (bytes).
    A SetupError names `where` and what idtree.py or the launcher said."""
    from .stdio import Sink
    from .supervise import supervise
    exe, extra = _python()
    want = _Want(where)
    sources = [(p, p, False) for p in SYSTEM if os.path.exists(p) and not os.path.islink(p)]
    sources += [(p, p, False) for p in extra] + [(PROGRAM, INSIDE, False)] + list(binds)
    ops = userns.step(want, os.getpid()).ops
    ops += [launch.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), launch.private()]
    ops += [launch.hold(i, src) for i, (src, _, _) in enumerate(sources)]
    ops += [launch.setids(0, 0), launch.root("/tmp" if os.path.isdir("/tmp") else "/mnt", 1 << 20)]
    ops += [launch.symlink(os.readlink(p), p) for p in SYSTEM if os.path.islink(p)]
    ops += [launch.bind(i, dst, ro=not rw) for i, (_, dst, rw) in enumerate(sources)]
    ops += [launch.dev("/dev", 1 << 20), launch.pivot(), launch.chdir("/"), launch.fork()]
    ops += [o for s in privileges.steps(userns.SUBORDINATE_CAPS) for o in s.ops]
    ops += [launch.exec_([exe, "-I", "-S", "-B", INSIDE, *args], ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"])]
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        launched = launch.spawn(launch.encode(ops), null)
        limits = {"cpu_time": None, "memory": None, "output": None, "wall_time": None}
        out, err = Sink(capture=True), Sink(capture=True)
        o = supervise(launched, limits, out, err)
    finally:
        os.close(null)
    if o.setup_error:
        op, errno_, text = o.setup_error
        raise SetupError(f"the subordinate-id helper could not start: {text}: {os.strerror(errno_)}", where,
                         "check `sandbox doctor` (newuidmap and your /etc/subuid, /etc/subgid ranges)")
    if not (o.wstatus is not None and os.WIFEXITED(o.wstatus) and os.WEXITSTATUS(o.wstatus) == 0):
        said = bytes(err.captured).decode(errors="replace").strip()[-2000:]
        raise SetupError(f"idtree.py {args[0]} failed in the subordinate-id namespace: {said or o.wstatus}", where,
                         "the image is malformed, or the store's filesystem refused it (full?)")
    return bytes(out.captured)
