"""Files a user writes to configure runs -- profiles and seccomp policies -- and
the cache the sandbox keeps of what it derives from files.

One loader for both kinds of file, so that they are found, chained and refused
the same way:
- `locate`: a built-in name (a file of the built-in directory, or of its
  `seccomp/` for policies) or a path, relative to the file that names it;
- `chain`: the `extends` chain from one file to its root, with a cycle check and
  a depth bound, each file read through yamlload (bounded and strict) and handed
  to the caller's validator, which says what the file extends;
- `cache_path` and `write_atomic`: $XDG_CACHE_HOME/sandbox/..., written through
  a temporary file and a rename, so that a run reading the cache while another
  writes it sees the old file or the new one, never half of one.

PyYAML is imported (through yamlload) only when a file is read: a run whose
profile is cached imports neither it nor `re`.
"""
import os

from . import hostfacts
from .errors import ProfileError, did_you_mean, shorten

BUILTIN_DIRS = (
    os.path.join(os.path.dirname(__file__), "profiles"),                  # installed copy
    os.path.join(os.path.dirname(os.path.dirname(__file__)), "profiles"),  # source checkout
)
MAX_CHAIN = 32                  # files one `extends` chain may hold (the built-in ones hold at most 4)


class Kind:
    """What differs between the kinds of file: where the built-in ones live and
    how messages name them."""
    __slots__ = ("noun", "plural", "subdir", "exclude", "path_fix", "otherwise")

    def __init__(self, noun, plural, subdir, path_fix, otherwise, exclude=()):
        self.noun, self.plural, self.subdir = noun, plural, subdir
        self.path_fix, self.otherwise, self.exclude = path_fix, otherwise, exclude


PROFILE = Kind("profile", "profiles", "", "check the path, or use a built-in name (sandbox profiles)",
               " (or give a path to a .yaml file)",
               exclude=("languages.yaml",))      # the service's language table lives beside the profiles
POLICY = Kind("seccomp policy", "policies", "seccomp", "check the path, or use a built-in policy name",
              "; or none, or a path")


# ------------------------------------------------------------------ finding files

def builtin_dir(kind=PROFILE):
    d = next((d for d in BUILTIN_DIRS if hostfacts.isdir(d)), BUILTIN_DIRS[0])
    return os.path.join(d, kind.subdir) if kind.subdir else d


def builtin_names(kind=PROFILE):
    d = builtin_dir(kind)
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml") and f not in kind.exclude) \
        if os.path.isdir(d) else []


def is_path(ref):
    """A reference with a slash or a YAML suffix is a path; anything else a built-in name."""
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def locate(ref, kind=PROFILE, relative_to=None, where="--profile"):
    """The file a reference names: a path (relative to `relative_to`, the
    directory of the file that names it, else the working directory) or a built-in name."""
    if is_path(ref):
        path = os.path.abspath(ref if os.path.isabs(ref) or relative_to is None else os.path.join(relative_to, ref))
        if not hostfacts.isfile(path):
            raise ProfileError(f"{kind.noun} file {path if len(path) < 300 else shorten(path, 60)} does not exist",
                               where, kind.path_fix)
        return path
    path = os.path.join(builtin_dir(kind), ref + ".yaml")
    if not hostfacts.isfile(path):
        names = builtin_names(kind)
        close = did_you_mean(ref[:80], names)
        raise ProfileError(f"no built-in {kind.noun} named {shorten(ref, 60)}", where,
                           (close + " " if close else "") + f"built-in {kind.plural}: {', '.join(names)}"
                           + kind.otherwise)
    return path


# ------------------------------------------------------------------ reading files

def unknown_keys(mapping, known, where):
    """Refuse the first key of `mapping` that is not in `known`, suggesting the closest known one."""
    for key in mapping:
        if key not in known:
            name = key if isinstance(key, str) and len(key) <= 80 else shorten(key, 60)
            raise ProfileError(f"unknown key '{name}'", f"{where}.{name}" if where else str(name),
                               did_you_mean(str(name)[:80], known, f"known keys: {', '.join(known)}"))


def read_mapping(path, kind=PROFILE):
    """The top-level mapping of a file ({} for an empty one), read by yamlload."""
    from . import yamlload              # PyYAML: only when a file is not cached
    raw = yamlload.load(path, kind.noun)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProfileError(f"a {kind.noun} must be a mapping of keys, got {type(raw).__name__}",
                           os.path.basename(path), "write KEY: VALUE lines")
    return raw


def stamp(path):
    """What the cache compares to tell that a file did not change: (path, mtime, size)."""
    _, size, mtime = hostfacts.stat(path)
    return path, mtime, size


def unchanged(stamps):
    """Are all the files as `stamp` saw them (none gone, none edited)?"""
    try:
        return all(stamp(path) == (path, mtime, size) for path, mtime, size in stamps)
    except OSError:
        return False


def chain(ref, kind, where, layer, relative_to=None):
    """Walk the `extends` chain from `ref` to its root.  `layer(path)` reads and
    checks one file and returns (its layer, the reference it extends or None).
    Returns (layers child first, paths child first, stamps of the files)."""
    layers, paths, stamps = [], [], []
    path = locate(ref, kind, relative_to, where)
    while True:
        if path in paths:
            cycle = " -> ".join(os.path.basename(p) for p in paths + [path])
            raise ProfileError(f"extends forms a cycle: {cycle}", f"{os.path.basename(paths[-1])}: extends",
                               "remove one of the extends keys so the chain ends")
        if len(paths) == MAX_CHAIN:
            raise ProfileError(f"extends chains more than {MAX_CHAIN} files: "
                               + " -> ".join(os.path.basename(p) for p in paths[:3]) + " -> ...",
                               f"{os.path.basename(paths[-1])}: extends",
                               f"extend a file closer to the root: at most {MAX_CHAIN} files in one chain")
        paths.append(path)
        stamps.append(stamp(path))          # before reading: a change while it is read shows next time
        value, parent = layer(path)
        layers.append(value)
        if parent is None:
            return layers, paths, stamps
        path = locate(parent, kind, os.path.dirname(path), f"{os.path.basename(path)}: extends")


# ------------------------------------------------------------------ the cache

def cache_path(*parts):
    """$XDG_CACHE_HOME/sandbox/PARTS (~/.cache/sandbox/... by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", *parts)


def write_atomic(path, data, mode=0o644):
    """Write the bytes `data` to `path` (a file of `mode`, less the umask) through a
    temporary file beside it and a rename; missing directories are made private (0700:
    a cache tells what a user runs).  Raises OSError; the temporary file never stays behind."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_cache(path, data, mode=0o644):
    """write_atomic for a cache, which is an optimisation: an unwritable home only costs time."""
    try:
        write_atomic(path, data, mode)
        return True
    except OSError:
        return False
