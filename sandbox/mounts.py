"""Mounts: the sandbox's filesystem, built on a fresh tmpfs and entered with
pivot_root.

Order matters and is fixed here:
- the mount namespace is made recursively private first, so no mount we make
  can ever propagate back to the host (the classic mistake);
- bind sources are opened right after, before anything is mounted: the new
  root is built on a tmpfs mounted over the host's /tmp, which would otherwise
  hide sources that live under /tmp;
- /proc is mounted before pivot_root, while the host's /proc is still
  visible (the kernel refuses a new procfs in a user namespace otherwise);
- the root tmpfs is remounted read-only last: the program owns it and must not
  be able to create files in /.
"""
from . import hostfacts, launch
from .errors import ProfileError, UsageError
from .namespaces import CLONE_NEWNS
from .schema import DEFAULTS
from .step import Step

# Where the new root's tmpfs is mounted while it is built: any directory that exists; after
# pivot_root nothing of it is visible.  Sources are opened first, so hiding one does not matter
# to the kernel, but fuse-overlayfs re-resolves its layers by path: pick one that holds none.
ROOT_BASES = ("/tmp", "/mnt", "/media", "/srv", "/var/tmp")


def root_base(sources):
    for base in ROOT_BASES:
        if hostfacts.isdir(base) and not hostfacts.islink(base) and \
                not any(_under(p, base) for p in sources):
            return base
    return ROOT_BASES[0]

HINTS = {
    "EPERM": "the kernel refused a mount inside the user namespace (AppArmor's userns restriction, or a "
             "container's seccomp profile): see the fixes for user_namespace",
    "EACCES": "permission denied: the caller cannot read this bind source; check its permissions",
    "ENOENT": "a path does not exist: check the bind sources and destinations",
    "EROFS": "a mount point would have to be created on a host directory; create it on the host or "
             "choose a destination inside a tmpfs",
    "ELOOP": "a destination passes through a symlink of the new root; use the symlink's target instead",
    "ENOTDIR": "a bind destination collides with a file; choose another destination",
}


class Bind:
    __slots__ = ("src", "dst", "rw", "symlink", "origin", "copy")

    def __init__(self, src, dst, rw=False, symlink=None, origin="", copy=False):
        self.src, self.dst, self.rw, self.symlink, self.origin = src, dst, rw, symlink, origin
        self.copy = copy        # copied into a tmpfs instead (files_in of a kept working directory)


def _under(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def resolve_binds(profile, extra=(), script=None, copies=()):
    """Host-checked binds: rootfs binds first (symlinks there are recreated as
    symlinks: merged-/usr systems have /bin -> usr/bin), then profile and
    command-line binds, then the script.  Raises ProfileError/UsageError for
    sources that do not exist."""
    binds = []
    for i, b in enumerate(profile.get("rootfs", {}).get("binds", [])):
        where = f"{profile.origin('rootfs.binds')}: rootfs.binds[{i}]"
        if hostfacts.islink(b["src"]) and b["src"] == b["dst"]:
            binds.append(Bind(b["src"], b["dst"], symlink=hostfacts.readlink(b["src"]), origin=where))
            continue
        if _source_ok(b, where, ProfileError):
            binds.append(Bind(b["src"], b["dst"], b["rw"], origin=where))
    for i, b in enumerate(profile.get("binds", [])):
        where = f"{profile.origin('binds')}: binds[{i}]"
        if _source_ok(b, where, ProfileError):
            binds.append(Bind(b["src"], b["dst"], b["rw"], origin=where))
    for b in extra:
        if _source_ok(b, "--bind", UsageError):
            binds.append(Bind(b["src"], b["dst"], b["rw"], origin="--bind"))
    if script is not None:
        binds.append(Bind(script[0], script[1], False, origin="script"))
    binds += [Bind(src, dst, origin="files_in", copy=True) for src, dst in copies]
    return binds


def _source_ok(b, where, error):
    try:
        hostfacts.stat(b["src"])
        return True
    except PermissionError:
        raise error(f"bind source {b['src']} is not accessible to you (permission denied on the way to it)", where,
                    "bind a path you can read, or fix the permissions of its directories") from None
    except OSError:
        if b.get("optional"):
            return False
        raise error(f"bind source {b['src']} does not exist on this host", where,
                    "create it, fix the path, or mark the bind optional: true") from None


WORKDIR_TMPFS = {"size": DEFAULTS["tmpfs.PATH.size"], "mode": 0o755,     # files_out's, where the profile has none
                 "inodes": DEFAULTS["tmpfs.PATH.inodes"]}


def steps(profile, binds, img=None, workdir=None):
    """The mount steps; `img` (rootfs.ImageRoot) makes the root an overlay of an image;
    `workdir` (files_out) must be a tmpfs: the profile's there, or one of WORKDIR_TMPFS."""
    from . import rootfs
    tmpfs = profile.get("tmpfs", {})
    if workdir is not None and workdir not in tmpfs:
        if workdir == "/":
            raise UsageError("files_out needs a working directory other than /", "files_out",
                             "give cwd= a directory such as /box (it becomes a tmpfs of the run)")
        tmpfs = dict(tmpfs, **{workdir: WORKDIR_TMPFS})
    tmpfs_paths = sorted(tmpfs, key=lambda p: p.count("/"))
    for b in binds:
        for special in ("/proc", "/dev"):
            if _under(b.dst, special):
                raise ProfileError(f"cannot bind onto {b.dst}: {special} is built by the sandbox", b.origin,
                                   "choose a destination outside /proc and /dev")
    # Binds that land inside a tmpfs must wait until that tmpfs is mounted (copies are always there).
    inner = [b for b in binds if b.copy or any(_under(b.dst, t) for t in tmpfs_paths)]
    outer = [b for b in binds if b not in inner]
    held = [b for b in binds if b.symlink is None]
    slot = {id(b): i for i, b in enumerate(held)}

    def bind_ops(group):
        ops = []
        for b in sorted(group, key=lambda b: b.dst.count("/")):
            if b.symlink is not None:
                ops.append(launch.symlink(b.symlink, b.dst))
            elif b.copy:
                ops.append(launch.copy(slot[id(b)], b.dst))
            else:
                ops.append(launch.bind(slot[id(b)], b.dst, ro=not b.rw))
        return ops

    def bind_params(group):
        return {b.dst: (f"-> {b.symlink} (symlink, as on the host)" if b.symlink is not None
                        else f"copy of {b.src} (writable, in the tmpfs)" if b.copy
                        else f"{b.src} ({'rw' if b.rw else 'ro'},nosuid,nodev)") for b in group}

    root_size = profile.get("rootfs", {}).get("size", DEFAULTS["rootfs.size"])
    layers = rootfs.sources(img, len(held)) if img else []
    if len(held) + len(layers) > launch.MAX_SLOTS:
        raise ProfileError(f"{len(held)} bind sources" + (f" and {len(layers)} image layers" if layers else "")
                           + f" are more than the {launch.MAX_SLOTS} the sandbox can hold open", "binds",
                           "bind a common parent directory instead of many paths")
    # bind sources are opened before the build mount can hide them; only fuse-overlayfs
    # re-resolves paths (the image's layers), so only those need resolving here
    base = root_base([b.src for b in held] + [hostfacts.realpath(p) for _, p in layers])
    if img:
        root = rootfs.root_step(img, layers, base)
    else:
        root = Step("root_tmpfs", "the new root: an empty tmpfs (it only holds mount points)",
                    {"size": root_size, "mounted_at": base + " (hidden once pivot_root is done)"},
                    [launch.root(base, root_size)], HINTS)
    return [
        Step("mount_namespace",
             "new mount namespace, / made recursively private; bind sources (and image layers) opened before "
             "anything is mounted",
             {"propagation": "rprivate", "sources": [b.src for b in held] + [p for _, p in layers]},
             [launch.unshare(CLONE_NEWNS), launch.private()] + [launch.hold(slot[id(b)], b.src) for b in held]
             + [launch.hold(s, p) for s, p in layers],
             HINTS),
        root,
        Step("binds", "host paths, read-only unless marked rw; always nosuid,nodev, recursively",
             bind_params(outer), bind_ops(outer), HINTS),
        Step("tmpfs", "private writable tmpfs mounts (nosuid,nodev), size- and inode-capped",
             {p: f"size={tmpfs[p]['size']},mode={tmpfs[p]['mode']:o},inodes={tmpfs[p]['inodes']}" for p in tmpfs_paths},
             [launch.tmpfs(p, tmpfs[p]["size"], tmpfs[p]["mode"], tmpfs[p]["inodes"]) for p in tmpfs_paths],
             HINTS),
        Step("inner_binds", "binds that land inside a tmpfs (the script among them), after it exists; files_in "
                            "of a kept working directory are copied into it",
             bind_params(inner), bind_ops(inner), HINTS),
        Step("proc", "procfs of the sandbox's pid namespace; sys, sysrq-trigger, irq, bus read-only; keys and "
                     "key-users covered with an empty file",
             {"path": "/proc"}, [launch.proc("/proc")], HINTS),
        Step("dev", "minimal /dev: null zero full random urandom tty, private devpts, /dev/shm",
             {"shm_size": profile.get("shm_size", DEFAULTS["shm_size"])},
             [launch.dev("/dev", profile.get("shm_size", DEFAULTS["shm_size"]))],
             HINTS),
        Step("pivot_root", "root made read-only (an image root stays writable: its writes go to the throw-away "
                           "layer), then pivot_root into it and detach the host's tree (chroot only where "
                           "pivot_root is impossible, reported as degraded)",
             {"root": "writable layer over the image" if img else "read-only"},
             ([] if img else [launch.rootro()]) + [launch.pivot()], HINTS),
    ]
