"""Root filesystem from an image: its layers, read-only, united by overlayfs
under a writable layer that is thrown away after the run (or kept, with
--keep-changes, and listed by `sandbox diff`).

Backends: kernel overlayfs mounted inside the sandbox's user namespace
(Linux >= 5.11, `userxattr`), else fuse-overlayfs (needs /dev/fuse usable by
the user).  Which one works here is probed once per kernel and cached; a
profile may insist on one with `rootfs.overlay: kernel|fuse`.
"""
import os
import stat

from . import configfiles, launch
from .errors import ProfileError, SetupError, UsageError
from .schema import DEFAULTS
from .step import Step

BACKENDS = ("auto", "kernel", "fuse")
FUSE_OPAQUE_MARKERS = (".wh..wh..opq", ".wh..opq")
HOW_TO_GET_ONE = ("kernel overlayfs needs Linux >= 5.11 with unprivileged user namespaces; fuse-overlayfs needs "
                  "the fuse-overlayfs package and /dev/fuse usable by you (mode 0666, as distributions ship it)")


class ImageRoot:
    __slots__ = ("store", "image", "size", "backend", "keep")

    def __init__(self, store, image, size, backend, keep=None):
        self.store, self.image, self.size, self.backend, self.keep = store, image, size, backend, keep


def resolve(profile, keep_changes=None):
    """The profile's image root, or None when the root is made of host binds."""
    rootfs = profile.get("rootfs", {})
    name = rootfs.get("image")
    if name is None:
        if keep_changes:
            raise UsageError("--keep-changes needs an image root", "--keep-changes",
                             "use a profile whose rootfs is an image (rootfs: {image: NAME})")
        return None
    from . import image as image_mod      # tarfile, gzip, hashlib: only for runs that use an image
    where = f"{profile.origin('rootfs.image')}: rootfs.image"
    if rootfs.get("binds"):
        raise ProfileError("rootfs.image and rootfs.binds cannot both be set (extends may have brought the binds)",
                           where, "set binds: [] under rootfs, or extend a profile without rootfs binds")
    store = image_mod.Store()
    img = store.get(name, where)
    backend = choose(rootfs.get("overlay", DEFAULTS["rootfs.overlay"]), where)
    if keep_changes:
        _check_keep(keep_changes)
    return ImageRoot(store, img, rootfs.get("writable_size") or DEFAULTS["rootfs.writable_size"], backend, keep_changes)


# ------------------------------------------------------------------ backends

def _probe_file():
    return configfiles.cache_path(f"overlay-probe-{os.uname().release}")


def kernel_overlay_works():
    """Can kernel overlayfs be mounted in a user namespace here?  Tried once
    (a sandbox whose root is an overlay of one empty layer, running a program
    that does not exist: failing at exec means the overlay step worked) and
    remembered per kernel release."""
    path = _probe_file()
    try:
        with open(path) as f:
            return f.read().strip() == "kernel overlayfs works"
    except OSError:
        pass
    import shutil
    from . import userns
    from .namespaces import CLONE_NEWNS
    from .supervise import Sink, supervise
    empty = os.path.join(os.path.dirname(path), f"overlay-probe-{os.getpid()}")
    os.makedirs(empty, exist_ok=True)
    ops = userns.step({}, os.getpid()).ops + [
        launch.unshare(CLONE_NEWNS), launch.private(), launch.hold(0, empty), launch.root("/tmp", 1 << 20),
        launch.overlay("kernel", "-", "-", 0), launch.fork(), launch.exec_(["/nonexistent-sandbox-probe"], [])]
    at_overlay = len(ops) - 3
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        launched = launch.spawn(launch.encode(ops), null)
        limits = {"cpu_time": None, "memory": None, "output": None, "wall_time": 10}
        o = supervise(launched, limits, Sink(capture=True), Sink(capture=True))
        works = bool(o.setup_error) and o.setup_error[0] > at_overlay     # it got past the overlay op
    finally:
        os.close(null)
        shutil.rmtree(empty, ignore_errors=True)
    configfiles.write_cache(path, b"kernel overlayfs works\n" if works else b"kernel overlayfs fails\n")
    return works


def _fuse_bin():
    import shutil                                 # (fnmatch, re: not on the path of kernel-overlay runs)
    return shutil.which("fuse-overlayfs")


def fuse_works():
    return _fuse_bin() is not None and os.access("/dev/fuse", os.R_OK | os.W_OK)


def choose(wanted, where):
    if wanted not in BACKENDS:
        raise ProfileError(f"{wanted!r} is not an overlay backend", where.replace("image", "overlay"),
                           "write auto, kernel or fuse")
    if wanted in ("auto", "kernel") and kernel_overlay_works():
        return "kernel"
    if wanted in ("auto", "fuse") and fuse_works():
        return "fuse"
    if wanted == "kernel":
        raise SetupError("kernel overlayfs cannot be mounted in a user namespace on this host", where, HOW_TO_GET_ONE)
    if wanted == "fuse":
        raise SetupError("fuse-overlayfs cannot be used: "
                         + ("it is not installed" if not _fuse_bin() else
                            "/dev/fuse is not readable and writable by you"), where, HOW_TO_GET_ONE)
    raise SetupError("neither kernel overlayfs nor fuse-overlayfs works here", where, HOW_TO_GET_ONE)


# ------------------------------------------------------------------ the plan

def _check_keep(keep):
    """--keep-changes DIR must be a new or empty directory (checked when the plan is built)."""
    try:
        if os.path.lexists(keep) and os.listdir(keep):
            raise UsageError(f"{keep} is not empty", "--keep-changes", "give a new or empty directory")
    except OSError as e:                               # a file, or a directory we cannot read
        raise UsageError(f"{keep} cannot hold the kept changes: {e.strerror}", "--keep-changes",
                         "give a new or empty directory you can write") from None


def prepare_keep(keep, img, owner=None):
    """--keep-changes DIR: an empty or new directory that will hold the upper layer;
    `owner`: (uid, gid) that writes it, when not the caller (a root caller's run id)."""
    import json
    _check_keep(keep)
    try:
        for d in ("upper", "work"):
            os.makedirs(os.path.join(keep, d), mode=0o755, exist_ok=True)
            if owner:
                os.chown(os.path.join(keep, d), *owner)
        with open(os.path.join(keep, "changes.json"), "w") as f:
            json.dump({"image": img.image["name"], "layers": img.image["layers"], "store": img.store.root}, f,
                      indent=2)
    except OSError as e:
        raise UsageError(f"cannot create {keep}: {e.strerror}", "--keep-changes",
                         "give a new or empty directory in a place you can write") from None


def sources(img, first_slot):
    """(slot, host path) pairs the mount namespace step opens: lower layers top first, then the kept upper/work."""
    paths = [img.store.layer_path(d) for d in reversed(img.image["layers"])]
    if img.keep:
        paths += [os.path.join(img.keep, "upper"), os.path.join(img.keep, "work")]
    return list(enumerate(paths, start=first_slot))


def root_step(img, held, base):
    """The root step for an image: a tmpfs for the writable layer, the overlay on top of it."""
    n = len(img.image["layers"])
    if img.backend == "fuse":
        # fuse-overlayfs resolves its directories by path; option syntax reserves ',' and ':'
        paths = [p for _, p in held]
        for p in paths:
            if "," in p or ":" in p:
                raise SetupError(f"{p} contains ',' or ':', which fuse-overlayfs options cannot carry", "rootfs",
                                 "move the image store (SANDBOX_STORE) or the --keep-changes directory")
        lowers = paths[:n]
        upper, work = (paths[-2], paths[-1]) if img.keep else ("-", "-")
    else:
        lowers = [s for s, _ in held[:n]]
        upper, work = (str(held[-2][0]), str(held[-1][0])) if img.keep else ("-", "-")
    backend = {"kernel": "kernel overlayfs in the sandbox's user namespace (userxattr)",
               "fuse": "fuse-overlayfs"}[img.backend]
    return Step("root_overlay", "the new root: the image's layers (read-only) under a writable layer, by overlayfs",
                {"image": img.image["name"], "layers": len(lowers), "backend": backend,
                 "writable layer": f"kept in {img.keep}" if img.keep else f"tmpfs of {img.size} bytes, discarded"},
                ([launch.fusebin(_fuse_bin())] if img.backend == "fuse" else [])
                + [launch.root(base, img.size), launch.overlay(img.backend, upper, work, *lowers)],
                {"EINVAL": "the kernel refused the overlay (too many layers, or a kernel before 5.11): try "
                           "rootfs.overlay: fuse",
                 "EPERM": "overlay mounts are not allowed in user namespaces here: " + HOW_TO_GET_ONE,
                 "ENODEV": "fuse-overlayfs could not mount: " + HOW_TO_GET_ONE})


def report(img):
    return {"image": img.image["name"], "layers": len(img.image["layers"]),
            "backend": "kernel overlayfs" if img.backend == "kernel" else "fuse-overlayfs",
            "changes_kept_in": img.keep}


# ------------------------------------------------------------------ diff

def _kept(keep):
    """The image a --keep-changes directory was made from, from its changes.json:
    (store, {name, layers}); a UsageError for anything else."""
    import json
    from . import image as image_mod
    path = os.path.join(keep, "changes.json")
    fix = "give the directory passed to --keep-changes (its changes.json is written by the run)"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{keep or '(empty)'} holds no kept changes (changes.json is missing)", "sandbox diff",
                         fix) from None
    except (OSError, ValueError) as e:          # a file for a directory, unreadable, not JSON, not UTF-8
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}", "sandbox diff", fix) from None
    layers = meta.get("layers") if isinstance(meta, dict) else None
    if not (isinstance(meta, dict) and isinstance(meta.get("image"), str) and isinstance(meta.get("store"), str)
            and isinstance(layers, list)
            and all(isinstance(d, str) and len(d) == 64 and all(c in "0123456789abcdef" for c in d) for d in layers)):
        raise UsageError(f"{path} is malformed: it needs image (a name), store (a directory) and layers (sha256 "
                         "digests)", "sandbox diff", fix)
    store = image_mod.Store(meta["store"])
    if not os.path.isdir(store.layers):
        raise UsageError(f"the image store {meta['store']} named in {path} has no layers directory", "sandbox diff",
                         "run sandbox diff where the run's image store is (SANDBOX_STORE)")
    return store, {"name": meta["image"], "layers": layers}


def diff(keep):
    """What a run changed, from a --keep-changes directory: [(A|C|D, path)]."""
    from . import image as image_mod
    store, img = _kept(keep)
    upper = os.path.join(keep, "upper")
    out = []
    for root, dirs, files in os.walk(upper):
        rel_root = "" if root == upper else "/" + os.path.relpath(root, upper)   # "/.config" keeps its dot
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full, rel = os.path.join(root, name), f"{rel_root}/{name}"
            st = os.lstat(full)
            if name in FUSE_OPAQUE_MARKERS:
                continue                                   # fuse-overlayfs marks opaque directories with files
            if name.startswith(".wh."):
                out.append(("D", f"{rel_root}/{name[4:]}"))   # fuse-overlayfs's whiteout form
            elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("D", rel))                        # kernel overlayfs's whiteout form
            else:
                out.append(("C" if image_mod.lookup(store, img, rel) else "A", rel))
        for name in sorted(d for d in dirs if not os.path.islink(os.path.join(root, d))):
            rel, full = f"{rel_root}/{name}", os.path.join(root, name)
            if image_mod.lookup(store, img, rel) is None:
                out.append(("A", rel + "/"))
            elif image_mod._opaque(full) or any(os.path.lexists(os.path.join(full, m)) for m in FUSE_OPAQUE_MARKERS):
                out.append(("C", rel + "/ (replaced: what the image had in it is gone)"))
    return sorted(out, key=lambda c: c[1])
