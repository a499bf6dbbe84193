"""additional_files: a client's zip, unpacked into a fresh directory without trusting it.

The zip is hostile input read on the host, outside any sandbox, so nothing in
it decides where a byte is written: names that are absolute, climb with '..',
hold a NUL or a backslash, or repeat are refused; symlinks and other special
entries are refused (a symlink could point a later entry, or a bind, at the
host); sizes are counted while writing, not taken from the zip's own headers
(a zip bomb lies there); every file is created with O_EXCL|O_NOFOLLOW under a
directory we just made.  Any refusal names the entry and nothing is kept.
"""
import io
import os
import shutil
import stat
import zipfile

MAX_ENTRIES = 1000


class Refused(Exception):
    pass


def _check_name(name, seen):
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        raise Refused(f"entry {name!r}: only relative names with '/' are allowed")
    parts = [p for p in name.rstrip("/").split("/")]
    if any(p in ("", ".", "..") for p in parts):
        raise Refused(f"entry {name!r} climbs out of its directory (or has an empty component)")
    key = "/".join(parts)
    if key in seen:
        raise Refused(f"entry {name!r} appears twice")
    seen.add(key)
    return parts


def extract(data, dest, max_bytes, reserved=()):
    """Unpack `data` (zip bytes) into the new directory `dest`.  Returns (files, tops):
    the relative paths of the regular files, and the top-level names.  Raises Refused."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise Refused(f"not a zip archive: {e}") from None
    if len(infos) > MAX_ENTRIES:
        raise Refused(f"{len(infos)} entries, more than {MAX_ENTRIES}")
    os.mkdir(dest, 0o755)
    files, tops, seen, total = [], set(), set(), 0
    try:
        for info in infos:
            parts = _check_name(info.filename, seen)
            if parts[0] in reserved:
                raise Refused(f"entry {info.filename!r} would replace the submission's own {parts[0]}")
            kind = stat.S_IFMT(info.external_attr >> 16)     # 0: a zip made without Unix modes
            is_dir = info.is_dir()
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise Refused(f"entry {info.filename!r} is not a regular file or directory (symlinks are refused)")
            tops.add(parts[0])
            dfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                for comp in (parts if is_dir else parts[:-1]):
                    try:
                        os.mkdir(comp, 0o755, dir_fd=dfd)
                    except FileExistsError:
                        pass
                    nxt = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                    os.close(dfd)
                    dfd = nxt
                if is_dir:
                    continue
                try:
                    fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
                except FileExistsError:
                    raise Refused(f"entry {info.filename!r} clashes with a directory of the same name") from None
                with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise Refused(f"unpacks to more than {max_bytes} bytes (max_extract_size)")
                        out.write(chunk)
                files.append("/".join(parts))
            finally:
                os.close(dfd)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise Refused(f"cannot unpack: {e}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return files, sorted(tops)
