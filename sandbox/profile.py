"""Profiles: YAML files that describe a sandbox, resolved through `extends`.

Loading is split in two on purpose:
- what depends only on the files (syntax, keys, types, units, `extends`) is
  validated once and cached as marshal data keyed by the files' mtimes, so a
  run whose profile did not change never imports PyYAML (13 ms cold);
- what depends on the host (bind sources, the interpreter) is checked on every
  run by `check_host`, because the host can change under an unchanged file.

Merging rule for `extends`: mappings merge key by key (the child wins; in
`env` and `tmpfs` a null value removes the parent's entry), everything else,
lists included, is replaced.
"""
import marshal
import os

from .errors import ProfileError, did_you_mean
from .units import parse_duration, parse_size

SCHEMA_VERSION = 3          # 3: seccomp rules in first-match order, child first
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


def _str(v, where):
    if not isinstance(v, str):
        _fail(where, f"expected a string, got {type(v).__name__} {v!r}", "quote the value")
    return v


def _abs_path(v, where):
    v = _str(v, where)
    if not v.startswith("/"):
        _fail(where, f"{v!r} is a relative path; an absolute path is needed here",
              f"write it from the root, e.g. /{v.lstrip('./')}")
    norm = os.path.normpath(v)
    return "/" + norm.lstrip("/")


def _mount_dst(v, where):
    v = _abs_path(v, where)
    if v == "/":
        _fail(where, "cannot mount over / itself", "choose a directory below /")
    return v


def _bool(v, where):
    if not isinstance(v, bool):
        _fail(where, f"expected true or false, got {v!r}", "write true or false")
    return v


def _int(v, where, minimum=0):
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(where, f"expected a whole number, got {v!r}", "write a number such as 64")
    if v < minimum:
        _fail(where, f"{v} is below the minimum {minimum}", f"use at least {minimum}")
    return v


def _size(v, where):
    try:
        return parse_size(v)
    except ValueError as e:
        _fail(where, str(e), "sizes are bytes with an optional K, M, G suffix (binary)")


def _duration(v, where):
    try:
        return parse_duration(v)
    except ValueError as e:
        _fail(where, str(e), "durations are seconds, or a number with ms, s, m or h")


def _count(v, where):
    if isinstance(v, str):
        if v.strip().lower() == "unlimited":
            return None
        if v.strip().isdigit():      # from the command line
            v = int(v)
    if v is None:
        return None
    return _int(v, where, minimum=1)


def _id(v, where):
    if v == "caller":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32 - 1:
        _fail(where, f"{v!r} is not a user/group id", "write a number such as 1000, or 'caller'")
    return v


def _choice(*options):
    def check(v, where):
        if v not in options:
            _fail(where, f"{v!r} is not one of {', '.join(options)}", f"write one of: {', '.join(options)}")
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
            _fail(where, f"{v!r} is not SRC[:DST][:rw]", "write e.g. /data or /data:/mnt/data:rw")
        v = {"src": parts[0], "rw": mode == "rw"} | ({"dst": parts[1]} if len(parts) == 2 else {})
    elif not isinstance(v, dict):
        _fail(where, f"expected 'SRC[:DST][:rw]' or a mapping, got {v!r}", "write e.g. /data:/mnt/data:rw")
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


def _tmpfs_entry(v, where):
    if v is None:
        return None
    if not isinstance(v, dict):
        v = {"size": v}
    _unknown(v, ("size", "mode", "inodes"), where)
    mode = v.get("mode", "1777")
    if not isinstance(mode, str):
        _fail(f"{where}.mode", f"{mode!r} is not a quoted octal mode (YAML reads 0755 as the number 493)",
              "quote it: mode: '0755'")
    try:
        mode = int(mode, 8)
        if not 0 <= mode <= 0o7777:
            raise ValueError
    except ValueError:
        _fail(f"{where}.mode", f"{mode!r} is not an octal mode", "write e.g. '1777' or '0755'")
    return {"size": _size(v.get("size", "64M"), f"{where}.size"), "mode": mode,
            "inodes": _int(v.get("inodes", 16384), f"{where}.inodes", minimum=16)}


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
            k = key_check(k, f"{where}.{k}")
            out[k] = value_check(x, f"{where}.{k}")
        return out
    return check


def _env_name(k, where):
    if not isinstance(k, str) or not k or "=" in k or "\0" in k:
        _fail(where, f"{k!r} is not an environment variable name", "use a name without '='")
    return k


def _fraction(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= 1024:
        if isinstance(v, str) and v.strip().lower() == "unlimited":
            return None
        try:
            v = float(v)
            if 0.01 <= v <= 1024:
                return v
        except (TypeError, ValueError):
            pass
        _fail(where, f"{v!r} is not a number of CPUs", "write e.g. 1 or 0.5 (CPUs' worth of time per second)")
    return float(v)


def _seccomp_ref(v, where):
    """none, a built-in policy name, or a path (relative to the profile file)."""
    if isinstance(v, dict):
        _unknown(v, ("policy",), where)
        v = v.get("policy")
    return _str(v, where)


SCHEMA = {
    "description": _str,
    "extends": _str,
    "user": {"uid": _id, "gid": _id},
    "hostname": _str,
    "network": _choice("none", "host"),
    "rootfs": {"binds": _list_of(parse_bind), "size": _size, "image": _str,
               "overlay": _choice("auto", "kernel", "fuse"), "writable_size": _size},
    "binds": _list_of(parse_bind),
    "tmpfs": _mapping(_mount_dst, _tmpfs_entry),
    "shm_size": _size,
    "cwd": _abs_path,
    "env": _mapping(_env_name, _env_value),
    "limits": {"cpu_time": _duration, "wall_time": _duration, "memory": _size, "address_space": _size,
               "processes": _count, "file_size": _size, "open_files": _count, "stack": _size, "output": _size,
               "cpus": _fraction},
    "require_cgroup": _bool,
    "cgroup_parent": _abs_path,
    "cpuset": _str,
    "script": {"interpreter": _list_of(_str), "dir": _mount_dst},
    "seccomp": _seccomp_ref,
}


def _unknown(mapping, known, where):
    for key in mapping:
        if key not in known:
            _fail(f"{where}.{key}" if where else str(key), f"unknown key '{key}'",
                  did_you_mean(key, known, f"known keys: {', '.join(known)}"))


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


def builtin_names():
    d = builtin_dir()
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml")) if os.path.isdir(d) else []


def is_path(ref):
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def locate(ref, relative_to=None, where="--profile"):
    """The file a profile reference names: a path, or a built-in name."""
    if is_path(ref):
        path = ref if os.path.isabs(ref) or relative_to is None else os.path.join(relative_to, ref)
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            _fail(where, f"profile file {path} does not exist", "check the path, or use a built-in name (sandbox profiles)")
        return path
    path = os.path.join(builtin_dir(), ref + ".yaml")
    if not os.path.isfile(path):
        names = builtin_names()
        _fail(where, f"no built-in profile named '{ref}'",
              did_you_mean(ref, names, f"built-in profiles: {', '.join(names)}") + " (or give a path to a .yaml file)")
    return path


def _read_yaml(path):
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        what = f"YAML syntax error: {e.problem}"
        if e.context and e.context_mark is not None:
            what += f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        _fail(f"{path}:{mark.line + 1}:{mark.column + 1}", what, "fix the YAML syntax there")
    except (OSError, UnicodeDecodeError) as e:
        _fail(path, f"cannot read the profile: {e}", "check the file's permissions and encoding")
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
