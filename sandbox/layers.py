"""Unpacking one image layer (a tar stream) into a directory, safely.

Layer tarballs are untrusted input.  Nothing is ever written outside the
layer's directory: every path is resolved component by component from a
directory descriptor with O_NOFOLLOW, so neither `..`, nor an absolute name,
nor a symlink created by an earlier entry can redirect a write.  Rejected with
a clear error: escaping names, names with NUL bytes, entries that pass
through a symlink, hard links to anything not already extracted in this layer,
duplicate entries, sparse files, mtimes out of range, layers over the size or
entry cap, and truncated or damaged tar streams (a header cut short or with a
bad checksum ends Python's tarfile silently; here it is an error).

The size cap (SANDBOX_MAX_LAYER_BYTES) counts what the layer costs on disk,
not only file contents: every entry costs ENTRY_COST (an inode and, for a
directory or a long symlink, a block) plus its data (file contents, link
target).  A layer of empty directories and long symlinks is not free.  The
entry cap (SANDBOX_MAX_LAYER_ENTRIES) bounds the inodes and the memory an
import uses.  Neutralised: device nodes (dropped:
the sandbox brings its own /dev), setuid/setgid bits (cleared), ownership (all
files belong to the importing user; inside they belong to the sandbox user).

The tar's ownership is not lost: every entry the tar gives to someone other than 0:0 is
recorded (`owners`, kept in the store as owners/<diff_id>), and a run with `user: {map:
subordinate}` gets a copy of the layer that carries it (idlayers.py).  Hard links are not
recorded (they share their target's inode, and its owner); whiteouts and dropped devices
neither.

OCI whiteouts are converted to what kernel overlayfs reads in a user
namespace (`userxattr`), which fuse-overlayfs reads too:
  .wh.NAME      -> a character device 0/0 named NAME (unprivileged mknod may make this one)
  .wh..wh..opq  -> xattrs user.overlay.opaque=y (kernel) and user.fuseoverlayfs.opaque=y (FUSE)
"""
import errno
import hashlib
import os
import stat
import tarfile

from .errors import SandboxError, shorten
from .idtree import O_DIR, open_dir

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LAYER_BYTES = 16 << 30          # default of SANDBOX_MAX_LAYER_BYTES
MAX_LAYER_ENTRIES = 1_000_000       # default of SANDBOX_MAX_LAYER_ENTRIES
ENTRY_COST = 4096                   # what an entry costs before its data: an inode, a directory's block
MAX_HEADER_BYTES = 1 << 20          # a PAX or GNU long-name header is read whole into memory: bound it
MAX_MTIME = 1 << 40                 # seconds; beyond (or inf, nan) no filesystem stores it


class LayerError(SandboxError):
    """A layer tarball that cannot be accepted."""


def limits():
    """(bytes, entries) a layer may cost, from SANDBOX_MAX_LAYER_BYTES and _ENTRIES; None = no cap."""
    from .units import UNLIMITED, parse_size
    out = []
    for var, default, forms in (("SANDBOX_MAX_LAYER_BYTES", MAX_LAYER_BYTES, "a size (16G, 1048576 or unlimited)"),
                                ("SANDBOX_MAX_LAYER_ENTRIES", MAX_LAYER_ENTRIES, "a count (1000000 or unlimited)")):
        text = os.environ.get(var, "")
        try:
            if not text:
                out.append(default)
            elif text.strip().lower() in UNLIMITED:
                out.append(None)
            elif var.endswith("_BYTES"):
                out.append(parse_size(text))
            elif text.isascii() and text.isdigit():
                out.append(int(text))
            else:
                raise ValueError
        except (ValueError, OverflowError):
            raise LayerError(f"{var}={shorten(text, 40)} is not {forms.split(' (')[0]}", "environment",
                             f"set {var} to {forms}, or unset it for the default") from None
    return tuple(out)


class StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive silently at a header that is cut short, empty or has a bad
    checksum (anywhere but at the start), so a truncated layer would import with files
    missing.  Here each of those is an error; only the zero block that ends a tar ends it."""

    @classmethod
    def fromtarfile(cls, tarfile_):
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise                                            # the end-of-archive block: a proper end
        except tarfile.EmptyHeaderError:
            raise tarfile.ReadError(f"the archive ends at byte {tarfile_.offset} without its end-of-archive "
                                    "block: it is truncated") from None
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as e:
            raise tarfile.ReadError(f"the header at byte {tarfile_.offset} is damaged or cut short ({e}): "
                                    "the archive is truncated or damaged") from None

    # Extended headers are read into memory whole; a huge one is hostile, not a long name.
    def _proc_pax(self, tarfile_):
        self._bound_header()
        return super()._proc_pax(tarfile_)

    def _proc_gnulong(self, tarfile_):
        self._bound_header()
        return super()._proc_gnulong(tarfile_)

    def _bound_header(self):
        if self.size > MAX_HEADER_BYTES:
            raise tarfile.ReadError(f"an extended header of {self.size} bytes (more than {MAX_HEADER_BYTES})")


class HashingReader:
    """A read-only file object that hashes what passes through it (a layer's diff_id, a blob's digest)."""

    def __init__(self, raw):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self):
        while self.read(1 << 20):
            pass


def _clean(name, where):
    """The entry's path as components, or LayerError if it would leave the layer."""
    if "\0" in name:
        raise LayerError(f"entry {shorten(name)} contains a NUL byte", where, "the image is malformed or hostile; do not use it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/"):
        raise LayerError(f"entry {shorten(name)} has an absolute path", where, "the image is malformed or hostile; do not use it")
    if ".." in parts:
        raise LayerError(f"entry {shorten(name)} climbs out with '..'", where, "the image is malformed or hostile; do not use it")
    return parts


class _Tree:
    """Directory descriptors inside the layer, opened without following symlinks."""

    def __init__(self, root, where):
        self.root_fd = os.open(root, O_DIR)
        self.where = where

    def parent(self, parts, name):
        """An fd of the directory that holds parts[-1], creating directories on the way."""
        try:
            return open_dir(self.root_fd, parts[:-1], make=True)      # directories the tar never listed: made
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(f"entry {shorten(name)} goes through a symlink or a file ({shorten(e.filename)})",
                                 self.where, "the image is malformed or hostile; do not use it") from None
            raise

    def close(self):
        os.close(self.root_fd)


def _remove(dfd, name):
    """Remove the entry of this layer that a whiteout names, if any (a file only)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise LayerError(f"whiteout of {shorten(name)} after it was added in the same layer", "layer",
                         "the image is malformed; do not use it")
    os.unlink(name, dir_fd=dfd)


def extract(stream, dest, where, caps, owners=None):
    """Unpack the tar `stream` into the empty directory `dest`, within `caps`
    ((bytes, entries), from limits()).  Returns (sha256 hex of the uncompressed
    tar, its size, a summary dict).  `owners`, a list: (path, uid, gid) of every
    entry the tar does not give to 0:0 is appended to it."""
    max_bytes, max_entries = caps
    h = HashingReader(stream)
    tree = _Tree(dest, where)
    seen, dir_modes, cost, entries = {}, {}, 0, 0
    summary = {"files": 0, "dropped_devices": 0, "cleared_setuid": 0, "whiteouts": 0, "opaque": 0}
    try:
        with tarfile.open(fileobj=h, mode="r|", tarinfo=StrictTarInfo) as tar:
            while (m := tar.next()) is not None:
                tar.members.clear()                          # a stream needs no index: memory stays flat
                entries += 1
                if max_entries is not None and entries > max_entries:
                    raise LayerError(f"the layer has more than {max_entries} entries (at {shorten(m.name)})", where,
                                     "raise SANDBOX_MAX_LAYER_ENTRIES if the image is trusted and really that large")
                cost += ENTRY_COST + (m.size if m.isfile() else len(m.linkname))
                if max_bytes is not None and cost > max_bytes:
                    raise LayerError(f"the layer unpacks to more than {max_bytes} bytes (at {shorten(m.name)}; each entry "
                                     f"counts {ENTRY_COST} bytes besides its data)", where,
                                     "raise SANDBOX_MAX_LAYER_BYTES if the image is trusted and really that large")
                parts = _clean(m.name, where)
                if not parts:
                    continue                                 # "./" itself
                key = "/".join(parts)
                base = parts[-1]
                if base.startswith(WHITEOUT) and not m.isdir():
                    parts = parts[:-1] + [base[len(WHITEOUT):]] if base != OPAQUE else parts
                    key = "/".join(parts) + ("/" + OPAQUE if base == OPAQUE else "")
                if key in seen and not (m.isdir() and seen[key] == "dir"):
                    raise LayerError(f"entry {shorten(m.name)} appears twice", where, "the image is malformed; do not use it")
                seen[key] = "dir" if m.isdir() else "other"
                if m.issparse():
                    raise LayerError(f"entry {shorten(m.name)} is a sparse file", where,
                                     "sparse files are not accepted in layers; rebuild the image without them")
                if "\0" in m.linkname:
                    raise LayerError(f"entry {shorten(m.name)} links to a name with a NUL byte", where,
                                     "the image is malformed or hostile; do not use it")
                if m.isfile() and not -MAX_MTIME < m.mtime < MAX_MTIME:           # also false for nan
                    raise LayerError(f"entry {shorten(m.name)} has an mtime out of range ({m.mtime!r})", where,
                                     "the image is malformed; do not use it")
                try:
                    dfd = tree.parent(parts, m.name)
                    try:
                        _entry(tar, m, base, parts[-1], dfd, tree, dir_modes, summary, where)
                    finally:
                        os.close(dfd)
                    if owners is not None and (m.uid, m.gid) != (0, 0) and not base.startswith(WHITEOUT) \
                            and (m.isdir() or m.isfile() or m.issym() or m.isfifo()):
                        owners.append((key, m.uid, m.gid))
                except OSError as e:
                    raise LayerError(f"entry {shorten(m.name)} cannot be unpacked: {e.strerror or e}", where,
                                     "the image is malformed, or the store's filesystem refused it "
                                     "(full? names too long?)") from None
            h.drain()                                        # the tar's zero blocks count in the digest
        # directory modes last: an early read-only directory would refuse its own entries
        for path, mode in sorted(dir_modes.items(), key=lambda kv: -kv[0].count("/")):
            os.chmod(os.path.join(dest, path), mode)
    except tarfile.TarError as e:
        raise LayerError(f"not a valid tar stream: {e}", where, "check the file; the image may be truncated") from None
    finally:
        tree.close()
    summary["entries"], summary["cost"] = entries, cost
    if owners is not None:
        summary["owned"] = len(owners)
    return h.sha.hexdigest(), h.size, summary


def _entry(tar, m, base, name, dfd, tree, dir_modes, summary, where):
    mode = m.mode & 0o7777
    if mode & (stat.S_ISUID | stat.S_ISGID) and not m.isdir():
        mode &= ~(stat.S_ISUID | stat.S_ISGID)               # never a setuid file from an image
        summary["cleared_setuid"] += 1
    rel = "/".join(_clean(m.name, where))
    if base == OPAQUE:
        for attr in ("user.overlay.opaque", "user.fuseoverlayfs.opaque"):
            os.setxattr(dfd, attr, b"y")
        summary["opaque"] += 1
    elif base.startswith(WHITEOUT):
        _remove(dfd, name)
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dfd)
        summary["whiteouts"] += 1
    elif m.isdir():
        try:
            os.mkdir(name, 0o700, dir_fd=dfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"entry {shorten(m.name)} is a directory over a file", where,
                                 "the image is malformed; do not use it") from None
        dir_modes[rel] = mode & 0o1777                       # applied at the end
    elif m.isfile():
        src = tar.extractfile(m)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            remaining = m.size
            while remaining:
                chunk = src.read(min(remaining, 1 << 20))
                if not chunk:
                    raise LayerError(f"entry {shorten(m.name)} is truncated", where, "the image file is damaged")
                os.write(fd, chunk)
                remaining -= len(chunk)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
        summary["files"] += 1
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=dfd)
    elif m.islnk():
        target = _clean(m.linkname, where)
        if not target:
            raise LayerError(f"hard link {shorten(m.name)} has no target", where, "the image is malformed")
        tfd = tree.parent(target, m.linkname)
        try:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise LayerError(f"hard link {shorten(m.name)} points at {shorten(m.linkname)}, which is not a file of this layer",
                                 where, "the image is malformed or hostile; do not use it")
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"hard link {shorten(m.name)} points at {shorten(m.linkname)}, outside this layer or not yet extracted",
                             where, "the image is malformed or hostile; do not use it") from None
        finally:
            os.close(tfd)
    elif m.isfifo():
        os.mkfifo(name, mode & 0o777, dir_fd=dfd)
    elif m.ischr() or m.isblk():
        summary["dropped_devices"] += 1                     # the sandbox mounts its own /dev
    else:
        raise LayerError(f"entry {shorten(m.name)} has an unsupported type {m.type!r}", where, "the image is malformed")
