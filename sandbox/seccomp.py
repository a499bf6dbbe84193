"""seccomp: policies in YAML, compiled to BPF by libseccomp, cached.

A policy is a default action and rules; each rule names syscalls, an action
and optional argument conditions.  Actions:
  allow          let it through
  errno NAME|N   fail it with that errno; the program goes on (not a violation)
  kill           end the run with status SYS, naming the call
  log            let it through and list it in the report (how `sandbox learn` works)
`kill` and `log` compile to SECCOMP_RET_USER_NOTIF: the kernel hands the call
(number, architecture, arguments) to the sandbox's init, which records it and,
for `kill`, ends the run.  The program cannot forge or hide that record.

Calls of a foreign ABI (i386 through `int 0x80`, x32) always hit the filter's
bad-architecture action, which is `kill` too.

Compiling costs a few milliseconds and importing a binding about 20: the BPF is
cached per policy (keyed by its content and the libseccomp library), so a run
whose policy is cached loads the filter without importing either.
"""
import errno as errno_mod
import marshal
import os
import zlib

from .errors import ProfileError, did_you_mean

POLICY_DIR = "seccomp"            # inside the built-in profiles directory
NOTIFY_FD, ERR_FD = 6, 4          # the launcher's descriptors that the program process uses after loading
MAX_EXPANSION = 512
ARCHES = {0xC000003E: "x86_64", 0x40000003: "i386"}

SYMBOLS = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17,
    "AF_ALG": 38, "AF_VSOCK": 40, "NETLINK_ROUTE": 0,
    "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x80,
    "CLONE_THREAD": 0x10000,
    "TCGETS": 0x5401, "TIOCGWINSZ": 0x5413, "FIONREAD": 0x541B, "TIOCSTI": 0x5412, "TIOCLINUX": 0x541C,
    "FIOCLEX": 0x5451, "FIONCLEX": 0x5450, "FIONBIO": 0x5421,
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_ACCMODE": 3,
}


def _fail(where, what, fix):
    raise ProfileError(what, where, fix)


# ------------------------------------------------------------------ the binding

def binding():
    """The official `seccomp` module where it imports, else `pyseccomp`; both drive libseccomp.so.2."""
    try:
        import seccomp as mod
    except ImportError:
        try:
            import pyseccomp as mod
        except (ImportError, OSError):
            _fail("seccomp", "no libseccomp binding: neither the 'seccomp' module nor 'pyseccomp' imports",
                  "pip install pyseccomp (and apt install libseccomp2), or set seccomp: none in the profile")
    return mod


def _library_id():
    """Which libseccomp compiled a cached filter, without importing a binding."""
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"):
        path = os.path.join(d, "libseccomp.so.2")
        if os.path.exists(path):
            real = os.path.realpath(path)
            return f"{real}:{os.stat(real).st_size}"
    return "unknown"


# ------------------------------------------------------------------ policies

def _value(v, where):
    if isinstance(v, bool):
        _fail(where, f"{v!r} is not a number", "write a number, 0x hex, or a constant such as AF_INET")
    if isinstance(v, int):
        if not 0 <= v < 1 << 64:
            _fail(where, f"{v} is out of range", "argument values are 0 .. 2**64-1")
        return v
    if isinstance(v, str):
        if v in SYMBOLS:
            return SYMBOLS[v]
        try:
            return _value(int(v, 0), where)
        except ValueError:
            pass
        _fail(where, f"{v!r} is not a number or a known constant",
              did_you_mean(v, SYMBOLS, f"known constants: {', '.join(sorted(SYMBOLS))}", quote=False))
    _fail(where, f"{v!r} is not a number", "write a number, 0x hex, or a constant such as AF_INET")


def _values(v, where):
    items = v if isinstance(v, list) else [v]
    return [_value(x, f"{where}[{i}]") for i, x in enumerate(items)]


LOW32 = 0xFFFFFFFF
OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "any_bits", "masked")


def _alternatives(arg, cond, where):
    """One condition on one argument -> alternatives (OR) of single comparisons
    (arg, op, a, b): libseccomp allows one comparison per argument per rule.
    eq, in, not_in and any_bits look at the low 32 bits, which is all the kernel
    reads of an int argument: high bits cannot slip a value past them."""
    if not isinstance(cond, dict):
        return [(arg, "masked_eq", LOW32, v) for v in _values(cond, where)]
    if len(cond) != 1 and not (set(cond) == {"masked", "eq"}):
        _fail(where, f"one operator per argument, got {sorted(cond)}", f"use one of: {', '.join(OPS)}")
    if set(cond) == {"masked", "eq"}:
        return [(arg, "masked_eq", _value(cond["masked"], f"{where}.masked"), _value(cond["eq"], f"{where}.eq"))]
    (op, v), = cond.items()
    if op not in OPS:
        _fail(f"{where}.{op}", f"unknown operator '{op}'", did_you_mean(op, OPS, f"operators: {', '.join(OPS)}"))
    where = f"{where}.{op}"
    if op in ("eq", "in"):
        return [(arg, "masked_eq", LOW32, x) for x in _values(v, where)]
    if op in ("ne", "lt", "le", "gt", "ge"):
        return [(arg, op, _value(v, where), 0)]
    if op == "any_bits":
        mask = 0
        for x in _values(v, where):
            mask |= x
        return [(arg, "masked_eq", 1 << b, 1 << b) for b in range(64) if mask >> b & 1]
    if op == "masked":
        _fail(where, "masked needs eq beside it", "write {masked: 0x3, eq: 0}")
    allowed = set(_values(v, where))                   # not_in
    top = max(allowed)
    if top > 4096:
        _fail(where, f"not_in with values up to {top} would expand to too many rules", "keep not_in values below 4096")
    return [(arg, "masked_eq", LOW32, x) for x in range(top + 1) if x not in allowed] + [(arg, "ge", top + 1, 0)]


def _action(v, where):
    if isinstance(v, str):
        parts = v.split()
        if parts == ["allow"] or parts == ["kill"] or parts == ["log"]:
            return (parts[0],)
        if len(parts) == 2 and parts[0] == "errno":
            code = getattr(errno_mod, parts[1], None) if not parts[1].isdigit() else int(parts[1])
            if isinstance(code, int) and 0 < code < 4096:
                return ("errno", code)
            _fail(where, f"{parts[1]!r} is not an errno", "write an errno name such as EPERM, or a number")
    _fail(where, f"{v!r} is not an action", "write allow, kill, log, or errno NAME (errno EPERM)")


def _syscall_names(names, where, known):
    out = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            _fail(f"{where}[{i}]", f"{name!r} is not a system call name", "write names such as read, mount")
        if name not in known:
            _fail(f"{where}[{i}]" if len(names) > 1 else where, f"unknown system call '{name}' on x86_64",
                  did_you_mean(name, known, "check the name (man 2 syscalls)"))
        out.append(name)
    return out


def _rule(raw, where, known):
    if not isinstance(raw, dict):
        _fail(where, f"a rule is a mapping, got {raw!r}", "write {syscall: NAME, action: ACTION}")
    from . import profile as profile_mod
    profile_mod._unknown(raw, ("syscall", "syscalls", "action", "when"), where)
    if ("syscall" in raw) == ("syscalls" in raw):
        _fail(where, "a rule needs exactly one of syscall or syscalls", "write syscall: NAME or syscalls: [A, B]")
    if "syscall" in raw:
        names = _syscall_names([raw["syscall"]], f"{where}.syscall", known)
    else:
        if not isinstance(raw["syscalls"], list) or not raw["syscalls"]:
            _fail(f"{where}.syscalls", "expected a non-empty list", "write syscalls: [a, b]")
        names = _syscall_names(raw["syscalls"], f"{where}.syscalls", known)
    if "action" not in raw:
        _fail(where, "a rule needs an action", "add action: kill (or allow, log, errno EPERM)")
    action = _action(raw["action"], f"{where}.action")
    when = raw.get("when", {})
    if not isinstance(when, dict):
        _fail(f"{where}.when", f"expected a mapping of arguments, got {when!r}", "write when: {arg0: VALUE}")
    combos = [()]
    for key, cond in when.items():
        if not (isinstance(key, str) and key.startswith("arg") and key[3:].isdigit() and int(key[3:]) <= 5):
            _fail(f"{where}.when.{key}", f"'{key}' is not an argument", "system calls have arguments arg0 .. arg5")
        alts = _alternatives(int(key[3:]), cond, f"{where}.when.{key}")
        combos = [c + (a,) for c in combos for a in alts]
        if len(combos) > MAX_EXPANSION:
            _fail(f"{where}.when", f"the conditions expand to more than {MAX_EXPANSION} rules", "use fewer values")
    return [(name, action, combo) for name in names for combo in combos]


def _known_syscalls():
    mod = binding()
    arch = mod.Arch.X86_64
    names = {}
    for nr in range(0, 1024):
        try:
            name = mod.resolve_syscall(arch, nr)
        except (ValueError, OSError):
            continue
        if name:
            names[name.decode() if isinstance(name, bytes) else name] = nr
    return names


def locate(ref, relative_to, where):
    from . import profile as profile_mod
    if profile_mod.is_path(ref):
        path = os.path.abspath(os.path.join(relative_to or ".", ref))
        if not os.path.isfile(path):
            _fail(where, f"seccomp policy file {path} does not exist", "check the path, or use a built-in policy name")
        return path
    path = os.path.join(profile_mod.builtin_dir(), POLICY_DIR, ref + ".yaml")
    if not os.path.isfile(path):
        d = os.path.join(profile_mod.builtin_dir(), POLICY_DIR)
        names = sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml")) if os.path.isdir(d) else []
        close = did_you_mean(ref, names)
        _fail(where, f"no built-in seccomp policy named '{ref}'",
              (close + " " if close else "") + f"built-in policies: {', '.join(names)}; or none, or a path")
    return path


def resolve(ref, relative_to=None, where="seccomp"):
    """A policy reference -> (canonical policy, files read).  The canonical form
    is plain data (marshal-able): {"name", "default", "rules": [(syscall, action, comparisons)]}."""
    from . import profile as profile_mod
    known = _known_syscalls()
    chain, files, layers = [], [], []
    path = locate(ref, relative_to, where)
    while True:
        if path in chain:
            _fail(f"{os.path.basename(path)}: extends", "extends forms a cycle: "
                  + " -> ".join(os.path.basename(p) for p in chain + [path]), "remove one of the extends keys")
        chain.append(path)
        st = os.stat(path)
        files.append((path, st.st_mtime_ns, st.st_size))
        name = os.path.basename(path)
        raw = profile_mod._read_yaml(path)
        if not isinstance(raw, dict):
            _fail(name, f"a policy must be a mapping, got {type(raw).__name__}", "write KEY: VALUE lines")
        profile_mod._unknown(raw, ("description", "extends", "default_action", "rules", "remove"), name)
        layer = {}
        if "default_action" in raw:
            layer["default"] = _action(raw["default_action"], f"{name}: default_action")
        rules = raw.get("rules", [])
        if not isinstance(rules, list):
            _fail(f"{name}: rules", "expected a list of rules", "write rules: [{syscall: NAME, action: ACTION}]")
        layer["rules"] = [r for i, raw_rule in enumerate(rules) for r in _rule(raw_rule, f"{name}: rules[{i}]", known)]
        remove = raw.get("remove", [])
        if not isinstance(remove, list):
            _fail(f"{name}: remove", "expected a list of syscall names", "write remove: [a, b]")
        layer["remove"] = _syscall_names(remove, f"{name}: remove", known)
        layers.append(layer)
        if "extends" not in raw:
            break
        if not isinstance(raw["extends"], str):
            _fail(f"{name}: extends", "expected a policy name or path", "write extends: default")
        path = locate(raw["extends"], os.path.dirname(path), f"{name}: extends")
    default, rules = None, []
    for layer in reversed(layers):                     # base first
        rules = [r for r in rules if r[0] not in layer["remove"]] + layer["rules"]
        default = layer.get("default", default)
    if default is None:
        _fail(f"{os.path.basename(chain[-1])}: default_action", "no default action in the policy or what it extends",
              "add default_action: allow (a deny-list) or default_action: kill (an allow-list)")
    for syscall in {r[0] for r in rules}:
        notify = {r[1][0] for r in rules if r[0] == syscall and r[1][0] in ("kill", "log")}
        if len(notify) > 1:
            _fail(os.path.basename(chain[0]), f"'{syscall}' has both kill and log rules",
                  "give each system call either kill or log rules, not both")
    display = ref if not profile_mod.is_path(ref) else os.path.basename(chain[0])
    return {"name": display, "default": default, "rules": rules}, files


# ------------------------------------------------------------------ compiling

def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", "seccomp")


def _compile(policy):
    mod = binding()
    acts = {"allow": mod.ALLOW, "kill": mod.NOTIFY, "log": mod.NOTIFY}

    def act(a):
        return mod.ERRNO(a[1]) if a[0] == "errno" else acts[a[0]]
    ops = {"masked_eq": mod.MASKED_EQ, "eq": mod.EQ, "ne": mod.NE, "lt": mod.LT, "le": mod.LE, "gt": mod.GT, "ge": mod.GE}
    f = mod.SyscallFilter(act(policy["default"]))
    f.set_attr(mod.Attr.ACT_BADARCH, mod.NOTIFY)      # i386 (int 0x80) and x32: reported, then killed
    rules = list(policy["rules"])
    if policy["default"][0] != "allow":
        # What the launcher itself does between loading the filter and exec:
        # hand the listener to init, and report a failed exec.
        rules += [("sendmsg", ("allow",), ((0, "masked_eq", LOW32, NOTIFY_FD),)),
                  ("write", ("allow",), ((0, "masked_eq", LOW32, ERR_FD),))]
    for name, action, comps in rules:
        if action == policy["default"]:
            continue                                   # libseccomp refuses rules that repeat the default
        args = [mod.Arg(a, ops[op], x, y) if op == "masked_eq" else mod.Arg(a, ops[op], x) for a, op, x, y in comps]
        try:
            f.add_rule(act(action), name, *args)
        except OSError as e:
            _fail(f"seccomp policy {policy['name']}", f"libseccomp refused the rule for {name} {comps}: {e.strerror}",
                  "simplify the rule's conditions; rules for one syscall must not contradict each other")
    import tempfile
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read()


def compiled(policy):
    """(BPF bytes, syscall numbers whose notification means log, log everything?) for a policy."""
    key = marshal.dumps((policy["default"], policy["rules"]))
    path = os.path.join(_cache_dir(), f"{zlib.crc32(key):08x}-{len(key)}.marshal")
    lib = _library_id()
    try:
        with open(path, "rb") as f:
            entry = marshal.load(f)
        if entry[0] == key and entry[1] == lib and not os.environ.get("SANDBOX_NO_BPF_CACHE"):
            return entry[2], entry[3], entry[4]
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        pass
    bpf = _compile(policy)
    known = _known_syscalls()
    log_nrs = sorted({known[r[0]] for r in policy["rules"] if r[1][0] == "log"})
    log_all = policy["default"][0] == "log"
    try:
        os.makedirs(_cache_dir(), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump((key, lib, bpf, log_nrs, log_all), f)
        os.replace(tmp, path)
        _save_names(known)
    except OSError:
        pass
    return bpf, log_nrs, log_all


# ------------------------------------------------------------------ names, for reports

def _names_file():
    return os.path.join(_cache_dir(), "syscall-names.marshal")


def _save_names(known_x86_64):
    mod = binding()
    i386 = {}
    for nr in range(0, 512):
        try:
            name = mod.resolve_syscall(mod.Arch.X86, nr)
        except (ValueError, OSError):
            continue
        if name:
            i386[nr] = name.decode() if isinstance(name, bytes) else name
    with open(_names_file(), "wb") as f:
        marshal.dump({"x86_64": {nr: n for n, nr in known_x86_64.items()}, "i386": i386}, f)


def syscall_name(nr, arch):
    """'mount' for (165, 'x86_64'); None if unknown.  Reads the table cached at compile time."""
    try:
        with open(_names_file(), "rb") as f:
            names = marshal.load(f)
    except (OSError, EOFError, ValueError):
        try:
            known = _known_syscalls()
            _save_names(known)
            return syscall_name(nr, arch)
        except (ProfileError, OSError):
            return None
    if arch == "x32":
        return names["x86_64"].get(nr & ~0x40000000)
    return names.get(arch, {}).get(nr)


def describe(policy):
    mode = {"allow": "deny-list (default allow)", "kill": "allow-list (default kill)",
            "log": "learn (every call logged)"}.get(policy["default"][0], f"default {policy['default']}")
    return f"{policy['name']}: {mode}, {len(policy['rules'])} rules"


def steps(policy):
    """(ops for init before the fork, the seccomp step of the program).  The
    filter is the program's last step before exec, after no_new_privs."""
    from .step import Step, op
    if policy is None:
        return [], Step("seccomp", "no seccomp filter: the profile says none", {"policy": "none"}, [])
    bpf, log_nrs, log_all = compiled(policy)
    spec = "*" if log_all else (",".join(map(str, log_nrs)) or "-")
    return [op("notify", spec)], Step(
        "seccomp", "load the seccomp filter (libseccomp BPF, cached) with a listener handed to init",
        {"policy": describe(policy), "bpf": f"{len(bpf) // 8} instructions",
         "foreign ABIs": "i386 (int 0x80) and x32 calls are killed and reported"},
        [op("seccomp", bpf.hex())],
        {"EINVAL": "the kernel refused the filter (too long, or a kernel without seccomp user notification, "
                   "Linux >= 5.5 is needed)",
         "EACCES": "no_new_privs was not set before the filter (a bug: please report it)"})
