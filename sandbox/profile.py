"""Profiles: YAML files that describe a sandbox, resolved through `extends`.
What each key means, its type and its default: sandbox/schema.py.  Finding the
files and walking `extends`: sandbox/configfiles.py, shared with seccomp policies.

Loading is split in two on purpose:
- what depends only on the files (syntax, keys, types, units, `extends`) is
  read by yamlload (bounded and strict), validated once and cached as marshal data keyed by the files' mtimes, so a
  run whose profile did not change never imports PyYAML (13 ms cold);
- what depends on the host (bind sources, the interpreter) is checked on every
  run, when the plan is built (mounts.resolve_binds, plan.check_interpreter),
  because the host can change under an unchanged file.

Merging rule for `extends`: mappings merge key by key (the child wins; in
`env` and `tmpfs` a null value removes the parent's entry), everything else,
lists included, is replaced.
"""
import marshal
import os

from . import configfiles
# builtin_dir and builtin_names: the built-in profiles, for `sandbox profiles` and the service
from .configfiles import PROFILE, builtin_dir, builtin_names, is_path, unknown_keys  # noqa: F401
from .errors import ProfileError

SCHEMA_VERSION = 4          # 3: bounded values (input); 4: seccomp rules in first-match order, child first


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


def _validate(raw, schema, where, origins, path):
    if not isinstance(raw, dict):
        raise ProfileError(f"expected a mapping, got {type(raw).__name__}", where or "(top level)", "write KEY: VALUE lines")
    unknown_keys(raw, schema, where)
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

def _layer(path):
    """One file of the chain, validated: ((layer, origins), what it extends)."""
    name = os.path.basename(path)
    raw = configfiles.read_mapping(path, PROFILE)
    origins = {}
    try:
        from .schema import SCHEMA         # (a cached profile needs no schema)
        layer = _validate(raw, SCHEMA, "", origins, path)
    except ProfileError as e:
        e.where = f"{name}: {e.where}"
        raise
    return (layer, origins), layer.get("extends")


def _resolve(ref, where):
    """Read and validate the whole `extends` chain, then merge it base-first.
    Returns (data, origins, files, chain)."""
    layers, chain, files = configfiles.chain(ref, PROFILE, where, _layer)
    data, origins = {}, {}
    for layer, layer_origins in reversed(layers):
        data = _merge(data, layer)
        origins.update(layer_origins)
    data.pop("extends", None)
    from .schema import DEFAULTS
    data["seccomp"] = resolve_seccomp(data.get("seccomp", DEFAULTS["seccomp"]), origins.get("seccomp"), files)
    return _drop_nulls(data), origins, files, chain


def resolve_seccomp(ref, set_by, files):
    """A seccomp reference -> its canonical policy (None for none); the policy
    files join `files`, so editing one invalidates the cached profile."""
    if ref == "none":
        return None
    from . import seccomp_policy
    where = f"{os.path.basename(set_by)}: seccomp" if set_by else "--seccomp"
    policy, policy_files = seccomp_policy.resolve(ref, os.path.dirname(set_by) if set_by else os.getcwd(), where)
    files.extend(policy_files)
    return policy


def _cache_file(path):
    return configfiles.cache_path("profiles", path.replace("/", "%") + ".marshal")


def _from_cache(path):
    try:
        with open(_cache_file(path), "rb") as f:
            entry = marshal.loads(f.read())
        return entry if entry[0] == SCHEMA_VERSION and configfiles.unchanged(entry[1]) else None
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        return None


def load(ref, where="--profile"):
    """Load a profile by built-in name or path."""
    path = configfiles.locate(ref, PROFILE, None, where)
    entry = _from_cache(path)
    if entry is None:
        data, origins, files, chain = _resolve(ref, where)
        entry = (SCHEMA_VERSION, files, data, origins, chain)
        configfiles.write_cache(_cache_file(path), marshal.dumps(entry))
    _, _, data, origins, chain = entry
    name = ref if not is_path(ref) else os.path.basename(path).rsplit(".", 1)[0]
    return Profile(name, path, chain, data, origins)


def description(path):
    """First-level description of a profile file, for `sandbox profiles`."""
    try:
        return load(path).get("description", "")
    except ProfileError as e:
        return f"(invalid: {e.what})"
