"""Small images for the tests, written with tarfile: layers from dicts, a
busybox-static base layer, and the two container formats (docker save, OCI)."""
import gzip
import hashlib
import io
import json
import os
import tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "ls", "echo", "rm", "touch", "mkdir", "id", "test", "sleep", "stat", "readlink", "ln",
           "hostname", "pwd", "env", "true", "false")


def layer(entries, owners=None):
    """An uncompressed layer tar.  entries: path -> bytes (file) | ("dir",) | ("symlink", target)
    | ("link", target) | ("chr", major, minor) | ("file", bytes, mode) | ("whiteout",) | ("opaque",).
    owners: path -> (uid, gid) of that entry (else 0:0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, spec in entries:
            if isinstance(spec, bytes):
                spec = ("file", spec, 0o644)
            kind = spec[0]
            if kind == "whiteout":
                d, base = os.path.split(path)
                path = os.path.join(d, ".wh." + base)
                spec = ("file", b"", 0o644)
            elif kind == "opaque":
                path = os.path.join(path, ".wh..wh..opq")
                spec = ("file", b"", 0o644)
            info = tarfile.TarInfo(path)
            info.mtime = 1700000000
            info.uid, info.gid = (owners or {}).get(path, (0, 0))
            data = None
            if spec[0] == "file":
                data = spec[1]
                info.size, info.mode = len(data), spec[2]
            elif spec[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, spec[1] if len(spec) > 1 else 0o755
            elif spec[0] == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, spec[1]
            elif spec[0] == "link":
                info.type, info.linkname = tarfile.LNKTYPE, spec[1]
            elif spec[0] == "chr":
                info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, spec[1], spec[2], 0o666
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layer(extra=(), owners=None):
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    entries = [("bin", ("dir",)), ("bin/busybox", ("file", bb, 0o755))]
    entries += [(f"bin/{a}", ("symlink", "busybox")) for a in APPLETS]
    entries += [(d, ("dir",)) for d in ("etc", "tmp", "box", "usr", "usr/bin", "proc", "dev")]
    entries += [("etc/motd", b"from the base layer\n")]
    return layer(entries + list(extra), owners)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def config_for(layers, env=None, workdir=None, user=None, cmd=None):
    return {"architecture": "amd64", "os": "linux",
            "config": {"Env": env or ["PATH=/usr/bin:/bin"], "Cmd": cmd or ["/bin/sh"], "WorkingDir": workdir or "",
                       "User": user or ""},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + _sha(l) for l in layers]}}


def docker_members(layers, config=None, config_name=None):
    """The members of a `docker save` tarball (the classic layout: <id>/layer.tar and <sha>.json).
    `config` may be any JSON value (or bytes, written as they are); `config_name` overrides the
    digest name docker gives the config."""
    config = config_for(layers) if config is None else config
    cfg = config if isinstance(config, bytes) else json.dumps(config).encode()
    config_name = config_name or f"{_sha(cfg)}.json"
    members = {config_name: cfg}
    names = []
    for i, l in enumerate(layers):
        names.append(f"layer{i}/layer.tar")
        members[names[-1]] = l
    members["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": ["test:latest"],
                                            "Layers": names}]).encode()
    return members


def docker_save(path, layers, config=None, tamper=None):
    """A `docker save` tarball written to `path`; tamper="diff_id" breaks the last layer's."""
    config = config or config_for(layers)
    if tamper == "diff_id":
        config["rootfs"]["diff_ids"][-1] = "sha256:" + "0" * 64
    write_tar(path, docker_members(layers, config))


def nested_indexes(path, depth):
    """An OCI layout (tar) whose index.json leads through `depth` nested image indexes to nothing."""
    members = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    inner = {"schemaVersion": 2, "manifests": []}
    for _ in range(depth):
        data = json.dumps(inner).encode()
        members[f"blobs/sha256/{_sha(data)}"] = data
        inner = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                                    "digest": "sha256:" + _sha(data), "size": len(data)}]}
    members["index.json"] = json.dumps(inner).encode()
    write_tar(path, members)


def pax_layer(name, headers, data=b"x"):
    """A layer of one file whose PAX header says `headers` (e.g. {"mtime": "inf"})."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.pax_headers = len(data), headers
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_layout(path, layers, config=None, as_tar=False, compress=True, tamper=None):
    """An OCI image layout (a directory, or a tar of one) with gzip layers by default."""
    config = config_for(layers) if config is None else config
    cfg = json.dumps(config).encode()
    blobs = {_sha(cfg): cfg}
    descs = []
    for l in layers:
        blob = gzip.compress(l, mtime=0) if compress else l
        blobs[_sha(blob)] = blob
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
                      "digest": "sha256:" + _sha(blob), "size": len(blob)})
    if tamper == "blob":                                  # the last layer's blob, after a good one
        last = descs[-1]["digest"].split(":")[1]
        blobs[last] = blobs[last][:-1] + bytes([blobs[last][-1] ^ 1])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + _sha(cfg), "size": len(cfg)},
                           "layers": descs}).encode()
    blobs[_sha(manifest)] = manifest
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": "sha256:" + _sha(manifest), "size": len(manifest),
                                                "platform": {"architecture": "amd64", "os": "linux"}}]}
    members = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode()}
    members.update({f"blobs/sha256/{h}": b for h, b in blobs.items()})
    if as_tar:
        write_tar(path, members)
    else:
        for name, data in members.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)


def write_tar(path, members):
    """A tar of `members` (name -> bytes), in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
