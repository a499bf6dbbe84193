"""Profiles: YAML files that describe a sandbox, resolved through `extends`.

Loading is split in two on purpose:
- what depends only on the files (syntax, keys, types, units, `extends`) is
  read by yamlload (bounded and strict), validated once and cached as marshal data keyed by the files' mtimes, so a
  run whose profile did not change never imports PyYAML (13 ms cold);
- what depends on the host (bind sources, the interpreter) is checked on every
  run by `check_host`, because the host can change under an unchanged file.

Merging rule for `extends`: mappings merge key by key (the child wins; in
`env` and `tmpfs` a null value removes the parent's entry), everything else,
lists included, is replaced.
"""
import marshal
import os

from .errors import ProfileError, did_you_mean, shorten
from .units import parse_duration, parse_size

SCHEMA_VERSION = 4          # 3: bounded values (input); 4: seccomp rules in first-match order, child first
BUILTIN_DIRS = (
    os.path.join(os.path.dirname(__file__), "profiles"),                  # installed copy
    os.path.join(os.path.dirname(os.path.dirname(__file__)), "profiles"),  # source checkout
)


class Profile:
    """A resolved profile: `data` is the merged, normalised mapping; `origins`
    tells, for each dotted key, which file set it (for error messages)."""
    __slots__ = ("name", "path", "chain", "data", "origins")

    def __init__(self, name, path, chain, data, origins):
        self.name, self.path, self.chain, self.data, self.origins = name, path, chain, data, origins

    def origin(self, key):
        while key:
            if key in self.origins:
                return os.path.basename(self.origins[key])
            key = key.rpartition(".")[0]
        return os.path.basename(self.path)

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)


# ------------------------------------------------------------------ validators
# Each takes (value, where) and returns the normalised value or raises
# ProfileError naming the key path and the fix.

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


def _abs_path(v, where):
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
    v = _abs_path(v, where)
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
    _unknown(v, ("src", "dst", "rw", "optional"), where)
    if "src" not in v:
        _fail(where, "a bind needs 'src'", "add src: /host/path")
    src = v["src"]
    if base is not None and isinstance(src, str) and not src.startswith("/"):
        src = os.path.join(base, src)
    src = _abs_path(src, f"{where}.src")
    return {"src": src,
            "dst": _mount_dst(v.get("dst", src), f"{where}.dst"),
            "rw": _bool(v.get("rw", False), f"{where}.rw"),
            "optional": _bool(v.get("optional", False), f"{where}.optional")}


MAX_INODES = 2**32 - 1      # what tmpfs's nr_inodes takes on 64-bit Linux 6.x


def _tmpfs_entry(v, where):
    if v is None:
        return None
    if not isinstance(v, dict):
        v = {"size": v}
    _unknown(v, ("size", "mode", "inodes"), where)
    mode = v.get("mode", "1777")
    if not isinstance(mode, str):
        _fail(f"{where}.mode", f"{_show(mode)} is not a quoted octal mode (YAML reads 0755 as the number 493)",
              "quote it: mode: '0755'")
    text = mode.strip()
    if not (text and len(text) <= 4 and all(c in "01234567" for c in text)):    # int(, 8) takes '٧' and '0o7'
        _fail(f"{where}.mode", f"{_show(mode)} is not an octal mode", "write e.g. '1777' or '0755'")
    return {"size": _mount_size(v.get("size", "64M"), f"{where}.size"), "mode": int(text, 8),
            "inodes": _int(v.get("inodes", 16384), f"{where}.inodes", minimum=16, maximum=MAX_INODES)}


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
    return _abs_path(v, where) if v.startswith("/") else _abs_path("/" + v, where)[1:]


def _seccomp_ref(v, where):
    """none, a built-in policy name, or a path (relative to the profile file)."""
    if isinstance(v, dict):
        _unknown(v, ("policy",), where)
        v = v.get("policy")
    return _str(v, where)


# Limits bounded by what the kernel takes: pids.max below PID_MAX_LIMIT (2^22) with the sandbox's
# init added; RLIMIT_NOFILE at most the kernel's nr_open ceiling, and at least what the sandbox's own
# steps need after the rlimits step (OPEN_FILES_MIN: 3 fails the launcher, measured on Linux 6.x).
MAX_PROCESSES = (1 << 22) - 1
MAX_OPEN_FILES = 2147483584
OPEN_FILES_MIN = 4

SCHEMA = {
    "description": _str,
    "extends": _str,
    "user": {"uid": _id, "gid": _id},
    "hostname": _hostname,
    "network": _choice("none", "host"),
    "rootfs": {"binds": _list_of(parse_bind), "size": _mount_size, "image": _str,
               "overlay": _choice("auto", "kernel", "fuse"), "writable_size": _mount_size},
    "binds": _list_of(parse_bind),
    "tmpfs": _mapping(_mount_dst, _tmpfs_entry),
    "shm_size": _mount_size,
    "cwd": _abs_path,
    "env": _mapping(_env_name, _env_value),
    "limits": {"cpu_time": _duration, "wall_time": _duration, "memory": _size, "address_space": _size,
               "processes": _count(1, MAX_PROCESSES), "file_size": _size,
               "open_files": _count(OPEN_FILES_MIN, MAX_OPEN_FILES,
                                    "the sandbox's own last steps and the program's exec need descriptors"),
               "stack": _size, "output": _size, "cpus": _fraction},
    "require_cgroup": _bool,
    "cgroup_parent": _cgroup_parent,
    "cpuset": _cpuset,
    "script": {"interpreter": _list_of(_str), "dir": _mount_dst},
    "seccomp": _seccomp_ref,
}


def _unknown(mapping, known, where):
    for key in mapping:
        if key not in known:
            name = key if isinstance(key, str) and len(key) <= 80 else _show(key)
            _fail(f"{where}.{name}" if where else str(name), f"unknown key '{name}'",
                  did_you_mean(str(name)[:80], known, f"known keys: {', '.join(known)}"))


def _validate(raw, schema, where, origins, path):
    if not isinstance(raw, dict):
        _fail(where or "(top level)", f"expected a mapping, got {type(raw).__name__}", "write KEY: VALUE lines")
    _unknown(raw, schema, where)
    out = {}
    for key, value in raw.items():
        sub = f"{where}.{key}" if where else key
        check = schema[key]
        if isinstance(check, dict):
            out[key] = _validate(value, check, sub, origins, path)
        else:
            out[key] = check(value, sub)
        origins[sub] = path
    return out


def _merge(base, child):
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _drop_nulls(data):
    for key in ("env", "tmpfs"):
        if key in data:
            data[key] = {k: v for k, v in data[key].items() if v is not None}
    return data


# ------------------------------------------------------------------ files

def builtin_dir():
    for d in BUILTIN_DIRS:
        if os.path.isdir(d):
            return d
    return BUILTIN_DIRS[0]


NOT_PROFILES = ("languages.yaml",)      # the service's language table lives beside the profiles


def builtin_names():
    d = builtin_dir()
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml") and f not in NOT_PROFILES) \
        if os.path.isdir(d) else []


def is_path(ref):
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def locate(ref, relative_to=None, where="--profile"):
    """The file a profile reference names: a path, or a built-in name."""
    if is_path(ref):
        path = ref if os.path.isabs(ref) or relative_to is None else os.path.join(relative_to, ref)
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            _fail(where, f"profile file {path if len(path) < 300 else _show(path)} does not exist",
                  "check the path, or use a built-in name (sandbox profiles)")
        return path
    path = os.path.join(builtin_dir(), ref + ".yaml")
    if not os.path.isfile(path):
        names = builtin_names()
        _fail(where, f"no built-in profile named {_show(ref)}",
              did_you_mean(ref[:80], names, f"built-in profiles: {', '.join(names)}") + " (or give a path to a .yaml file)")
    return path


def _read_yaml(path, kind="profile"):
    from . import yamlload              # PyYAML: only when a file is not cached
    raw = yamlload.load(path, kind)
    return {} if raw is None else raw


def _resolve(ref, where):
    """Read and validate the whole `extends` chain, then merge it base-first.
    Returns (data, origins, files, chain)."""
    chain, files, layers = [], [], []
    path = locate(ref, None, where)
    while True:
        if path in chain:
            cycle = " -> ".join(os.path.basename(p) for p in chain + [path])
            _fail(f"{os.path.basename(chain[-1])}: extends", f"extends forms a cycle: {cycle}",
                  "remove one of the extends keys so the chain ends")
        chain.append(path)
        st = os.stat(path)
        files.append((path, st.st_mtime_ns, st.st_size))
        name = os.path.basename(path)
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            _fail(name, f"a profile must be a mapping of keys, got {type(raw).__name__}", "write KEY: VALUE lines")
        origins = {}
        try:
            layer = _validate(raw, SCHEMA, "", origins, path)
        except ProfileError as e:
            e.where = f"{name}: {e.where}"
            raise
        layers.append((layer, origins))
        if "extends" not in layer:
            break
        path = locate(layer["extends"], os.path.dirname(path), f"{name}: extends")
    data, origins = {}, {}
    for layer, layer_origins in reversed(layers):
        data = _merge(data, layer)
        origins.update(layer_origins)
    data.pop("extends", None)
    data["seccomp"] = resolve_seccomp(data.get("seccomp", "none"), origins.get("seccomp"), files)
    return _drop_nulls(data), origins, files, chain


def resolve_seccomp(ref, set_by, files):
    """A seccomp reference -> its canonical policy (None for none); the policy
    files join `files`, so editing one invalidates the cached profile."""
    if ref == "none":
        return None
    from . import seccomp
    where = f"{os.path.basename(set_by)}: seccomp" if set_by else "--seccomp"
    policy, policy_files = seccomp.resolve(ref, os.path.dirname(set_by) if set_by else os.getcwd(), where)
    files.extend(policy_files)
    return policy


def _cache_file(path):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", "profiles", path.replace("/", "%") + ".marshal")


def _from_cache(path):
    try:
        with open(_cache_file(path), "rb") as f:
            entry = marshal.load(f)
        if entry[0] != SCHEMA_VERSION:
            return None
        for p, mtime, size in entry[1]:
            st = os.stat(p)
            if st.st_mtime_ns != mtime or st.st_size != size:
                return None
        return entry
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        return None


def _to_cache(path, entry):
    target = _cache_file(path)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        tmp = f"{target}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump(entry, f)
        os.replace(tmp, target)
    except OSError:
        pass  # a cache is an optimisation; an unwritable home only costs time


def load(ref, where="--profile"):
    """Load a profile by built-in name or path."""
    path = locate(ref, None, where)
    entry = _from_cache(path)
    if entry is None:
        data, origins, files, chain = _resolve(ref, where)
        entry = (SCHEMA_VERSION, files, data, origins, chain)
        _to_cache(path, entry)
    _, _, data, origins, chain = entry
    name = ref if not is_path(ref) else os.path.basename(path).rsplit(".", 1)[0]
    return Profile(name, path, chain, data, origins)


def description(path):
    """First-level description of a profile file, for `sandbox profiles`."""
    try:
        return load(path).get("description", "")
    except ProfileError as e:
        return f"(invalid: {e.what})"
