"""Files in and out of a run, for judges.

In: each file is bound read-only where the caller says (bytes are written to
a private temporary file first), so a compiled artifact is shared by every
test case without a copy.  Out: the run's working directory is then a private
host directory bound read-write; after the run the files asked for are read
from it without following symlinks (the program controls that directory) and
within a size cap, each failure reported on its own.
"""
import os
import stat
import tempfile

from .errors import UsageError

DEFAULT_OUT_MAX = 64 << 20


def bind(src, dst, rw=False):
    """A bind of a host path, in the form profile.parse_bind gives."""
    return {"src": src, "dst": dst, "rw": rw, "optional": False}


class Workdir:
    """A private host directory: the run's working directory, read-write."""

    def __init__(self):
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None     # tmpfs: charged to the run's cgroup
        self.path = tempfile.mkdtemp(prefix="sandbox-work-", dir=base)
        os.chmod(self.path, 0o755)

    def bind(self, inside):
        return bind(self.path, inside, rw=True)

    def remove(self):
        import shutil
        shutil.rmtree(self.path, ignore_errors=True)       # does not follow the program's symlinks


def _readable_file(path, content):
    """Write an input file readable by whichever user the sandbox runs as (an image may set another)."""
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o644)


def inputs(files_in, scratch, workdir=None, cwd=None):
    """{path inside: bytes or host path} -> read-only binds (bytes go to files in
    `scratch`).  With a working directory, the files that belong in it are
    copied there instead (a bind cannot make its mount point in a host directory)."""
    binds = []
    for i, (inside, content) in enumerate(sorted((files_in or {}).items())):
        if not inside.startswith("/"):
            raise UsageError(f"{inside!r} is not an absolute path inside the sandbox", "files_in",
                             "name where the file goes, e.g. /box/input.txt")
        in_workdir = workdir is not None and inside.startswith(cwd.rstrip("/") + "/")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            host = os.path.abspath(content)
            try:
                with open(host, "rb") as f:
                    content = f.read() if in_workdir else None
            except OSError as e:
                raise UsageError(f"{host} (for {inside}) cannot be read: {e.strerror}", "files_in",
                                 "give an existing, readable file, or the bytes themselves") from None
            if content is None:
                binds.append(bind(host, inside))
                continue
        if in_workdir:
            rel = inside[len(cwd.rstrip("/")) + 1:]
            if ".." in rel.split("/"):
                raise UsageError(f"{inside!r} climbs out with '..'", "files_in", "name a path below the directory")
            host = os.path.join(workdir.path, rel)
            os.makedirs(os.path.dirname(host), exist_ok=True)
            _readable_file(host, content)
            continue
        host = os.path.join(scratch, f"in-{i}")
        _readable_file(host, content)
        binds.append(bind(host, inside))
    return binds


def outputs(workdir, inside_cwd, names, max_bytes=DEFAULT_OUT_MAX):
    """Read the files a run left in its working directory: ({name: bytes}, [{name, error}])."""
    got, errors = {}, []
    for name in names:
        rel = name[len(inside_cwd):].lstrip("/") if name.startswith(inside_cwd.rstrip("/") + "/") else name
        if rel.startswith("/") or ".." in rel.split("/") or not rel:
            errors.append({"name": name, "error": f"only files under the working directory {inside_cwd} can be "
                                                  "copied out"})
            continue
        try:
            data = _read_nofollow(workdir.path, rel, max_bytes)
        except _Refused as e:
            errors.append({"name": name, "error": str(e)})
            continue
        got[name] = data
    return got, errors


class _Refused(Exception):
    pass


def _read_nofollow(root, rel, max_bytes):
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dfd = os.open(root, flags | os.O_DIRECTORY)
    try:
        parts = rel.split("/")
        for comp in parts[:-1]:
            try:
                nxt = os.open(comp, flags | os.O_DIRECTORY, dir_fd=dfd)
            except OSError:
                raise _Refused(f"{'/'.join(parts[:-1])} is not a directory of the run (or is a symlink)") from None
            os.close(dfd)
            dfd = nxt
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            raise _Refused("the run did not leave this file") from None
        except OSError as e:
            raise _Refused(f"cannot open it: {e.strerror} (a symlink is never followed)") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Refused("not a regular file")
            if st.st_size > max_bytes:
                raise _Refused(f"{st.st_size} bytes, more than the cap of {max_bytes}")
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise _Refused(f"more than the cap of {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
