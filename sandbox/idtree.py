"""The program that touches trees owned by subordinate ids: run by idhelper.py as uid 0 of a
user namespace with the caller's subordinate mapping (`python3 -I -S idtree.py COMMAND ...`),
where it may chown to those ids and read, write and remove what they own.  It imports nothing
but the standard library: it runs without the package, from a read-only bind.

  copy SRC DST OWNERS MAXUID MAXGID   DST (new) := a copy of the flattened layer SRC whose
                                      entries carry the ownership OWNERS records (the tar's)
  rm PATH...                          remove trees (fd-based: no symlink is ever followed)
  walk UPPER                          list a kept upper layer for `sandbox diff` (on stdout)

Its input is untrusted (the layer's names, links and modes): every path is walked component by
component from a directory descriptor with O_NOFOLLOW, entries are created with O_EXCL and
O_NOFOLLOW, and ownership is set with fchown or fchownat(AT_SYMLINK_NOFOLLOW) only, so a
symlink planted by a layer is chowned itself, never what it points to.  Besides, the helper's
mount namespace holds only the directories it works on (idhelper.py).

OWNERS: records `UID GID PATH\\0` (PATH relative to the layer root), written at import for
every entry the tar does not give to 0:0; a hard link takes its target's owner.  Ids above
MAXUID/MAXGID (what the mapping covers) become 65534, the overflow id (nobody/nogroup) the
kernel shows for an id a namespace does not map, when the mapping covers 65534; else the copy
fails with the entry's name.
"""
import os
import stat
import sys

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OVERFLOW_ID = 65534


class Refused(Exception):
    pass


def open_dir(root_fd, parts, make=False):
    """A descriptor of root/parts, no component followed if it is a symlink (ELOOP); `make`:
    a missing directory is made (0755)."""
    fd = os.dup(root_fd)
    try:
        for p in parts:
            try:
                nxt = os.open(p, O_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not make:
                    raise
                os.mkdir(p, 0o755, dir_fd=fd)
                nxt = os.open(p, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_owners(path):
    owners = {}
    with open(path, "rb") as f:
        data = f.read()
    for rec in data.split(b"\0"):
        if rec:
            uid, gid, name = rec.split(b" ", 2)
            owners[os.fsdecode(name)] = (int(uid), int(gid))
    return owners


def _ids(owner, rel, max_uid, max_gid, counts):
    out = []
    for value, top, kind in ((owner[0], max_uid, "uid"), (owner[1], max_gid, "gid")):
        if value > top:
            if OVERFLOW_ID > top:
                raise Refused(f"entry {rel} is owned by {kind} {value}, outside the ids this mapping covers "
                              f"(0-{top}), and so is the overflow id {OVERFLOW_ID}")
            counts["overflow"] += 1
            value = OVERFLOW_ID
        out.append(value)
    return out


def _copy_data(src, dst):
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError:
            n = None
        if n is None:                                    # another filesystem, an old kernel: read/write
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
            return
        if n == 0:
            return


def copy(src, dst, owners_path, max_uid, max_gid):
    owners = read_owners(owners_path)
    counts = {"entries": 0, "chowned": 0, "overflow": 0}
    os.mkdir(dst, 0o700)
    src_root, dst_root = os.open(src, O_DIR), os.open(dst, O_DIR)
    links, dir_modes, stack = {}, [((), stat.S_IMODE(os.fstat(src_root).st_mode))], [()]
    try:
        while stack:
            parts = stack.pop()
            sfd, dfd = open_dir(src_root, parts), open_dir(dst_root, parts)
            try:
                for attr in os.listxattr(sfd):                # the opaque markers of overlayfs
                    if attr.startswith("user."):
                        os.setxattr(dfd, attr, os.getxattr(sfd, attr))
                with os.scandir(sfd) as it:
                    names = sorted(e.name for e in it)
                for name in names:
                    counts["entries"] += 1
                    rel = "/".join(parts + (name,))
                    owner = owners.get(rel)
                    ids = _ids(owner, rel, max_uid, max_gid, counts) if owner else None
                    _entry(sfd, dfd, name, parts, rel, ids, links, dir_modes, stack, dst_root)
                    counts["chowned"] += ids is not None
            finally:
                os.close(sfd)
                os.close(dfd)
        for parts, mode in sorted(dir_modes, key=lambda pm: -len(pm[0])):   # deepest first, at the end
            fd = open_dir(dst_root, parts)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
    finally:
        os.close(src_root)
        os.close(dst_root)
    return counts


def _entry(sfd, dfd, name, parts, rel, ids, links, dir_modes, stack, dst_root):
    st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dfd)
        dir_modes.append((parts + (name,), mode))
        stack.append(parts + (name,))
    elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and st.st_ino in links:
        first_parts, first_name = links[st.st_ino]
        ffd = open_dir(dst_root, first_parts)
        try:
            os.link(first_name, name, src_dir_fd=ffd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(ffd)
    elif stat.S_ISREG(st.st_mode):
        i = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            o = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                _copy_data(i, o)
                if ids:
                    os.fchown(o, *ids)                   # before the mode: chown clears setuid bits
                    ids = None
                os.fchmod(o, mode)
                os.utime(o, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(o)
        finally:
            os.close(i)
        if st.st_nlink > 1:
            links[st.st_ino] = (parts, name)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        os.mknod(name, stat.S_IFCHR, 0, dir_fd=dfd)     # a whiteout
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(name, mode, dir_fd=dfd)
    else:
        raise Refused(f"entry {rel} is of a kind a layer does not hold ({stat.filemode(st.st_mode)})")
    if ids:
        os.chown(name, *ids, dir_fd=dfd, follow_symlinks=False)      # fchownat(AT_SYMLINK_NOFOLLOW)


def remove(paths):
    import shutil
    for p in paths:
        if os.path.lexists(p):
            shutil.rmtree(p)            # fd-based on Linux: never follows a symlink


def walk(upper, out):
    """Every entry of a kept upper layer as (kind, path): W a whiteout, E a file or symlink,
    D a directory, O an opaque directory (written by kernel overlayfs or fuse-overlayfs)."""
    markers = (".wh..wh..opq", ".wh..opq")
    root = os.open(upper, O_DIR)
    stack = [()]
    try:
        while stack:
            parts = stack.pop()
            fd = open_dir(root, parts)
            try:
                with os.scandir(fd) as it:
                    entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
                for name, is_dir in entries:
                    rel = "/" + "/".join(parts + (name,))
                    if is_dir:
                        sub = os.open(name, O_DIR, dir_fd=fd)
                        try:
                            opaque = _opaque(sub) or any(_exists(sub, m) for m in markers)
                        finally:
                            os.close(sub)
                        out(("O" if opaque else "D", rel))
                        stack.append(parts + (name,))
                        continue
                    if name in markers:
                        continue
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if name.startswith(".wh."):
                        out(("W", "/" + "/".join(parts + (name[4:],))))    # fuse-overlayfs's whiteout form
                    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        out(("W", rel))                                    # kernel overlayfs's
                    else:
                        out(("E", rel))
            finally:
                os.close(fd)
    finally:
        os.close(root)


def _opaque(fd):
    try:
        return os.getxattr(fd, "user.overlay.opaque") == b"y"
    except OSError:
        return False


def _exists(fd, name):
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def main(argv):
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "copy":
            src, dst, owners, max_uid, max_gid = args
            counts = copy(src, dst, owners, int(max_uid), int(max_gid))
            sys.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
        elif cmd == "rm":
            remove(args)
        elif cmd == "walk":
            write = sys.stdout.buffer.write
            walk(args[0], lambda rec: write(rec[0].encode() + os.fsencode(rec[1]) + b"\0"))
        else:
            raise Refused(f"unknown command {cmd}")
    except (Refused, OSError, RecursionError) as e:
        sys.stderr.write(f"{e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
