"""The image store: images imported from `docker save` tarballs, OCI image
layouts (directory or tar) or plain root filesystem tars, as unpacked layers
shared between images.

    $SANDBOX_STORE (default $XDG_DATA_HOME/sandbox, i.e. ~/.local/share/sandbox)
      layers/<diff_id>/        one unpacked layer, named by the sha256 of its uncompressed tar
      layers/<diff_id>.json    its size and what the import did to it
      layers/<diff_id>.ids-*/  copies with the tar's owners, one per subordinate mapping (idlayers.py)
      owners/<diff_id>         the tar's owners of the layer's entries not 0:0 (layers.py)
      images/<name>.json       layers (bottom first), config (Env, Cmd, WorkingDir, User), source

Image names are identifiers, never paths (check_name, the one place a name
is checked): letters, digits, '.', '_' and '-', starting with a letter or
digit, at most 128 characters.

What an archive holds, and the checks of its JSON and members, is archive.py;
unpacking one layer safely is layers.py.  Every blob is verified against its
digest before anything is kept: the config, the manifest, each compressed
layer blob and each uncompressed layer (against the config's
rootfs.diff_ids).  A layer already in the store is not unpacked again, but
its digest is still checked.  A refused import leaves nothing in the store:
layers are unpacked under tmp/ and moved into layers/ only once the whole
image has been verified.
"""
import marshal
import os
import stat

from .configfiles import write_atomic, write_cache
from .errors import SandboxError, shorten, did_you_mean

# Importing, verifying and unpacking need tarfile, gzip, hashlib, json: they are
# imported where they are used, so that a run on an image imports none of them
# (the image record is also kept as marshal data for that reason).
ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_CHARS = ALNUM | frozenset("._-")
MAX_NAME = 128
NAME_FIX = (f"image names are identifiers, not paths: letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters (e.g. bookworm-python3)")


class ImageError(SandboxError):
    pass


def store_dir():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("SANDBOX_STORE") or os.path.join(base, "sandbox")


def check_name(name, where):
    """The one check of an image name, wherever one is taken (import, build, rm,
    inspect, a profile's rootfs.image): names become file names in the store, so
    a name that could be a path ('/', '..', a leading '.') is refused."""
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and name[0] in ALNUM and set(name) <= NAME_CHARS):
        raise ImageError(f"{shorten(name)} is not a valid image name", where, NAME_FIX)
    return name


def _rmtree(path):
    """Remove a tree even where the image made directories read-only."""
    import shutil
    def onerror(func, p, exc):
        parent = os.path.dirname(p)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, os.stat(p).st_mode | stat.S_IRWXU)
        func(p)
    if os.path.lexists(path):
        for root, dirs, _ in os.walk(path):
            for d in dirs:
                full = os.path.join(root, d)
                if not os.path.islink(full):
                    os.chmod(full, os.lstat(full).st_mode | stat.S_IRWXU)
        shutil.rmtree(path, onerror=onerror)


class Store:
    def __init__(self, root=None):
        self.root = root or store_dir()
        self.layers = os.path.join(self.root, "layers")
        self.images = os.path.join(self.root, "images")
        self.tmp = os.path.join(self.root, "tmp")
        self.owners = os.path.join(self.root, "owners")

    def _dirs(self):
        for d in (self.layers, self.images, self.tmp, self.owners):
            os.makedirs(d, mode=0o755, exist_ok=True)

    def layer_path(self, diff_id):
        return os.path.join(self.layers, diff_id)

    def owners_path(self, diff_id):
        return os.path.join(self.owners, diff_id)

    def names(self):
        try:
            return sorted(f[:-5] for f in os.listdir(self.images) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def get(self, name, where="image"):
        check_name(name, where)
        return self._load(name, where)

    def _load(self, name, where):
        try:
            with open(os.path.join(self.images, name + ".marshal"), "rb") as f:
                return marshal.loads(f.read())
        except (FileNotFoundError, EOFError, ValueError, TypeError):
            pass
        try:
            import json
            with open(os.path.join(self.images, name + ".json")) as f:
                record = json.load(f)
        except FileNotFoundError:
            close = did_you_mean(name, self.names())
            raise ImageError(f"no image named {name!r} in the store {self.root}", where,
                             (close + " " if close else "")
                             + f"import one (sandbox image import {name} FILE) or build one "
                               f"(sandbox image build {name} --debian bookworm --packages python3)") from None
        except ValueError as e:
            raise ImageError(f"the store's record of {name!r} is damaged: {e}", where,
                             f"remove it (sandbox image rm {name}) and import the image again") from None
        write_cache(os.path.join(self.images, name + ".marshal"), marshal.dumps(record))   # the fast copy
        return record

    def remove(self, name):
        """Forget an image, then delete every layer no image uses.  Returns the layers removed."""
        where = "sandbox image rm"
        check_name(name, where)
        try:
            os.unlink(os.path.join(self.images, name + ".json"))
        except FileNotFoundError:
            self._load(name, where)              # the "no image named" error, with its suggestion
        try:
            os.unlink(os.path.join(self.images, name + ".marshal"))
        except FileNotFoundError:
            pass
        return self.gc()

    def gc(self):
        used = set()
        for n in self.names():
            used.update(self._load(n, "the image store")["layers"])
        removed, copies = [], []
        for entry in os.listdir(self.layers) if os.path.isdir(self.layers) else []:
            diff_id = entry.partition(".")[0]
            if diff_id not in used:
                path = os.path.join(self.layers, entry)
                if entry == diff_id:
                    _rmtree(path)
                    removed.append(diff_id)
                elif os.path.isdir(path):
                    copies.append(path)      # a copy with the tar's owners (idlayers.py): subordinate ids
                else:
                    os.unlink(path)          # .json, a copy's .lock
        for diff_id in os.listdir(self.owners) if os.path.isdir(self.owners) else []:
            if diff_id not in used:
                os.unlink(self.owners_path(diff_id))
        if copies:
            from . import idlayers
            idlayers.remove(copies, "sandbox image rm")
        return removed

    # -------------------------------------------------------------- import

    def import_(self, name, path, where="sandbox image import"):
        """Import an image file or directory as NAME.  Returns the image record.
        Nothing is kept unless the whole image is verified."""
        import tarfile
        import zlib
        from . import archive, layers
        check_name(name, where)
        if not os.path.exists(path):
            raise ImageError(f"{path} does not exist", where, "give a docker-save tarball, an OCI "
                             "image layout (directory or tar), or a root filesystem tar")
        caps = layers.limits()                   # a bad SANDBOX_MAX_LAYER_* fails before any work
        self._dirs()
        staged = []                              # (diff_id, size, summary, unpacked dir or None)
        try:
            with archive.Archive(path) as src:
                fmt, config, blobs = archive.contents(src, where)
                for opener, layer_where, blob_digest, diff_id in blobs:
                    self._layer(staged, caps, opener, layer_where, blob_digest, diff_id)
            self._commit(staged)
        except (tarfile.TarError, EOFError, zlib.error) as e:      # a compressed archive cut or damaged
            raise ImageError(f"cannot be read: {e}", path,
                             "the archive is truncated or damaged; get it again") from None
        finally:
            for *_, work in staged:
                if work:
                    _rmtree(work)
                    if os.path.lexists(work + ".owners"):
                        os.unlink(work + ".owners")
        record = {"format": fmt, "layers": [d for d, *_ in staged], "sizes": {d: size for d, size, *_ in staged},
                  "config": config}
        import json
        import time
        record.update(name=name, source=os.path.abspath(path), imported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        for ext, data in ((".json", json.dumps(record, indent=2).encode()), (".marshal", marshal.dumps(record))):
            write_atomic(os.path.join(self.images, name + ext), data)
        return record

    def _commit(self, staged):
        """Move the verified layers into the store (a layer already there is kept as it is)."""
        import json
        for i, (diff_id, size, summary, work) in enumerate(staged):
            dest = self.layer_path(diff_id)
            if work and not os.path.isdir(dest):
                with open(dest + ".json", "w") as f:
                    json.dump({"size": size, "import": summary}, f)
                os.replace(work + ".owners", self.owners_path(diff_id))
                try:
                    os.rename(work, dest)
                except OSError:
                    if not os.path.isdir(dest):
                        raise
                    continue                     # a concurrent import put the same layer there first
                staged[i] = (diff_id, size, summary, None)

    def _layer(self, staged, caps, opener, where, blob_digest=None, diff_id=None):
        """Verify, then unpack into tmp/ (or, if stored already, only verify) one layer.
        `opener()` gives the blob as stored (gzip or not).  The blob's own digest
        is checked before its bytes are parsed at all; the diff_id (of the
        uncompressed tar) while it is unpacked.  Appends to `staged`."""
        import uuid
        import zlib
        from . import archive, layers
        if blob_digest:
            with opener() as raw:
                h = layers.HashingReader(raw)
                h.drain()
            if "sha256:" + h.sha.hexdigest() != blob_digest:
                raise ImageError(f"digest mismatch: the blob is sha256:{h.sha.hexdigest()}, the manifest says "
                                 f"{blob_digest}", where, archive.DAMAGED)
        work = os.path.join(self.tmp, uuid.uuid4().hex)
        os.mkdir(work)
        try:
            with opener() as raw:
                try:
                    owners = []
                    got, size, summary = layers.extract(archive.maybe_gunzip(raw), work, where, caps, owners)
                except (OSError, EOFError, zlib.error) as e:
                    raise ImageError(f"the layer cannot be decompressed: {e}", where, archive.DAMAGED) from None
            if diff_id is not None and got != diff_id:
                raise ImageError(f"digest mismatch: the layer is sha256:{got}, the image says sha256:{diff_id}",
                                 where, archive.DAMAGED)
        except BaseException:
            _rmtree(work)
            raise
        if os.path.isdir(self.layer_path(got)) or any(d == got for d, *_ in staged):
            _rmtree(work)                          # shared with an image imported before, or twice in this one
            work = None
        else:                                      # the tar's ownership, for runs with subordinate ids
            write_atomic(work + ".owners", b"".join(b"%d %d %s\0" % (uid, gid, os.fsencode(path))
                                                    for path, uid, gid in owners))
        staged.append((got, size, summary, work))

# ------------------------------------------------------------------ looking inside an image

def lookup(store, image, path):
    """Does `path` exist in the image's merged tree?  Layers are searched top
    first; a whiteout hides the path, an opaque directory hides what lower
    layers have below it.  Returns the host path of the entry, or None."""
    parts = [p for p in path.split("/") if p]
    for diff_id in reversed(image["layers"]):
        cur = store.layer_path(diff_id)
        if not parts:
            return cur
        opaque_above = False
        for i, comp in enumerate(parts):
            cur = os.path.join(cur, comp)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None                                    # whited out in this layer
            if i == len(parts) - 1:
                return cur
            if not stat.S_ISDIR(st.st_mode):
                return None                                    # a file or symlink where a directory should be
            opaque_above = opaque_above or _opaque(cur)
        if opaque_above:
            return None
    return None


def _opaque(path):
    try:
        return os.getxattr(path, "user.overlay.opaque") == b"y"
    except OSError:
        return False


def which(store, image, name, path_var):
    """Find `name` in the image along PATH; None if it is not there."""
    if "/" in name:
        return name if lookup(store, image, name) else None
    for d in path_var.split(":"):
        if d and lookup(store, image, f"{d}/{name}"):
            return f"{d}/{name}"
    return None
