"""Reading an image archive: a `docker save` tarball, an OCI image layout (a
directory or a tar of one) or a plain root filesystem tar, as untrusted input.

contents() says what an archive holds: its format, the image config's run
settings, and for each layer (bottom first) how to open its blob, the digest
the blob must have (OCI) and the diff_id its uncompressed tar must have.  The
store (image.py) verifies and unpacks the layers (layers.py).

Checked here, each a clear error naming the archive and the member or field:
every JSON document and field for the type it must have (a config's Env,
User... too, so that an image that imports can also run), JSON documents
over 16 MiB, image indexes nested more than 8 deep, member paths that are
absolute, climb with '..' or hold a NUL (only "." components are dropped:
".hidden" stays ".hidden"), a tar cut short or damaged, duplicate members,
and the digests of the config, the manifests and the indexes.  A docker-save
config is verified against the digest its manifest names it by (<hex>.json
or blobs/sha256/<hex>); a config named without a digest is refused.
"""
import os

from .errors import SandboxError, shorten

MALFORMED = "the archive is malformed; export the image again (docker save, or skopeo copy to oci:DIR)"
DAMAGED = "the file is damaged or was altered; get it again"
MAX_JSON_BYTES = 16 << 20       # a manifest, index or config larger than this is not a real one
MAX_INDEX_DEPTH = 8             # image indexes nested deeper than this are not a real image


class ArchiveError(SandboxError):
    """An image archive that cannot be imported."""


def contents(src, where):
    """(format, config, [(opener, where, blob digest or None, diff_id hex or None)]) of an open Archive."""
    if src.exists("manifest.json"):             # docker save (newer ones also write index.json)
        return _docker(src)
    if src.exists("index.json"):
        return _oci(src)
    if src.is_tar:
        return _rootfs(src)
    raise ArchiveError(f"{src.path} is a directory without index.json or manifest.json", where,
                       "give an OCI image layout or a docker-save tarball")


# ------------------------------------------------------------------ the formats

def _docker(src):
    manifest = _want(src.json("manifest.json"), list, "manifest.json", src.path)
    if not manifest:
        raise ArchiveError("manifest.json lists no image", src.path, MALFORMED)
    entry = _want(manifest[0], dict, "manifest.json[0]", src.path)
    config_name = _key(entry, "Config", str, "manifest.json[0]", src.path)
    paths = _key(entry, "Layers", list, "manifest.json[0]", src.path)
    for i, p in enumerate(paths):
        _want(p, str, f"manifest.json[0].Layers[{i}]", src.path)
    config_bytes = src.read(config_name)
    _verify_config(config_name, config_bytes, src.path)
    config, diff_ids = _config(src.parse(config_name, config_bytes), config_name, len(paths), src.path)
    layers = [(lambda p=path: src.open(p), f"{src.path}: docker-save layer {i} ({path})", None, diff_id)
              for i, (path, diff_id) in enumerate(zip(paths, diff_ids, strict=True))]
    return "docker-save", config, layers


def _oci(src):
    desc, what = _pick_manifest(src, src.json("index.json"), "index.json", 0)
    manifest = _want(src.parse(what, src.blob(desc, what)), dict, what, src.path)
    config_desc = _descriptor(_key(manifest, "config", dict, what, src.path), f"{what}.config", src.path)
    config_what = f"config {config_desc['digest']}"
    descs = _key(manifest, "layers", list, what, src.path)
    descs = [_descriptor(d, f"{what}.layers[{i}]", src.path) for i, d in enumerate(descs)]
    config, diff_ids = _config(src.parse(config_what, src.blob(config_desc, config_what)), config_what,
                               len(descs), src.path)
    layers = []
    for i, (layer, diff_id) in enumerate(zip(descs, diff_ids, strict=True)):
        where = f"{src.path}: OCI layer {i} ({layer['digest']})"
        if "zstd" in layer["mediaType"]:
            raise ArchiveError("zstd-compressed layers are not supported", where,
                               "export the image with gzip or uncompressed layers")
        layers.append((lambda desc=layer: src.open(_blob_path(desc)), where, layer["digest"], diff_id))
    return "oci", config, layers


def _rootfs(src):
    config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
              "Cmd": ["/bin/sh"], "Entrypoint": None, "WorkingDir": "/", "User": None}
    return "rootfs-tar", config, [(src.open_self, f"{src.path}: root filesystem tar", None, None)]


# ------------------------------------------------------------------ checking the JSON documents
# Every value read from an archive's JSON is checked for its type here, so that a
# malformed archive is a clear error naming the document and field, never a crash.

_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "true or false", type(None): "null"}
_MISSING = object()


def _want(value, kind, what, where):
    """`value` (the JSON at `what`, e.g. manifest.json[0].Layers) must be a `kind`."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArchiveError(f"{what} is {_KINDS.get(type(value), type(value).__name__)}, not {_KINDS[kind]}",
                           where, MALFORMED)
    return value


def _key(obj, key, kind, what, where, default=_MISSING):
    """obj[key] as a `kind`; an optional key (with a default) may also be absent or null."""
    value = obj.get(key)
    if value is None:
        if default is not _MISSING:
            return default
        raise ArchiveError(f"{what} has no {key!r}", where, MALFORMED)
    return _want(value, kind, f"{what}.{key}", where)


def _digest(value, what, where):
    """A `sha256:<64 hex>` digest, the only kind this store names blobs and layers by."""
    _want(value, str, what, where)
    algo, _, hexd = value.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not set(hexd) <= set("0123456789abcdef"):
        raise ArchiveError(f"{what} is {shorten(value)}, not a sha256 digest (sha256:<64 hex digits>)", where,
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
                raise ArchiveError(f"{field} contains a NUL byte", where, MALFORMED)
    rootfs = _key(doc, "rootfs", dict, what, where)
    ids = _key(rootfs, "diff_ids", list, f"{what}.rootfs", where)
    diff_ids = [_digest(d, f"{what}.rootfs.diff_ids[{i}]", where) for i, d in enumerate(ids)]
    if len(diff_ids) != n_layers:
        raise ArchiveError(f"{what} lists {len(diff_ids)} rootfs.diff_ids for {n_layers} layers in the manifest",
                           where, MALFORMED)
    return out, diff_ids


def _verify_config(path, data, where):
    """docker-save names its config by its digest (<hex>.json, or blobs/sha256/<hex> since
    Docker 25): check it.  A config named otherwise cannot be verified, so it is refused."""
    import hashlib
    base = os.path.basename(path)
    hexd = base[:-5] if base.endswith(".json") else base if path.startswith("blobs/sha256/") else ""
    if len(hexd) != 64 or not set(hexd) <= set("0123456789abcdef"):
        raise ArchiveError(f"manifest.json[0].Config {shorten(path)} carries no sha256 digest, so the config "
                           "cannot be verified", where,
                           "export the image again with docker save (which names the config by its digest)")
    got = hashlib.sha256(data).hexdigest()
    if got != hexd:
        raise ArchiveError(f"digest mismatch: the config {path} is sha256:{got}", where, DAMAGED)


def _pick_manifest(src, index, what, depth):
    """The descriptor of the image manifest to import (amd64 if several), through nested
    indexes.  Returns (descriptor, its name for messages)."""
    if depth > MAX_INDEX_DEPTH:
        raise ArchiveError(f"image indexes are nested more than {MAX_INDEX_DEPTH} deep (at {what})", src.path,
                           MALFORMED)
    _want(index, dict, what, src.path)
    manifests = _key(index, "manifests", list, what, src.path)
    if not manifests:
        raise ArchiveError(f"{what} lists no manifest", src.path, MALFORMED)
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


def maybe_gunzip(f):
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


class Archive:
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
                        raise ArchiveError(f"{key} appears twice in the archive", path, MALFORMED)
                    if key and m.isfile():
                        self.members[key] = m
            except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
                self.__exit__()
                raise ArchiveError(f"this is not a tar file, or it is truncated or damaged ({e})", path,
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
            raise ArchiveError(f"the image refers to {shorten(name)}, outside itself", self.path,
                               "the image is malformed or hostile; do not use it")
        if self.is_tar:
            if rel not in self.members:
                raise ArchiveError(f"{rel} is missing from the archive", self.path, "the image is incomplete")
            return self.tar.extractfile(self.members[rel])
        try:
            return open(os.path.join(self.path, rel), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArchiveError(f"{rel} is missing from the directory", self.path, "the image is incomplete") from None

    def open_self(self):
        return open(self.path, "rb")

    def read(self, name):
        """A JSON document's bytes, bounded: a real manifest, index or config is small."""
        with self.open(name) as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ArchiveError(f"{name} is larger than {MAX_JSON_BYTES >> 20} MiB, too large for an image's JSON "
                               "document", self.path, MALFORMED)
        return data

    def parse(self, name, data):
        import json
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            what = e if isinstance(e, ValueError) else "nested too deeply"
            raise ArchiveError(f"{name} is not valid JSON: {shorten(str(what), 200)}", self.path, MALFORMED) from None

    def json(self, name):
        return self.parse(name, self.read(name))

    def blob(self, desc, what):
        import hashlib
        data = self.read(_blob_path(desc))
        h = hashlib.sha256(data).hexdigest()
        if "sha256:" + h != desc["digest"]:
            raise ArchiveError(f"digest mismatch: {what} hashes to sha256:{h}", self.path, DAMAGED)
        return data
