"""The image store: images imported from `docker save` tarballs, OCI image
layouts (directory or tar) or plain root filesystem tars, as unpacked layers
shared between images.

    $SANDBOX_STORE (default $XDG_DATA_HOME/sandbox, i.e. ~/.local/share/sandbox)
      layers/<diff_id>/        one unpacked layer, named by the sha256 of its uncompressed tar
      layers/<diff_id>.json    its size and what the import did to it
      images/<name>.json       layers (bottom first), config (Env, Cmd, WorkingDir, User), source

Image names are identifiers, never paths (check_name, the one place a name
is checked): letters, digits, '.', '_' and '-', starting with a letter or
digit, at most 128 characters.

Every blob is verified against its digest before anything is kept: the
config, the manifest, each compressed layer blob and each uncompressed layer
(against the config's rootfs.diff_ids).  A docker-save config is checked
against the digest its manifest names it by; a config named without one is
refused.  A layer already in the store is not unpacked again, but its digest
is still checked.

Archives are untrusted input: every JSON document is checked for the types
it must have (a config's Env, User... too, so that an image that imports can
run), a truncated archive is refused, and a refused import leaves nothing in
the store: layers are unpacked under tmp/ and moved into layers/ only once
the whole image has been verified.
"""
import marshal
import os
import stat

from .errors import SandboxError, did_you_mean

# Importing, verifying and unpacking need tarfile, gzip, hashlib, json: they are
# imported where they are used, so that a run on an image imports none of them
# (the image record is also kept as marshal data for that reason).
ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_CHARS = ALNUM | frozenset("._-")
MAX_NAME = 128
NAME_FIX = (f"image names are identifiers, not paths: letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters (e.g. bookworm-python3)")
MALFORMED = "the archive is malformed; export the image again (docker save, or skopeo copy to oci:DIR)"
DAMAGED = "the file is damaged or was altered; get it again"
MAX_JSON_BYTES = 16 << 20       # a manifest, index or config larger than this is not a real one
MAX_INDEX_DEPTH = 8             # image indexes nested deeper than this are not a real image


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
        raise ImageError(f"{_short(name)} is not a valid image name", where, NAME_FIX)
    return name


def _short(value, limit=80):
    """repr() of a value for a message, cut: a message never carries an unbounded value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
        check_name(name, where)
        return self._load(name, where)

    def _load(self, name, where):
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
        except ValueError as e:
            raise ImageError(f"the store's record of {name!r} is damaged: {e}", where,
                             f"remove it (sandbox image rm {name}) and import the image again") from None
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

    def import_(self, name, path, where="sandbox image import"):
        """Import an image file or directory as NAME.  Returns the image record.
        Nothing is kept unless the whole image is verified."""
        import tarfile
        import zlib
        check_name(name, where)
        if not os.path.exists(path):
            raise ImageError(f"{path} does not exist", where, "give a docker-save tarball, an OCI "
                             "image layout (directory or tar), or a root filesystem tar")
        self._dirs()
        staged = []                              # (diff_id, size, summary, unpacked dir or None)
        try:
            with _Source(path) as src:
                if src.exists("manifest.json"):             # docker save (newer ones also write index.json)
                    record = self._import_docker(src, staged)
                elif src.exists("index.json"):
                    record = self._import_oci(src, staged)
                elif src.is_tar:
                    record = self._import_rootfs(src, staged)
                else:
                    raise ImageError(f"{path} is a directory without index.json or manifest.json", where,
                                     "give an OCI image layout or a docker-save tarball")
            self._commit(staged)
        except (tarfile.TarError, EOFError, zlib.error) as e:      # a compressed archive cut or damaged
            raise ImageError(f"cannot be read: {e}", path, "the archive is truncated or damaged; get it again") from None
        finally:
            for *_, work in staged:
                if work:
                    _rmtree(work)
        import json
        import time
        record.update(name=name, source=os.path.abspath(path), imported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        for ext, dump in ((".json", lambda r, f: f.write(json.dumps(r, indent=2).encode())), (".marshal", marshal.dump)):
            tmp = os.path.join(self.images, f".{name}{ext}.{os.getpid()}")
            with open(tmp, "wb") as f:
                dump(record, f)
            os.replace(tmp, os.path.join(self.images, name + ext))
        return record

    def _commit(self, staged):
        """Move the verified layers into the store (a layer already there is kept as it is)."""
        import json
        for i, (diff_id, size, summary, work) in enumerate(staged):
            dest = self.layer_path(diff_id)
            if work and not os.path.isdir(dest):
                with open(dest + ".json", "w") as f:
                    json.dump({"size": size, "import": summary}, f)
                os.rename(work, dest)
                staged[i] = (diff_id, size, summary, None)

    def _layer(self, staged, opener, where, blob_digest=None, diff_id=None):
        """Verify, then unpack into tmp/ (or, if stored already, only verify) one layer.
        `opener()` gives the blob as stored (gzip or not).  The blob's own digest
        is checked before its bytes are parsed at all; the diff_id (of the
        uncompressed tar) while it is unpacked.  Appends to `staged`."""
        import uuid
        import zlib
        from . import layers
        if blob_digest:
            with opener() as raw:
                h = layers.HashingReader(raw)
                h.drain()
            if "sha256:" + h.sha.hexdigest() != blob_digest:
                raise ImageError(f"digest mismatch: the blob is sha256:{h.sha.hexdigest()}, the manifest says "
                                 f"{blob_digest}", where, DAMAGED)
        work = os.path.join(self.tmp, uuid.uuid4().hex)
        os.mkdir(work)
        try:
            with opener() as raw:
                try:
                    got, size, summary = layers.extract(_maybe_gunzip(raw), work, where)
                except (OSError, EOFError, zlib.error) as e:
                    raise ImageError(f"the layer cannot be decompressed: {e}", where, DAMAGED) from None
            if diff_id is not None and got != diff_id:
                raise ImageError(f"digest mismatch: the layer is sha256:{got}, the image says sha256:{diff_id}",
                                 where, DAMAGED)
        except BaseException:
            _rmtree(work)
            raise
        if os.path.isdir(self.layer_path(got)) or any(d == got for d, *_ in staged):
            _rmtree(work)                          # shared with an image imported before, or twice in this one
            work = None
        staged.append((got, size, summary, work))

    @staticmethod
    def _record(fmt, staged, config):
        """The image record from the staged layers and the checked image config."""
        return {"format": fmt, "layers": [d for d, *_ in staged], "sizes": {d: size for d, size, *_ in staged},
                "config": config}

    def _import_docker(self, src, staged):
        manifest = _want(src.json("manifest.json"), list, "manifest.json", src.path)
        if not manifest:
            raise ImageError("manifest.json lists no image", src.path, MALFORMED)
        entry = _want(manifest[0], dict, "manifest.json[0]", src.path)
        config_name = _key(entry, "Config", str, "manifest.json[0]", src.path)
        paths = _key(entry, "Layers", list, "manifest.json[0]", src.path)
        for i, p in enumerate(paths):
            _want(p, str, f"manifest.json[0].Layers[{i}]", src.path)
        config_bytes = src.read(config_name)
        _verify_config(config_name, config_bytes, src.path)
        config, diff_ids = _config(src.parse(config_name, config_bytes), config_name, len(paths), src.path)
        for i, (path, diff_id) in enumerate(zip(paths, diff_ids, strict=True)):
            self._layer(staged, lambda p=path: src.open(p), f"{src.path}: docker-save layer {i} ({path})",
                        diff_id=diff_id)
        return self._record("docker-save", staged, config)

    def _import_oci(self, src, staged):
        desc, what = _pick_manifest(src, src.json("index.json"), "index.json", 0)
        manifest = _want(src.parse(what, src.blob(desc, what)), dict, what, src.path)
        config_desc = _descriptor(_key(manifest, "config", dict, what, src.path), f"{what}.config", src.path)
        config_what = f"config {config_desc['digest']}"
        descs = _key(manifest, "layers", list, what, src.path)
        descs = [_descriptor(d, f"{what}.layers[{i}]", src.path) for i, d in enumerate(descs)]
        config, diff_ids = _config(src.parse(config_what, src.blob(config_desc, config_what)), config_what,
                                   len(descs), src.path)
        for i, (layer, diff_id) in enumerate(zip(descs, diff_ids, strict=True)):
            where = f"{src.path}: OCI layer {i} ({layer['digest']})"
            if "zstd" in layer["mediaType"]:
                raise ImageError("zstd-compressed layers are not supported", where,
                                 "export the image with gzip or uncompressed layers")
            self._layer(staged, lambda desc=layer: src.open(_blob_path(desc)), where,
                        blob_digest=layer["digest"], diff_id=diff_id)
        return self._record("oci", staged, config)

    def _import_rootfs(self, src, staged):
        self._layer(staged, src.open_self, f"{src.path}: root filesystem tar")
        return self._record("rootfs-tar", staged,
                            {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Cmd": ["/bin/sh"], "Entrypoint": None, "WorkingDir": "/", "User": None})


# ------------------------------------------------------------------ checking the JSON documents
# Every value read from an archive's JSON is checked for its type here, so that a
# malformed archive is a clear error naming the document and field, never a crash.

_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "true or false", type(None): "null"}
_MISSING = object()


def _want(value, kind, what, where):
    """`value` (the JSON at `what`, e.g. manifest.json[0].Layers) must be a `kind`."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ImageError(f"{what} is {_KINDS.get(type(value), type(value).__name__)}, not {_KINDS[kind]}",
                         where, MALFORMED)
    return value


def _key(obj, key, kind, what, where, default=_MISSING):
    """obj[key] as a `kind`; an optional key (with a default) may also be absent or null."""
    value = obj.get(key)
    if value is None:
        if default is not _MISSING:
            return default
        raise ImageError(f"{what} has no {key!r}", where, MALFORMED)
    return _want(value, kind, f"{what}.{key}", where)


def _digest(value, what, where):
    """A `sha256:<64 hex>` digest, the only kind this store names blobs and layers by."""
    _want(value, str, what, where)
    algo, _, hexd = value.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not set(hexd) <= set("0123456789abcdef"):
        raise ImageError(f"{what} is {_short(value)}, not a sha256 digest (sha256:<64 hex digits>)", where,
                         "only sha256 digests are supported; " + MALFORMED)
    return hexd


def _descriptor(desc, what, where):
    """An OCI content descriptor, checked, as {digest, mediaType, architecture} (absent = "")."""
    _want(desc, dict, what, where)
    digest = _key(desc, "digest", str, what, where)
    _digest(digest, f"{what}.digest", where)
    platform = _key(desc, "platform", dict, what, where, {})
    return {"digest": digest, "mediaType": _key(desc, "mediaType", str, what, where, ""),
            "architecture": _key(platform, "architecture", str, f"{what}.platform", where, "")}


def _config(doc, what, n_layers, where):
    """The image config's run settings, checked to be of the types a run needs, and its
    rootfs.diff_ids (hex), one per layer of the manifest."""
    _want(doc, dict, what, where)
    c = _key(doc, "config", dict, what, where, {})
    out = {}
    for key, kind in (("Env", list), ("Cmd", list), ("Entrypoint", list), ("WorkingDir", str), ("User", str)):
        value = out[key] = _key(c, key, kind, f"{what}.config", where, None)
        for i, item in enumerate((value or []) if kind is list else [value] if value is not None else []):
            field = f"{what}.config.{key}" + (f"[{i}]" if kind is list else "")
            if "\0" in _want(item, str, field, where):
                raise ImageError(f"{field} contains a NUL byte", where, MALFORMED)
    rootfs = _key(doc, "rootfs", dict, what, where)
    ids = _key(rootfs, "diff_ids", list, f"{what}.rootfs", where)
    diff_ids = [_digest(d, f"{what}.rootfs.diff_ids[{i}]", where) for i, d in enumerate(ids)]
    if len(diff_ids) != n_layers:
        raise ImageError(f"{what} lists {len(diff_ids)} rootfs.diff_ids for {n_layers} layers in the manifest",
                         where, MALFORMED)
    return out, diff_ids


def _verify_config(path, data, where):
    """docker-save names its config by its digest (<hex>.json, or blobs/sha256/<hex> since
    Docker 25): check it.  A config named otherwise cannot be verified, so it is refused."""
    import hashlib
    base = os.path.basename(path)
    hexd = base[:-5] if base.endswith(".json") else base if path.startswith("blobs/sha256/") else ""
    if len(hexd) != 64 or not set(hexd) <= set("0123456789abcdef"):
        raise ImageError(f"manifest.json[0].Config {_short(path)} carries no sha256 digest, so the config "
                         "cannot be verified", where,
                         "export the image again with docker save (which names the config by its digest)")
    got = hashlib.sha256(data).hexdigest()
    if got != hexd:
        raise ImageError(f"digest mismatch: the config {path} is sha256:{got}", where, DAMAGED)


def _pick_manifest(src, index, what, depth):
    """The descriptor of the image manifest to import (amd64 if several), through nested
    indexes.  Returns (descriptor, its name for messages)."""
    if depth > MAX_INDEX_DEPTH:
        raise ImageError(f"image indexes are nested more than {MAX_INDEX_DEPTH} deep (at {what})", src.path, MALFORMED)
    _want(index, dict, what, src.path)
    manifests = _key(index, "manifests", list, what, src.path)
    if not manifests:
        raise ImageError(f"{what} lists no manifest", src.path, MALFORMED)
    manifests = [_descriptor(m, f"{what}.manifests[{i}]", src.path) for i, m in enumerate(manifests)]
    chosen = next((m for m in manifests if m["architecture"] == "amd64"), manifests[0])
    inner = f"manifest {chosen['digest']}"
    if chosen["mediaType"].endswith("image.index.v1+json"):                     # a nested index
        inner = f"index {chosen['digest']}"
        return _pick_manifest(src, src.parse(inner, src.blob(chosen, inner)), inner, depth + 1)
    return chosen, inner


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
    return "blobs/sha256/" + desc["digest"].partition(":")[2]       # checked by _descriptor


def _member(name):
    """A member's path inside the archive, or None if it is not one: absolute, with a '..'
    component, or with a NUL byte.  Only "." components are dropped ("./manifest.json");
    every other character is kept (".hidden" stays ".hidden")."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or "\0" in name or not parts:
        return None
    return "/".join(parts)


class _Source:
    """An image given as a directory or as a tar file, read by member path."""

    def __init__(self, path):
        import tarfile
        import zlib
        from .layers import StrictTarInfo
        self.path = path
        self.is_tar = os.path.isfile(path)
        self.tar = None
        if self.is_tar:
            try:
                self.tar = tarfile.open(path, "r:*", tarinfo=StrictTarInfo)
                self.members = {}
                for m in self.tar.getmembers():
                    key = _member(m.name)
                    if key in self.members:
                        raise ImageError(f"{key} appears twice in the archive", path, MALFORMED)
                    if key and m.isfile():
                        self.members[key] = m
            except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
                self.__exit__()
                raise ImageError(f"this is not a tar file, or it is truncated or damaged ({e})", path,
                                 "give a docker-save tarball, an OCI image layout or a root filesystem tar; "
                                 "if it is one, get it again") from None
            except BaseException:
                self.__exit__()
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.tar:
            self.tar.close()

    def exists(self, name):
        return name in self.members if self.is_tar else os.path.isfile(os.path.join(self.path, name))

    def open(self, name):
        rel = _member(name)
        if rel is None:
            raise ImageError(f"the image refers to {_short(name)}, outside itself", self.path,
                             "the image is malformed or hostile; do not use it")
        if self.is_tar:
            if rel not in self.members:
                raise ImageError(f"{rel} is missing from the archive", self.path, "the image is incomplete")
            return self.tar.extractfile(self.members[rel])
        try:
            return open(os.path.join(self.path, rel), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ImageError(f"{rel} is missing from the directory", self.path, "the image is incomplete") from None

    def open_self(self):
        return open(self.path, "rb")

    def read(self, name):
        """A JSON document's bytes, bounded: a real manifest, index or config is small."""
        with self.open(name) as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ImageError(f"{name} is larger than {MAX_JSON_BYTES >> 20} MiB, too large for an image's JSON "
                             "document", self.path, MALFORMED)
        return data

    def parse(self, name, data):
        import json
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            what = e if isinstance(e, ValueError) else "nested too deeply"
            raise ImageError(f"{name} is not valid JSON: {_short(str(what), 200)}", self.path, MALFORMED) from None

    def json(self, name):
        return self.parse(name, self.read(name))

    def blob(self, desc, what):
        import hashlib
        data = self.read(_blob_path(desc))
        h = hashlib.sha256(data).hexdigest()
        if "sha256:" + h != desc["digest"]:
            raise ImageError(f"digest mismatch: {what} hashes to sha256:{h}", self.path, DAMAGED)
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
