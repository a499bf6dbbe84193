"""Files in and out of a run, for judges.

In: each file is bound read-only where the caller says (bytes are written to
a private temporary file first), so a compiled artifact is shared by every
test case without a copy.  Out: the run's working directory is a tmpfs of the
sandbox, capped like the profile's tmpfs there; the launcher hands it to the
runner as a directory descriptor (launcher.c, keepdir), and after the run the
files asked for are read from it without following symlinks (the program
controls that directory) and within a size cap, each failure reported on its
own.  Closing the descriptor frees the tmpfs: nothing of it is ever on the
host, whatever the program did to the modes.
"""
import os
import stat

from .errors import UsageError

DEFAULT_OUT_MAX = 64 << 20


def bind(src, dst, rw=False):
    """A bind of a host path, in the form profile.parse_bind gives."""
    return {"src": src, "dst": dst, "rw": rw, "optional": False}


def _readable_file(path, content):
    """Write an input file readable by whichever user the sandbox runs as (an image may set another)."""
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o644)


def inputs(files_in, scratch, workdir=None):
    """{path inside: bytes or host path} -> (read-only binds, copies): bytes go to files
    in `scratch`; the files that belong in a kept working directory `workdir` are
    copied into its tmpfs by the launcher (a bind there would hide them from the
    read-back, and the program may rewrite them), the rest are bound."""
    binds, copies = [], []
    for i, (inside, content) in enumerate(sorted((files_in or {}).items())):
        if not inside.startswith("/"):
            raise UsageError(f"{inside!r} is not an absolute path inside the sandbox", "files_in",
                             "name where the file goes, e.g. /box/input.txt")
        if ".." in inside.split("/"):
            raise UsageError(f"{inside!r} climbs out with '..'", "files_in", "name a path without '..'")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            host = os.path.abspath(content)
            try:
                with open(host, "rb"):
                    pass
            except OSError as e:
                raise UsageError(f"{host} (for {inside}) cannot be read: {e.strerror}", "files_in",
                                 "give an existing, readable file, or the bytes themselves") from None
        else:
            host = os.path.join(scratch, f"in-{i}")
            _readable_file(host, content)
        if workdir is not None and inside.startswith(workdir.rstrip("/") + "/"):
            copies.append((host, inside))
        else:
            binds.append(bind(host, inside))
    return binds, copies


def outputs(workdir_fd, inside_cwd, names, max_bytes=DEFAULT_OUT_MAX):
    """Read the files a run left in its working directory (a directory descriptor, or
    None when the run never got that far): ({name: bytes}, [{name, error}])."""
    got, errors = {}, []
    for name in names:
        rel = name[len(inside_cwd):].lstrip("/") if name.startswith(inside_cwd.rstrip("/") + "/") else name
        if rel.startswith("/") or ".." in rel.split("/") or not rel:
            errors.append({"name": name, "error": f"only files under the working directory {inside_cwd} can be "
                                                  "copied out"})
            continue
        if workdir_fd is None:
            errors.append({"name": name, "error": "the run ended before its working directory existed"})
            continue
        try:
            data = _read_nofollow(workdir_fd, rel, max_bytes)
        except _Refused as e:
            errors.append({"name": name, "error": str(e)})
            continue
        got[name] = data
    return got, errors


class _Refused(Exception):
    pass


def _read_nofollow(root_fd, rel, max_bytes):
    """Every failure is a _Refused: the program made the tree (modes, types, sizes)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    parts = rel.split("/")
    dfd = root_fd
    try:
        for comp in parts[:-1]:
            try:
                nxt = os.open(comp, flags | os.O_DIRECTORY, dir_fd=dfd)
            except OSError as e:
                raise _Refused(f"{'/'.join(parts[:-1])} is not a directory of the run (or is a symlink, or "
                               f"unreadable: {e.strerror})") from None
            if dfd != root_fd:
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
                try:
                    chunk = os.read(fd, 1 << 20)
                except OSError as e:
                    raise _Refused(f"cannot read it: {e.strerror}") from None
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
        if dfd != root_fd:
            os.close(dfd)
