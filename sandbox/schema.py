"""The profile schema: every key a profile may hold, with its type, its default
and what it means, in one table (KEYS), as nsjail's config.proto is for nsjail.

The table is the one source of:
- validation (SCHEMA, the nested mapping of checks that profile.py applies to
  each file of an `extends` chain);
- the defaults the modules building a plan use where a profile says nothing
  (DEFAULTS, each one the checked, normalised value of what the table shows);
- the reference: `sandbox profiles keys`, and the README's profile reference,
  which is this module's `--markdown` output (a test compares the two):

    python3 -m sandbox.schema --markdown

Each check takes (value, where) and returns the normalised value or raises
ProfileError naming the key path and the fix.  Nothing here imports re or
PyYAML: a run whose profile is cached still checks command-line limits here.
"""
import os

from .configfiles import unknown_keys
from .errors import ProfileError, shorten
from .units import parse_duration, parse_size


def _fail(where, what, fix):
    raise ProfileError(what, where, fix)


def _show(v):
    """A value quoted in a message: bounded, whatever its size."""
    return shorten(v, 60)


def _str(v, where):
    if not isinstance(v, str):
        _fail(where, f"expected a string, got {type(v).__name__} {_show(v)}", "quote the value")
    if "\0" in v:
        _fail(where, f"{_show(v)} contains a NUL character, which no path, name or argument can hold", "remove it")
    try:
        v.encode("utf-8", "surrogateescape")   # a host path's non-UTF-8 bytes (\udc80-\udcff) are fine
    except UnicodeEncodeError:
        _fail(where, f"{_show(v)} contains a lone surrogate (a half of a UTF-16 pair), which is not text",
              "write the character itself, or a \\U escape of a real code point")
    return v


PATH_MAX, NAME_MAX = 4096, 255


def abs_path(v, where):
    v = _str(v, where)
    if not v.startswith("/"):
        _fail(where, f"{_show(v)} is a relative path; an absolute path is needed here",
              f"write it from the root, e.g. /{v.lstrip('./')[:60]}")
    norm = "/" + os.path.normpath(v).lstrip("/")
    encoded = os.fsencode(norm)
    if len(encoded) >= PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        _fail(where, f"{_show(v)} is longer than the kernel takes ({PATH_MAX - 1} bytes, {NAME_MAX} per name)",
              "use a shorter path")
    return norm


def _mount_dst(v, where):
    v = abs_path(v, where)
    if v == "/":
        _fail(where, "cannot mount over / itself", "choose a directory below /")
    return v


def _bool(v, where):
    if not isinstance(v, bool):
        _fail(where, f"expected true or false, got {_show(v)}", "write true or false")
    return v


def _int(v, where, minimum=0, maximum=2**31 - 1):
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(where, f"expected a whole number, got {_show(v)}", "write a number such as 64")
    if v < minimum:
        _fail(where, f"{v} is below the minimum {minimum}", f"use at least {minimum}")
    if v > maximum:
        _fail(where, f"{_show(v)} is above the maximum {maximum}", f"use at most {maximum}")
    return v


def _size(v, where):
    try:
        return parse_size(v)
    except ValueError as e:
        _fail(where, str(e), "sizes are bytes with an optional K, M, G, T suffix (binary), at most 4194304T")


def _mount_size(v, where):
    """The size of a tmpfs the sandbox mounts: a real size (tmpfs reads 0 as no limit at all)."""
    n = _size(v, where)
    if n is None or n < 4096:
        _fail(where, f"a tmpfs needs a size of at least 4K, got {_show(v)}", "write a size such as 64M")
    return n


def _duration(v, where):
    try:
        return parse_duration(v)
    except ValueError as e:
        _fail(where, str(e), "durations are seconds, or a number with ms, s, m or h, at most 500h")


def _count(minimum, maximum, why=""):
    def check(v, where):
        if isinstance(v, str):                  # "unlimited", or a number from the command line
            text = v.strip()
            if text.lower() == "unlimited":
                return None
            if text.isascii() and text.isdigit() and len(text) <= 100:  # no '²', no fullwidth digits
                v = int(text)
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool) and v < minimum and why:
            _fail(where, f"{v} is below the minimum {minimum}: {why}", f"use at least {minimum}")
        return _int(v, where, minimum, maximum)
    return check


def _id(v, where):
    if v == "caller":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32 - 1:
        _fail(where, f"{_show(v)} is not a user/group id", "write a number such as 1000, or 'caller'")
    return v


def _choice(*options):
    def check(v, where):
        if not isinstance(v, str) or v not in options:
            _fail(where, f"{_show(v)} is not one of {', '.join(options)}", f"write one of: {', '.join(options)}")
        return v
    return check


def _list_of(item):
    def check(v, where):
        if not isinstance(v, list):
            _fail(where, f"expected a list, got {type(v).__name__}", "write a YAML list ([a, b] or '- a' lines)")
        return [item(x, f"{where}[{i}]") for i, x in enumerate(v)]
    return check


def parse_bind(v, where, base=None):
    """A bind: 'SRC[:DST][:rw|:ro]' or {src, dst, rw, optional}.  `base`, when
    given (the command line), resolves a relative SRC; profiles need absolute."""
    if isinstance(v, str):
        parts = v.split(":")
        mode = None
        if len(parts) > 1 and parts[-1] in ("rw", "ro"):
            mode = parts.pop()
        if len(parts) > 2 or not parts[0]:
            _fail(where, f"{_show(v)} is not SRC[:DST][:rw]", "write e.g. /data or /data:/mnt/data:rw")
        v = {"src": parts[0], "rw": mode == "rw"} | ({"dst": parts[1]} if len(parts) == 2 else {})
    elif not isinstance(v, dict):
        _fail(where, f"expected 'SRC[:DST][:rw]' or a mapping, got {_show(v)}", "write e.g. /data:/mnt/data:rw")
    unknown_keys(v, ("src", "dst", "rw", "optional"), where)
    if "src" not in v:
        _fail(where, "a bind needs 'src'", "add src: /host/path")
    src = v["src"]
    if base is not None and isinstance(src, str) and not src.startswith("/"):
        src = os.path.join(base, src)
    src = abs_path(src, f"{where}.src")
    return {"src": src,
            "dst": _mount_dst(v.get("dst", src), f"{where}.dst"),
            "rw": _bool(v.get("rw", False), f"{where}.rw"),
            "optional": _bool(v.get("optional", False), f"{where}.optional")}


MAX_INODES = 2**32 - 1      # what tmpfs's nr_inodes takes on 64-bit Linux 6.x


def _mode(v, where):
    """A file mode, a quoted octal string ('1777'): YAML reads 0755 unquoted as the number 493."""
    if not isinstance(v, str):
        _fail(where, f"{_show(v)} is not a quoted octal mode (YAML reads 0755 as the number 493)",
              "quote it: mode: '0755'")
    text = v.strip()
    if not (text and len(text) <= 4 and all(c in "01234567" for c in text)):    # int(, 8) takes '٧' and '0o7'
        _fail(where, f"{_show(v)} is not an octal mode", "write e.g. '1777' or '0755'")
    return int(text, 8)


def _inodes(v, where):
    return _int(v, where, minimum=16, maximum=MAX_INODES)


TMPFS_ENTRY = {"size": _mount_size, "mode": _mode, "inodes": _inodes}


def _tmpfs_entry(v, where):
    if v is None:
        return None
    if not isinstance(v, dict):
        v = {"size": v}
    unknown_keys(v, tuple(TMPFS_ENTRY), where)
    return {key: check(v[key], f"{where}.{key}") if key in v else DEFAULTS[f"tmpfs.PATH.{key}"]
            for key, check in TMPFS_ENTRY.items()}


def _env_value(v, where):
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return _str(v, where)


def _mapping(key_check, value_check):
    def check(v, where):
        if not isinstance(v, dict):
            _fail(where, f"expected a mapping, got {type(v).__name__}", "write KEY: VALUE lines")
        out = {}
        for k, x in v.items():
            sub = f"{where}.{k if isinstance(k, str) and len(k) <= 80 else _show(k)}"
            k = key_check(k, sub)
            out[k] = value_check(x, sub)
        return out
    return check


def _env_name(k, where):
    if not isinstance(k, str) or not k or "=" in k:
        _fail(where, f"{_show(k)} is not an environment variable name", "use a name without '='")
    return _str(k, where)


def _fraction(v, where):
    """cpus: CPUs' worth of time per second, 0.01 to 1024 (cpu.max in steps of 1/100,000)."""
    n = None
    if isinstance(v, (int, float)) and not isinstance(v, bool):     # true is not 1 CPU
        n = float(v) if isinstance(v, float) or abs(v) <= 1 << 53 else float("inf")   # float(10**400) raises
    elif isinstance(v, str):
        text = v.strip()
        if text.lower() == "unlimited":
            return None
        if text.isascii() and 0 < len(text) <= 20 and text.count(".") <= 1 and text.strip(".") \
                and all(c in "0123456789." for c in text):
            n = float(text)
    if n is None or not 0.01 <= n <= 1024:                            # nan and inf fail this too
        _fail(where, f"{_show(v)} is not a number of CPUs from 0.01 to 1024",
              "write e.g. 1 or 0.5 (CPUs' worth of time per second)")
    return n


def _hostname(v, where):
    v = _str(v, where)
    size = len(v.encode("utf-8", "surrogateescape"))
    if size > 64 or any(c < " " or c == "\x7f" for c in v):
        _fail(where, f"{_show(v)} is not a hostname the kernel takes "
                     f"({'longer than 64 bytes' if size > 64 else 'it has a control character'})",
              "use at most 64 printable characters, e.g. sandbox")
    return v


def _cpu_range(part):
    first, dash, last = part.strip().partition("-")
    number = lambda x: x.isascii() and x.isdigit() and len(x) <= 5     # noqa: E731
    return number(first) and (not dash or (number(last) and int(last) >= int(first)))


def _cpuset(v, where):
    """cpuset.cpus syntax: a list of CPU numbers and ranges, "0-3,5"."""
    if not all(_cpu_range(part) for part in _str(v, where).split(",")):
        _fail(where, f"{_show(v)} is not a list of CPUs", "write CPU numbers and ranges, e.g. '0-3,5'")
    return v


def _cgroup_parent(v, where):
    """A cgroup v2 directory: absolute under /sys/fs/cgroup, or relative to the cgroup2 mount."""
    parts = _str(v, where).split("/")
    if not v.strip("/") or ".." in parts or "." in parts or \
            (v.startswith("/") and not v.startswith("/sys/fs/cgroup/")):
        _fail(where, f"{_show(v)} is not a cgroup directory",
              "write a path under /sys/fs/cgroup, or one relative to the cgroup2 mount, without '.' or '..' "
              "parts, e.g. /sys/fs/cgroup/judge.service")
    return abs_path(v, where) if v.startswith("/") else abs_path("/" + v, where)[1:]


def _seccomp_ref(v, where):
    """none, a built-in policy name, or a path (relative to the profile file)."""
    if isinstance(v, dict):
        unknown_keys(v, ("policy",), where)
        v = v.get("policy")
    return _str(v, where)


# Limits bounded by what the kernel takes: pids.max below PID_MAX_LIMIT (2^22) with the sandbox's
# init added; RLIMIT_NOFILE at most the kernel's nr_open ceiling, and at least what the sandbox's own
# steps need after the rlimits step (OPEN_FILES_MIN: 3 fails the launcher, measured on Linux 6.x).
MAX_PROCESSES = (1 << 22) - 1
MAX_OPEN_FILES = 2147483584
OPEN_FILES_MIN = 4

# ------------------------------------------------------------------ the table

class Key:
    """One key: its dotted name (PATH stands for any mount point), its check, its
    default as a user would write it (None: none, or `shown` says what happens),
    the type in words and its meaning in one line."""
    __slots__ = ("name", "check", "default", "type", "meaning", "shown")

    def __init__(self, name, check, default, type, meaning, shown=None):
        self.name, self.check, self.default, self.type, self.meaning = name, check, default, type, meaning
        self.shown = shown


_NOT_BELOW_4K = "size, at least 4K"
_LIMIT = "unlimited"
KEYS = (
    Key("description", _str, None, "text", "one line shown by `sandbox profiles`"),
    Key("extends", _str, None, "name or path", "the profile this one builds on: a built-in name, or a path "
        "relative to this file"),
    Key("user.uid", _id, "caller", "id or `caller`", "the user id inside (`caller`: the caller's own id)",
        shown="the image's User, else `caller`"),
    Key("user.gid", _id, "caller", "id or `caller`", "the group id inside (`caller`: the caller's own id)",
        shown="the image's User, else `caller`"),
    Key("user.map", _choice("single", "subordinate"), "single", "`single` or `subordinate`",
        "`single`: only your own id is mapped; `subordinate`: inside 0 is you and 1-65535 your /etc/subuid and "
        "/etc/subgid ranges (newuidmap), and uid 0 inside keeps the file-ownership capabilities, for software "
        "that needs several users (package managers, chown); an image's layers then keep their tar's owners"),
    Key("hostname", _hostname, "sandbox", "at most 64 bytes", "the hostname inside (own UTS namespace)"),
    Key("network", _choice("none", "host"), "none", "`none` or `host`",
        "`none`: a new network namespace with only lo; `host`: the host's"),
    Key("rootfs.binds", _list_of(parse_bind), None, "list of binds", "read-only host paths the root is made of; "
        "a symlink bound onto itself (merged /usr) is recreated as a symlink", shown="[]"),
    Key("rootfs.size", _mount_size, "1M", _NOT_BELOW_4K, "the root tmpfs (mount points only; read-only once "
        "built)"),
    Key("rootfs.image", _str, None, "image name", "an image of the store as the root, instead of rootfs.binds "
        "(see Image roots)"),
    Key("rootfs.overlay", _choice("auto", "kernel", "fuse"), "auto", "`auto`, `kernel` or `fuse`",
        "how an image root is overlaid: kernel overlayfs, fuse-overlayfs, or the first that works"),
    Key("rootfs.writable_size", _mount_size, "256M", _NOT_BELOW_4K, "the throw-away writable layer over an "
        "image root"),
    Key("binds", _list_of(parse_bind), None, "list of binds", "extra host paths: `SRC[:DST][:rw]` or "
        "`{src, dst, rw, optional}`, read-only unless rw", shown="[]"),
    Key("tmpfs", _mapping(_mount_dst, _tmpfs_entry), None, "PATH: SIZE or {size, mode, inodes}",
        "private writable tmpfs mounts (nosuid,nodev); null removes one the parent has", shown="{}"),
    Key("tmpfs.PATH.size", _mount_size, "64M", _NOT_BELOW_4K, "the size of that tmpfs"),
    Key("tmpfs.PATH.mode", _mode, "1777", "quoted octal", "the mode of its root directory"),
    Key("tmpfs.PATH.inodes", _inodes, 16384, "count, 16 to 2^32-1", "files and directories it may hold"),
    Key("shm_size", _mount_size, "16M", _NOT_BELOW_4K, "the size of /dev/shm"),
    Key("cwd", abs_path, None, "absolute path", "the program's working directory",
        shown="the image's WorkingDir, else /"),
    Key("env", _mapping(_env_name, _env_value), None, "NAME: text", "the program's whole environment; null "
        "removes a key the parent sets", shown="{}"),
    Key("limits.cpu_time", _duration, None, "duration", "CPU time of the whole process tree", shown=_LIMIT),
    Key("limits.wall_time", _duration, None, "duration", "time from exec to the end of the run", shown=_LIMIT),
    Key("limits.memory", _size, None, "size", "memory of the whole process tree", shown=_LIMIT),
    Key("limits.address_space", _size, None, "size", "address space per process (RLIMIT_AS)",
        shown="memory + 1G without a cgroup, else unlimited"),
    Key("limits.processes", _count(1, MAX_PROCESSES), None, f"count, 1 to {MAX_PROCESSES}",
        "processes and threads at once", shown=_LIMIT),
    Key("limits.file_size", _size, None, "size", "the largest file a process may write (RLIMIT_FSIZE)",
        shown=_LIMIT),
    Key("limits.open_files", _count(OPEN_FILES_MIN, MAX_OPEN_FILES,
                                    "the sandbox's own last steps and the program's exec need descriptors"),
        None, f"count, {OPEN_FILES_MIN} to {MAX_OPEN_FILES}", "open descriptors per process (RLIMIT_NOFILE)",
        shown=_LIMIT),
    Key("limits.stack", _size, None, "size", "stack per process (RLIMIT_STACK)", shown=_LIMIT),
    Key("limits.output", _size, None, "size", "bytes the program may write to stdout and stderr together", shown=_LIMIT),
    Key("limits.cpus", _fraction, None, "CPUs, 0.01 to 1024", "CPUs' worth of time per second (needs a cgroup: "
        "cpu.max)", shown=_LIMIT),
    Key("require_cgroup", _bool, False, "true or false", "refuse to run without a delegated cgroup v2"),
    Key("cgroup_parent", _cgroup_parent, None, "cgroup directory", "the cgroup under which runs get theirs: "
        "under /sys/fs/cgroup, or relative to the cgroup2 mount, without `.` or `..` parts", shown="the runner's own cgroup, if delegated"),
    Key("cpuset", _cpuset, None, "CPU list", "the CPUs the run may use (cpuset.cpus), e.g. `\"0-3,5\"`",
        shown="all"),
    Key("script.interpreter", _list_of(_str), None, "list of text", "the argv before SCRIPT in `sandbox run "
        "--profile P SCRIPT` (`{script}` places it); [] runs the script itself", shown="[]"),
    Key("script.dir", _mount_dst, "/box", "absolute path", "where SCRIPT is bound read-only"),
    Key("seccomp", _seccomp_ref, "none", "policy", "a built-in seccomp policy, a path relative to this file, "
        "or none (the base layer alone)"),
)


def _nest(keys):
    """The checks as the nested mapping validation walks ({"limits": {"memory": check}}).
    Keys under a PATH are checked by their parent's check (tmpfs's), not walked."""
    schema = {}
    for key in keys:
        *sections, last = key.name.split(".")
        if "PATH" in sections:
            continue
        level = schema
        for section in sections:
            level = level.setdefault(section, {})
        level[last] = key.check
    return schema


SCHEMA = _nest(KEYS)
# The defaults, normalised by their own checks: a default is held to the rules a profile is.
DEFAULTS = {key.name: key.check(key.default, f"the default of {key.name}") for key in KEYS if key.default is not None}


# ------------------------------------------------------------------ the reference

def _default_text(key):
    """The default as a user writes it (a value), or `shown` (words)."""
    if key.shown is not None:
        return key.shown
    if key.default is None:
        return ""
    if isinstance(key.default, bool):
        return "`true`" if key.default else "`false`"
    return f"`'{key.default}'`" if key.check is _mode else f"`{key.default}`"


def reference():
    """(key, type, default, meaning) rows, in the table's order."""
    return [(key.name, key.type, _default_text(key), key.meaning) for key in KEYS]


# Where the README holds markdown()'s output (tests/test_schema.py holds the two equal).
BEGIN = "<!-- profile keys: the output of python3 -m sandbox.schema --markdown; do not edit by hand -->"
END = "<!-- end of profile keys -->"


def markdown():
    """The README's profile reference."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {default} | {meaning} |" for name, kind, default, meaning in reference()]
    return "\n".join(lines) + "\n"


def text():
    """The reference for a terminal: `sandbox profiles keys`."""
    rows = [[column.replace("`", "") for column in row] for row in reference()]
    width = max(len(name) for name, *_ in rows)
    out = []
    for name, kind, default, meaning in rows:
        out.append(f"{name:<{width}}  {kind}" + (f"; default {default}" if default else ""))
        out.append(f"{'':<{width}}  {meaning}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys
    if sys.argv[1:] not in ([], ["--markdown"]):
        sys.exit("usage: python3 -m sandbox.schema [--markdown]")
    sys.stdout.write(markdown() if sys.argv[1:] else text())
