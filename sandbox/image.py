"""The image store: images imported from `docker save` tarballs, OCI image
layouts (directory or tar) or plain root filesystem tars, as unpacked layers
shared between images.

    $SANDBOX_STORE (default $XDG_DATA_HOME/sandbox, i.e. ~/.local/share/sandbox)
      layers/<diff_id>/        one unpacked layer, named by the sha256 of its uncompressed tar
      layers/<diff_id>.json    its size and what the import did to it
      images/<name>.json       layers (bottom first), config (Env, Cmd, WorkingDir, User), source

Every blob is verified against its digest before anything is kept: the
config, the manifest, each compressed layer blob and each uncompressed layer
(against the config's rootfs.diff_ids).  A layer already in the store is not
unpacked again, but its digest is still checked.
"""
import marshal
import os
import stat

from .errors import SandboxError, did_you_mean

# Importing, verifying and unpacking need tarfile, gzip, hashlib, json: they are
# imported where they are used, so that a run on an image imports none of them
# (the image record is also kept as marshal data for that reason).
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class ImageError(SandboxError):
    pass


def store_dir():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("SANDBOX_STORE") or os.path.join(base, "sandbox")


def _check_name(name, where="NAME"):
    if not name or len(name) > 128 or not name[0].isalnum() or not set(name) <= NAME_CHARS:
        raise ImageError(f"{name!r} is not a valid image name", where,
                         "use letters, digits, '.', '_' and '-' (up to 128), starting with a letter or digit")


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

    def _dirs(self):
        for d in (self.layers, self.images, self.tmp):
            os.makedirs(d, mode=0o755, exist_ok=True)

    def layer_path(self, diff_id):
        return os.path.join(self.layers, diff_id)

    def names(self):
        try:
            return sorted(f[:-5] for f in os.listdir(self.images) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def get(self, name, where="image"):
        try:
            with open(os.path.join(self.images, name + ".marshal"), "rb") as f:
                return marshal.load(f)
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
        try:                                     # the fast copy for the next run
            tmp = os.path.join(self.images, f".{name}.marshal.{os.getpid()}")
            with open(tmp, "wb") as f:
                marshal.dump(record, f)
            os.replace(tmp, os.path.join(self.images, name + ".marshal"))
        except OSError:
            pass
        return record

    def remove(self, name):
        """Forget an image, then delete every layer no image uses.  Returns the layers removed."""
        self.get(name, "sandbox image rm")
        os.unlink(os.path.join(self.images, name + ".json"))
        try:
            os.unlink(os.path.join(self.images, name + ".marshal"))
        except FileNotFoundError:
            pass
        return self.gc()

    def gc(self):
        used = set()
        for n in self.names():
            used.update(self.get(n)["layers"])
        removed = []
        for entry in os.listdir(self.layers) if os.path.isdir(self.layers) else []:
            diff_id = entry[:-5] if entry.endswith(".json") else entry
            if diff_id not in used:
                path = os.path.join(self.layers, entry)
                if entry.endswith(".json"):
                    os.unlink(path)
                else:
                    _rmtree(path)
                    removed.append(diff_id)
        return removed

    # -------------------------------------------------------------- import

    def import_(self, name, path):
        """Import an image file or directory as NAME.  Returns the image record."""
        _check_name(name)
        if not os.path.exists(path):
            raise ImageError(f"{path} does not exist", "sandbox image import", "give a docker-save tarball, an OCI "
                             "image layout (directory or tar), or a root filesystem tar")
        self._dirs()
        with _Source(path) as src:
            if src.exists("manifest.json"):                 # docker save (newer ones also write index.json)
                record = self._import_docker(src)
            elif src.exists("index.json"):
                record = self._import_oci(src)
            elif src.is_tar:
                record = self._import_rootfs(src)
            else:
                raise ImageError(f"{path} is a directory without index.json or manifest.json",
                                 "sandbox image import", "give an OCI image layout or a docker-save tarball")
        import json
        import time
        record.update(name=name, source=os.path.abspath(path), imported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        for ext, dump in ((".json", lambda r, f: f.write(json.dumps(r, indent=2).encode())), (".marshal", marshal.dump)):
            tmp = os.path.join(self.images, f".{name}{ext}.{os.getpid()}")
            with open(tmp, "wb") as f:
                dump(record, f)
            os.replace(tmp, os.path.join(self.images, name + ext))
        return record

    def _layer(self, opener, where, blob_digest=None, diff_id=None):
        """Verify, then unpack (or, if stored already, only verify) one layer.
        `opener()` gives the blob as stored (gzip or not).  The blob's own digest
        is checked before its bytes are parsed at all; the diff_id (of the
        uncompressed tar) while it is unpacked.  Returns (diff_id, size)."""
        import json
        import uuid
        import zlib
        from . import layers
        if blob_digest:
            with opener() as raw:
                h = layers.HashingReader(raw)
                h.drain()
            algo, _, want = blob_digest.partition(":")
            if algo != "sha256" or h.sha.hexdigest() != want:
                raise ImageError(f"digest mismatch: the blob is sha256:{h.sha.hexdigest()}, the manifest says "
                                 f"{blob_digest}", where, "the file is damaged or was altered; get it again")
        work = os.path.join(self.tmp, uuid.uuid4().hex)
        os.mkdir(work)
        try:
            with opener() as raw:
                try:
                    got, size, summary = layers.extract(_maybe_gunzip(raw), work, where)
                except (OSError, EOFError, zlib.error) as e:
                    raise ImageError(f"the layer cannot be decompressed: {e}", where,
                                     "the file is damaged; get it again") from None
            if diff_id is not None and got != diff_id:
                raise ImageError(f"digest mismatch: the layer is sha256:{got}, the image says sha256:{diff_id}",
                                 where, "the file is damaged or was altered; get it again")
            dest = self.layer_path(got)
            if os.path.isdir(dest):
                _rmtree(work)                      # shared with an image imported before
            else:
                with open(dest + ".json", "w") as f:
                    json.dump({"size": size, "import": summary}, f)
                os.rename(work, dest)
            return got, size
        except BaseException:
            _rmtree(work)
            raise

    @staticmethod
    def _diff_ids(config, layers, where):
        """The config's rootfs.diff_ids (hex), checked to be one per layer of the manifest."""
        diff_ids = [d.split(":", 1)[1] for d in config.get("rootfs", {}).get("diff_ids", [])]
        if len(diff_ids) != len(layers):
            raise ImageError("the config's rootfs.diff_ids do not match the manifest's layers", where,
                             "the image is malformed")
        return diff_ids

    @staticmethod
    def _record(fmt, unpacked, config):
        """The image record from [(diff_id, size)] and the image config."""
        c = config.get("config") or {}
        return {"format": fmt, "layers": [d for d, _ in unpacked], "sizes": dict(unpacked),
                "config": {k: c.get(k) for k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User")}}

    def _import_docker(self, src):
        import json
        manifest = src.json("manifest.json")
        if not isinstance(manifest, list) or not manifest:
            raise ImageError("manifest.json lists no image", "docker-save", "the tarball is malformed")
        entry = manifest[0]
        config_bytes = src.read(entry["Config"])
        _verify_named(entry["Config"], config_bytes, "docker-save config")
        config = json.loads(config_bytes)
        diff_ids = self._diff_ids(config, entry.get("Layers", []), "docker-save")
        out = []
        for i, (path, diff_id) in enumerate(zip(entry["Layers"], diff_ids, strict=True)):
            out.append(self._layer(lambda p=path: src.open(p), f"docker-save layer {i} ({path})", diff_id=diff_id))
        return self._record("docker-save", out, config)

    def _import_oci(self, src):
        import json
        index = src.json("index.json")
        desc = _pick_manifest(src, index)
        manifest = json.loads(src.blob(desc))
        config = json.loads(src.blob(manifest["config"]))
        diff_ids = self._diff_ids(config, manifest.get("layers", []), "OCI layout")
        out = []
        for i, (layer, diff_id) in enumerate(zip(manifest["layers"], diff_ids, strict=True)):
            where = f"OCI layer {i} ({layer['digest']})"
            media = layer.get("mediaType", "")
            if "zstd" in media:
                raise ImageError("zstd-compressed layers are not supported", where,
                                 "export the image with gzip or uncompressed layers")
            out.append(self._layer(lambda desc=layer: src.open(_blob_path(desc)), where,
                                   blob_digest=layer["digest"], diff_id=diff_id))
        return self._record("oci", out, config)

    def _import_rootfs(self, src):
        diff_id, size = self._layer(src.open_self, "root filesystem tar")
        return {"format": "rootfs-tar", "layers": [diff_id], "sizes": {diff_id: size},
                "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                           "Cmd": ["/bin/sh"], "Entrypoint": None, "WorkingDir": "/", "User": None}}


# ------------------------------------------------------------------ reading the input

def _is_gzip(f):
    pos = f.tell()
    magic = f.read(2)
    f.seek(pos)
    return magic == b"\x1f\x8b"


def _maybe_gunzip(f):
    import gzip
    if not f.seekable():
        return f
    return gzip.GzipFile(fileobj=f) if _is_gzip(f) else f


def _blob_path(desc):
    algo, _, hexd = desc["digest"].partition(":")
    if algo != "sha256" or len(hexd) != 64 or not set(hexd) <= set("0123456789abcdef"):
        raise ImageError(f"unsupported digest {desc['digest']!r}", "OCI layout", "only sha256 digests are supported")
    return f"blobs/sha256/{hexd}"


def _verify_named(path, data, where):
    """docker-save names its config by its digest (blobs/sha256/HEX or HEX.json): check it."""
    import hashlib
    import re
    m = re.search(r"([0-9a-f]{64})(\.json)?$", path)
    if m and hashlib.sha256(data).hexdigest() != m.group(1):
        raise ImageError(f"digest mismatch: {path} does not hash to its name", where,
                         "the file is damaged or was altered; get it again")


def _pick_manifest(src, index):
    manifests = index.get("manifests") or []
    if not manifests:
        raise ImageError("index.json lists no manifest", "OCI layout", "the image is malformed")
    chosen = next((m for m in manifests if (m.get("platform") or {}).get("architecture") == "amd64"), manifests[0])
    if chosen.get("mediaType", "").endswith("image.index.v1+json"):            # a nested index
        import json
        return _pick_manifest(src, json.loads(src.blob(chosen)))
    return chosen


class _Source:
    """An image given as a directory or as a tar file, read by member path."""

    def __init__(self, path):
        import tarfile
        self.path = path
        self.is_tar = os.path.isfile(path)
        self.tar = None
        if self.is_tar:
            try:
                self.tar = tarfile.open(path, "r:*")
                self.members = {os.path.normpath(m.name).lstrip("./"): m for m in self.tar.getmembers() if m.isfile()}
            except tarfile.TarError as e:
                raise ImageError(f"{path} is not a tar file: {e}", "sandbox image import",
                                 "give a docker-save tarball, an OCI image layout or a root filesystem tar") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.tar:
            self.tar.close()

    def exists(self, name):
        return name in self.members if self.is_tar else os.path.isfile(os.path.join(self.path, name))

    def open(self, name):
        name = os.path.normpath(name).lstrip("./")
        if ".." in name.split("/"):
            raise ImageError(f"the image refers to {name!r}, outside itself", "image", "the image is malformed or hostile")
        if self.is_tar:
            if name not in self.members:
                raise ImageError(f"{name} is missing from {self.path}", "image", "the image is incomplete")
            return self.tar.extractfile(self.members[name])
        try:
            return open(os.path.join(self.path, name), "rb")
        except FileNotFoundError:
            raise ImageError(f"{name} is missing from {self.path}", "image", "the image is incomplete") from None

    def open_self(self):
        return open(self.path, "rb")

    def read(self, name):
        with self.open(name) as f:
            return f.read()

    def json(self, name):
        import json
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise ImageError(f"{name} is not valid JSON: {e}", "image", "the image is malformed") from None

    def blob(self, desc):
        import hashlib
        data = self.read(_blob_path(desc))
        h = hashlib.sha256(data).hexdigest()
        if "sha256:" + h != desc["digest"]:
            raise ImageError(f"digest mismatch: {desc['digest']} hashes to sha256:{h}", "OCI blob",
                             "the file is damaged or was altered; get it again")
        return data


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
