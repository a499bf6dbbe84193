"""Root filesystem from an image: its layers, read-only, united by overlayfs
under a writable layer that is thrown away after the run (or kept, with
--keep-changes, and listed by `sandbox diff`).

With `user: {map: subordinate}` the lower layers are the copies that keep the tar's owners
(idlayers.py), made by the plan's first host step when missing; the kept changes of such a run
hold files of subordinate ids, so `sandbox diff` reads them, and `sandbox rm-changes` removes
them, inside that mapping (idhelper.py).  A --keep-changes directory that holds the changes of a
run on the same image, with the same ids, is continued by the next run.

Backends: kernel overlayfs mounted inside the sandbox's user namespace
(Linux >= 5.11, `userxattr`), else fuse-overlayfs (needs /dev/fuse usable by
the user).  Which one works here is probed once per kernel and cached; a
profile may insist on one with `rootfs.overlay: kernel|fuse`.
"""
import os

from . import configfiles, launch, userns
from .errors import ProfileError, SetupError, UsageError
from .schema import DEFAULTS
from .step import Step

BACKENDS = ("auto", "kernel", "fuse")
HOW_TO_GET_ONE = ("kernel overlayfs needs Linux >= 5.11 with unprivileged user namespaces; fuse-overlayfs needs "
                  "the fuse-overlayfs package and /dev/fuse usable by you (mode 0666, as distributions ship it)")


class ImageRoot:
    __slots__ = ("store", "image", "size", "backend", "keep", "ids", "continued")

    def __init__(self, store, image, size, backend, keep=None, ids=None):
        self.store, self.image, self.size, self.backend, self.keep = store, image, size, backend, keep
        self.ids = ids              # (uid map, gid map) of subordinate ids: the layers keep their owners
        self.continued = False      # keep holds an earlier run's changes of this image, which go on


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
    ids = None
    if userns.subordinate(profile):
        ids = tuple(userns.subordinate_maps(profile))
    root = ImageRoot(store, img, rootfs.get("writable_size") or DEFAULTS["rootfs.writable_size"], backend,
                     keep_changes, ids)
    if keep_changes:
        root.continued = _check_keep(keep_changes, root)
    return root


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
    from .stdio import Sink
    from .supervise import supervise
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

def _ids_tag(img):
    """Who the kept files belong to, in changes.json: a run continues them only with the same ids."""
    from .hostids import caller_is_root
    if img.ids:
        return "subordinate " + "; ".join(img.ids)
    return "host id of a root caller's run" if caller_is_root() else "caller"


def _check_keep(keep, img=None):
    """--keep-changes DIR must be a new or empty directory, or hold the changes of an earlier
    run on the same image with the same ids (they go on: True).  Checked when the plan is built."""
    try:
        if not (os.path.lexists(keep) and os.listdir(keep)):
            return False
        if img is not None and _continues(keep, img):
            return True
        raise UsageError(f"{keep} is not empty" + (f" (nor the kept changes of a run on {img.image['name']} with "
                                                   "the same ids)" if img else ""), "--keep-changes",
                         "give a new or empty directory")
    except OSError as e:                               # a file, or a directory we cannot read
        raise UsageError(f"{keep} cannot hold the kept changes: {e.strerror}", "--keep-changes",
                         "give a new or empty directory you can write") from None


def _continues(keep, img):
    import json
    try:
        with open(os.path.join(keep, "changes.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    tag = _ids_tag(img)
    return (isinstance(meta, dict) and meta.get("image") == img.image["name"] and meta.get("store") == img.store.root
            and meta.get("layers") == img.image["layers"] and meta.get("ids") == tag
            and not tag.startswith("host id") and os.path.isdir(os.path.join(keep, "upper")))


def prepare_keep(keep, img, owner=None):
    """--keep-changes DIR: an empty or new directory that will hold the upper layer (or the
    kept changes of an earlier run, continued); `owner`: (uid, gid) that writes it, when not
    the caller (a root caller's run id)."""
    import json
    if _check_keep(keep, img):
        return
    try:
        for d in ("upper", "work"):
            os.makedirs(os.path.join(keep, d), mode=0o755, exist_ok=True)
            if owner:
                os.chown(os.path.join(keep, d), *owner)
        with open(os.path.join(keep, "changes.json"), "w") as f:
            json.dump({"image": img.image["name"], "layers": img.image["layers"], "store": img.store.root,
                       "ids": _ids_tag(img)}, f, indent=2)
    except OSError as e:
        raise UsageError(f"cannot create {keep}: {e.strerror}", "--keep-changes",
                         "give a new or empty directory in a place you can write") from None


def sources(img, first_slot):
    """(slot, host path) pairs the mount namespace step opens: lower layers top first, then the kept upper/work."""
    if img.ids:
        from . import idlayers
        paths = [idlayers.lower(img.store, d, img.ids) for d in reversed(img.image["layers"])]
    else:
        paths = [img.store.layer_path(d) for d in reversed(img.image["layers"])]
    if img.keep:
        paths += [os.path.join(img.keep, "upper"), os.path.join(img.keep, "work")]
    return list(enumerate(paths, start=first_slot))


def owned_step(img):
    """The host step that makes the layers' copies with the tar's owners a subordinate-id run
    needs and the store lacks (once per layer and mapping)."""
    from . import idlayers
    from .hoststep import HostStep
    layers = img.image["layers"]
    copies = [d for d in layers if idlayers.needs_copy(img.store, d)]
    return HostStep("owned_layers", "the image's layers with the owners their tar gives (a copy per layer and "
                                    "mapping, made once by a helper in the subordinate ids' namespace, kept in "
                                    "the store)",
                    {"layers": f"{len(copies)} of {len(layers)} need a copy (the others give everything to 0:0, "
                               "the caller, or were imported before owners were recorded)",
                     "mapping": idlayers.key(img.ids)},
                    lambda run: idlayers.ensure(img.store, layers, img.ids))


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

def _kept(keep, where="sandbox diff"):
    """The image a --keep-changes directory was made from, from its changes.json:
    (store, {name, layers}, whose ids own the files); a UsageError for anything else."""
    import json
    from . import image as image_mod
    path = os.path.join(keep, "changes.json")
    fix = "give the directory passed to --keep-changes (its changes.json is written by the run)"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{keep or '(empty)'} holds no kept changes (changes.json is missing)", where,
                         fix) from None
    except (OSError, ValueError) as e:          # a file for a directory, unreadable, not JSON, not UTF-8
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}", where, fix) from None
    layers = meta.get("layers") if isinstance(meta, dict) else None
    if not (isinstance(meta, dict) and isinstance(meta.get("image"), str) and isinstance(meta.get("store"), str)
            and isinstance(layers, list)
            and all(isinstance(d, str) and len(d) == 64 and all(c in "0123456789abcdef" for c in d) for d in layers)):
        raise UsageError(f"{path} is malformed: it needs image (a name), store (a directory) and layers (sha256 "
                         "digests)", where, fix)
    store = image_mod.Store(meta["store"])
    if not os.path.isdir(store.layers):
        raise UsageError(f"the image store {meta['store']} named in {path} has no layers directory", where,
                         "run it where the run's image store is (SANDBOX_STORE)")
    ids = meta.get("ids", "caller")         # (written since kept changes may belong to subordinate ids)
    return store, {"name": meta["image"], "layers": layers}, ids if isinstance(ids, str) else "caller"


def diff(keep):
    """What a run changed, from a --keep-changes directory: [(A|C|D, path)]."""
    from . import idtree
    from . import image as image_mod
    store, img, ids = _kept(keep)
    upper = os.path.join(keep, "upper")
    records = []
    try:
        if ids.startswith("subordinate"):
            records = _walk_inside(upper)
        else:
            idtree.walk(upper, records.append)
    except OSError as e:
        raise UsageError(f"cannot read {e.filename or upper}: {e.strerror}", "sandbox diff",
                         "run sandbox diff as the user who ran the sandbox") from None
    out = []
    for kind, rel in records:
        if kind == "W":
            out.append(("D", rel))                           # a whiteout, of either backend
        elif kind == "E":
            out.append(("C" if image_mod.lookup(store, img, rel) else "A", rel))
        elif image_mod.lookup(store, img, rel) is None:
            out.append(("A", rel + "/"))
        elif kind == "O":
            out.append(("C", rel + "/ (replaced: what the image had in it is gone)"))
    return sorted(out, key=lambda c: c[1])


def _walk_inside(upper):
    """idtree.walk where the subordinate ids are mapped: their directories may be closed to the caller."""
    from . import idhelper
    data = idhelper.run(["walk", "/upper"], [(upper, "/upper", False)], "sandbox diff")
    return [(rec[:1].decode(), os.fsdecode(rec[1:])) for rec in data.split(b"\0") if rec]


def remove_kept(keep):
    """`sandbox rm-changes DIR`: remove a --keep-changes directory, what subordinate ids own in it too."""
    from . import image as image_mod
    _, _, ids = _kept(keep, "sandbox rm-changes")
    if ids.startswith("subordinate"):
        from . import idhelper
        idhelper.run(["rm", "/keep/upper", "/keep/work"], [(keep, "/keep", True)], "sandbox rm-changes")
    image_mod._rmtree(keep)
