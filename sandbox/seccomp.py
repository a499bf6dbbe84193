"""seccomp: policies in YAML, compiled to BPF (sandbox/bpf.py), cached.

A policy is a default action and rules; each rule names syscalls, an action
and optional argument conditions.  Actions:
  allow          let it through
  errno NAME|N   fail it with that errno; the program goes on (not a violation)
  kill           end the run with status SYS, naming the call
  log            let it through and list it in the report (how `sandbox learn` works)
`kill` and `log` compile to SECCOMP_RET_USER_NOTIF: the kernel hands the call
(number, architecture, arguments) to the sandbox's init, which records it and,
for `kill`, ends the run.  The program cannot forge or hide that record.

The first rule that matches a call decides it, in this order: the launcher's
own two calls, the base layer, the policy's rules (a child policy's before
those of the policy it extends), the default.  The base layer is in every
filter, `seccomp: none` and learn mode included: it keeps init out of reach of
the calls that act on another process by pid (init is pid 1 and runs with the
program's uid).

Calls of a foreign ABI (i386 through `int 0x80`, x32) always hit the filter's
bad-architecture action, which is `kill` too.

The BPF is cached per policy (keyed by its content and the libseccomp library
whose syscall table numbered it), so a cached run imports no binding.
"""
import errno as errno_mod
import marshal
import os
import zlib

from .errors import ProfileError, did_you_mean, shorten

POLICY_DIR = "seccomp"            # inside the built-in profiles directory
NOTIFY_FD, ERR_FD = 6, 4          # the launcher's descriptors that the program process uses after loading
MAX_EXPANSION = 512               # rules one rule's conditions may expand to
MAX_RULES = 4096                  # rules a policy may expand to: each costs at least one of the kernel's 4096 instructions
MAX_FILE_BYTES = 256 << 10        # a policy file: 4096 rules fit; parsing more would take seconds for nothing
ARCHES = {0xC000003E: "x86_64", 0x40000003: "i386"}
COMPILER = "first-match-1"        # in the cache key: a BPF cached by another compiler is not reused

SYMBOLS = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17,
    "AF_ALG": 38, "AF_VSOCK": 40, "AF_XDP": 44, "NETLINK_ROUTE": 0, "NETLINK_AUDIT": 9,
    "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x80,
    "CLONE_THREAD": 0x10000,
    "TCGETS": 0x5401, "TIOCGWINSZ": 0x5413, "FIONREAD": 0x541B, "TIOCSTI": 0x5412, "TIOCLINUX": 0x541C,
    "FIOCLEX": 0x5451, "FIONCLEX": 0x5450, "FIONBIO": 0x5421,
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_ACCMODE": 3,
    "PRIO_PROCESS": 0, "PRIO_PGRP": 1, "PRIO_USER": 2,
    "IOPRIO_WHO_PROCESS": 1, "IOPRIO_WHO_PGRP": 2, "IOPRIO_WHO_USER": 3,
}
LOW32 = 0xFFFFFFFF


def _fail(where, what, fix):
    raise ProfileError(what, where, fix)


# ------------------------------------------------------------------ the base layer

def _pid_is(arg, pid):
    """A pid argument equals `pid`.  On the low 32 bits: the kernel reads a pid_t,
    so high bits set in the 64-bit register cannot slip a 1 past the rule."""
    return (arg, "masked_eq", LOW32, pid)


KILL, EPERM, ENOSYS = ("kill",), ("errno", errno_mod.EPERM), ("errno", errno_mod.ENOSYS)
INIT = 1
# What the launcher itself does between loading the filter and exec: hand the
# listener to init (sendmsg on NOTIFY_FD, flags 0) and report a failed exec (write
# on ERR_FD).  First in every filter, so no policy rule can stop a run from starting.
LAUNCHER_RULES = [("sendmsg", ("allow",), (_pid_is(0, NOTIFY_FD), (2, "masked_eq", LOW32, 0))),
                  ("write", ("allow",), (_pid_is(0, ERR_FD),))]
# Init is pid 1 and runs with the program's uid, so every call that acts on
# another process by pid reaches it: prlimit64(1, RLIMIT_CPU) got init killed,
# a forged SIGTERM stopped the run.  Killed (SYS, naming the call) when aimed at
# pid 1; refused where init can be reached only through a group or a user, or
# through a descriptor a filter cannot read.  Whatever the policy says.
BASE_RULES = (
    [(name, KILL, (_pid_is(0, INIT),)) for name in (
        "prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
        "migrate_pages", "move_pages", "get_robust_list", "pidfd_open", "process_vm_readv", "process_vm_writev",
        "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "kcmp")]
    + [(name, KILL, (_pid_is(1, INIT),)) for name in ("tgkill", "rt_tgsigqueueinfo", "kcmp", "ptrace", "perf_event_open")]
    + [("setpriority", KILL, (_pid_is(0, SYMBOLS["PRIO_PROCESS"]), _pid_is(1, INIT))),
       ("ioprio_set", KILL, (_pid_is(0, SYMBOLS["IOPRIO_WHO_PROCESS"]), _pid_is(1, INIT))),
       # process_madvise acts through a pidfd, which a filter cannot read.
       ("process_madvise", KILL, ())]
    + [("setpriority", EPERM, (_pid_is(0, SYMBOLS[w]),)) for w in ("PRIO_PGRP", "PRIO_USER")]
    + [("ioprio_set", EPERM, (_pid_is(0, SYMBOLS[w]),)) for w in ("IOPRIO_WHO_PGRP", "IOPRIO_WHO_USER")]
    # pidfd_send_signal also takes an fd of a /proc/<pid> directory, and /proc/1 is
    # there to open: ENOSYS, so that libc and language runtimes fall back to kill(2).
    + [("pidfd_send_signal", ENOSYS, ())])
# x86_64 numbers of the calls above, so that `seccomp: none` needs no binding (tests compare them with libseccomp's).
BASE_NUMBERS = {"write": 1, "sendmsg": 46, "kill": 62, "ptrace": 101, "rt_sigqueueinfo": 129, "setpriority": 141,
                "sched_setparam": 142, "sched_setscheduler": 144, "tkill": 200, "sched_setaffinity": 203,
                "tgkill": 234, "ioprio_set": 251, "migrate_pages": 256, "get_robust_list": 274, "move_pages": 279,
                "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "prlimit64": 302, "process_vm_readv": 310,
                "process_vm_writev": 311, "kcmp": 312, "sched_setattr": 314, "pidfd_send_signal": 424,
                "pidfd_open": 434, "process_madvise": 440}


def _layered(policy):
    """The rules the filter tries, in order, and its default: the launcher's and the
    base layer's, then the policy's (None: `seccomp: none`, the base layer alone)."""
    if policy is None:
        return LAUNCHER_RULES + BASE_RULES, ("allow",)
    rules = policy["rules"]
    # A refusal of the base layer gives way where the policy kills every use of the call: stricter.
    base = [r for r in BASE_RULES if r[1] == KILL or not _kills_every_use(r[0], rules, policy["default"])]
    return LAUNCHER_RULES + base + rules, policy["default"]


def _kills_every_use(syscall, rules, default):
    first = next((r for r in rules if r[0] == syscall), None)
    return (first[1] if first else default) == KILL and not (first and first[2])


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
            _fail(where, f"{shorten(v)} is out of range", "argument values are 0 .. 2**64-1")
        return v
    if isinstance(v, str):
        if v in SYMBOLS:
            return SYMBOLS[v]
        if v.isascii() and len(v) <= 24:               # int() would take Unicode digits and 4,000-digit strings
            try:
                return _value(int(v, 0), where)
            except ValueError:
                pass
        _fail(where, f"{shorten(v)} is not a number or a known constant",
              did_you_mean(v, SYMBOLS, f"known constants: {', '.join(sorted(SYMBOLS))}", quote=False))
    _fail(where, f"{shorten(v)} is not a number", "write a number, 0x hex, or a constant such as AF_INET")


def _values(v, where):
    items = v if isinstance(v, list) else [v]
    if len(items) > MAX_EXPANSION:
        _fail(where, f"{len(items)} values, more than {MAX_EXPANSION}", "use fewer values")
    return [_value(x, f"{where}[{i}]") for i, x in enumerate(items)]


OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "any_bits", "masked")


def _alternatives(arg, cond, where):
    """One condition on one argument -> alternatives (OR) of single comparisons
    (arg, op, a, b): libseccomp allows one comparison per argument per rule.
    eq, in, not_in and any_bits look at the low 32 bits, which is all the kernel
    reads of an int argument: high bits cannot slip a value past them."""
    if not isinstance(cond, dict):
        return [(arg, "masked_eq", LOW32, v) for v in _values(cond, where)]
    if len(cond) != 1 and not (set(cond) == {"masked", "eq"}):
        _fail(where, f"one operator per argument, got {shorten(sorted(map(str, cond)))}",
              f"use one of: {', '.join(OPS)}")
    if set(cond) == {"masked", "eq"}:
        return [(arg, "masked_eq", _value(cond["masked"], f"{where}.masked"), _value(cond["eq"], f"{where}.eq"))]
    (op, v), = cond.items()
    if op not in OPS:
        _fail(f"{where}.{_key(op)}", f"unknown operator {shorten(op)}",
              did_you_mean(op, OPS, f"operators: {', '.join(OPS)}"))
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
    if not allowed:
        _fail(where, "not_in needs at least one value", "list the values to exclude, or drop the condition")
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
            number = parts[1].isascii() and parts[1].isdigit()    # ASCII digits only: '٣' is not 3
            code = int(parts[1]) if number and len(parts[1]) < 6 else getattr(errno_mod, parts[1], None)
            if isinstance(code, int) and 0 < code < 4096:
                return ("errno", code)
            _fail(where, f"{shorten(parts[1])} is not an errno", "write an errno name such as EPERM, or a number 1 .. 4095")
    _fail(where, f"{shorten(v)} is not an action", "write allow, kill, log, or errno NAME (errno EPERM)")


def _syscall_names(names, where, known):
    out = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            _fail(f"{where}[{i}]", f"{shorten(name)} is not a system call name", "write names such as read, mount")
        if name not in known:
            _fail(f"{where}[{i}]" if len(names) > 1 else where, f"unknown system call {shorten(name)} on x86_64",
                  did_you_mean(name, known, "check the name (man 2 syscalls)"))
        out.append(name)
    return out


def _key(key):
    """A key as part of a `where`: unquoted, bounded."""
    return key[:40] if isinstance(key, str) else shorten(key, 40)


def _argument(key, where):
    """'arg3' -> 3: ASCII digits only ('arg１' is not an argument)."""
    if isinstance(key, str) and len(key) == 4 and key.startswith("arg") and key[3] in "012345":
        return int(key[3])
    _fail(f"{where}.{_key(key)}", f"{shorten(key)} is not an argument", "system calls have arguments arg0 .. arg5")


def _rule(raw, where, known):
    if not isinstance(raw, dict):
        _fail(where, f"a rule is a mapping, got {shorten(raw)}", "write {syscall: NAME, action: ACTION}")
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
        _fail(f"{where}.when", f"expected a mapping of arguments, got {shorten(when)}", "write when: {arg0: VALUE}")
    combos = [()]
    for key, cond in when.items():
        alts = _alternatives(_argument(key, f"{where}.when"), cond, f"{where}.when.{_key(key)}")
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
            _fail(where, f"seccomp policy file {shorten(path)} does not exist",
                  "check the path, or use a built-in policy name")
        return path
    path = os.path.join(profile_mod.builtin_dir(), POLICY_DIR, ref + ".yaml")
    if not os.path.isfile(path):
        d = os.path.join(profile_mod.builtin_dir(), POLICY_DIR)
        names = sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml")) if os.path.isdir(d) else []
        close = did_you_mean(ref, names)
        _fail(where, f"no built-in seccomp policy named {shorten(ref)}",
              (close + " " if close else "") + f"built-in policies: {', '.join(names)}; or none, or a path")
    return path


def _duplicate_key(path):
    """(line, key) of the first key given twice in one mapping, or None.  YAML keeps
    the last of the two silently, so `when: {arg0: 1, arg0: 2}` would test one value.
    Walks the composed nodes once each: aliases are not expanded."""
    import yaml
    with open(path, encoding="utf-8") as f:
        todo, seen = [yaml.compose(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        return key.start_mark.line + 1, key.value
                    keys.add(key.value)
                todo += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return None


def _action_text(action):
    return f"errno {errno_mod.errorcode.get(action[1], action[1])}" if action[0] == "errno" else action[0]


def _check_file(rules, origins):
    """Within one file, a rule after an unconditional rule for the same call with
    another action could never apply: the policy would be weaker (or looser)
    than written.  Refused, naming both."""
    unconditional = {}
    for (name, action, comps), origin in zip(rules, origins):
        first = unconditional.get(name)
        if first and first[0] != action:
            _fail(origin, f"this rule ({_action_text(action)}) for '{name}' can never apply: {first[1]} "
                          f"({_action_text(first[0])}, with no conditions) decides every '{name}' call first",
                  f"keep one of the two rules; to override a rule of the policy you extend, write it in the "
                  f"extending policy, whose rules come first")
        if not comps and not first:
            unconditional[name] = (action, origin)


def _check_notifications(rules, origins, default):
    """kill and log both reach init as a notification; init tells them apart by
    the call's number, and for kill rules under default_action: log by their
    conditions, which it checks again (masked comparisons only)."""
    for syscall in {r[0] for r in rules if r[1] == KILL}:
        kills = [(r, o) for r, o in zip(rules, origins) if r[0] == syscall and r[1] == KILL]
        logs = [o for r, o in zip(rules, origins) if r[0] == syscall and r[1] == ("log",)]
        if logs:
            _fail(logs[0], f"'{syscall}' has both kill and log rules: kill in {kills[0][1]}, log here",
                  "give each system call either kill or log rules, not both")
        if default == ("log",):
            for (_, _, comps), origin in kills:
                if any(c[1] != "masked_eq" for c in comps):
                    _fail(origin, "under default_action: log a kill rule's conditions must be eq, in, any_bits "
                                  "or masked (init checks them again to tell a kill from a log)",
                          "rewrite the condition with eq/in/any_bits/masked, or use default_action: allow "
                          "and log rules for the calls to list")


def resolve(ref, relative_to=None, where="seccomp"):
    """A policy reference -> (canonical policy, files read).  The canonical form
    is plain data (marshal-able): {"name", "default", "rules": [(syscall, action,
    comparisons)]}, rules in the order the filter tries them: a child policy's
    first, so that the child wins where both say something about a call."""
    from . import profile as profile_mod
    known = _known_syscalls()
    chain, files, layers = [], [], []
    path = locate(ref, relative_to, where)
    count = 0
    while True:
        if path in chain:
            _fail(f"{os.path.basename(path)}: extends", "extends forms a cycle: "
                  + " -> ".join(os.path.basename(p) for p in chain + [path]), "remove one of the extends keys")
        chain.append(path)
        st = os.stat(path)
        files.append((path, st.st_mtime_ns, st.st_size))
        name = os.path.basename(path)
        if st.st_size > MAX_FILE_BYTES:
            _fail(name, f"the policy file is {st.st_size} bytes, more than {MAX_FILE_BYTES}: more rules than "
                  "the kernel's 4096-instruction filter can hold", "merge rules into syscalls: [...] lists, or use "
                  "an allow-list")
        raw = profile_mod._read_yaml(path)
        if not isinstance(raw, dict):
            _fail(name, f"a policy must be a mapping, got {type(raw).__name__}", "write KEY: VALUE lines")
        twice = _duplicate_key(path)
        if twice:
            _fail(f"{name}:{twice[0]}", f"the key {shorten(twice[1], 40)} is given twice in one mapping",
                  "keep one of them (YAML would silently use the last)")
        try:
            profile_mod._unknown(raw, ("description", "extends", "default_action", "rules", "remove"), None)
        except ProfileError as e:
            e.where = f"{name}: {e.where}"
            raise
        layer = {"rules": [], "origins": []}
        if "default_action" in raw:
            layer["default"] = _action(raw["default_action"], f"{name}: default_action")
        rules = raw.get("rules", [])
        if not isinstance(rules, list):
            _fail(f"{name}: rules", "expected a list of rules", "write rules: [{syscall: NAME, action: ACTION}]")
        for i, raw_rule in enumerate(rules):
            origin = f"{name}: rules[{i}]"
            expanded = _rule(raw_rule, origin, known)
            count += len(expanded)
            if count > MAX_RULES:
                _fail(f"{name}: rules", f"the policy expands to more than {MAX_RULES} rules (at rules[{i}]): "
                      "more than the kernel's 4096-instruction filter can hold",
                      "merge rules into syscalls: [...] lists, use fewer conditions, or an allow-list")
            layer["rules"] += expanded
            layer["origins"] += [origin] * len(expanded)
        _check_file(layer["rules"], layer["origins"])
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
    default, rules, origins = None, [], []
    for layer in reversed(layers):                     # base first; each layer's rules go before what it extends
        kept = [i for i, r in enumerate(rules) if r[0] not in layer["remove"]]
        rules = layer["rules"] + [rules[i] for i in kept]
        origins = layer["origins"] + [origins[i] for i in kept]
        default = layer.get("default", default)
    if default is None:
        _fail(f"{os.path.basename(chain[-1])}: default_action", "no default action in the policy or what it extends",
              "add default_action: allow (a deny-list) or default_action: kill (an allow-list)")
    _check_notifications(rules, origins, default)
    seen, unique = set(), []
    for r in rules:                                    # a repeated rule changes nothing: tried once
        if r not in seen:
            seen.add(r)
            unique.append(r)
    display = ref if not profile_mod.is_path(ref) else os.path.basename(chain[0])
    policy = {"name": display, "default": default, "rules": unique}
    compiled(policy, known)                            # what cannot load is refused now, not when a run starts
    return policy, files


# ------------------------------------------------------------------ compiling

def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", "seccomp")


def _program(policy, numbers):
    """(BPF bytes, log numbers, log everything?, kill rules init checks again)."""
    from . import bpf
    rules, default = _layered(policy)

    def ret(action):
        if action[0] == "errno":
            return bpf.RET_ERRNO | action[1]
        return bpf.RET_ALLOW if action[0] == "allow" else bpf.RET_USER_NOTIF    # kill, log: init decides
    code = bpf.assemble([(numbers[n], ret(a), c) for n, a, c in rules], ret(default),
                        bpf.RET_USER_NOTIF)     # i386 (int 0x80) and x32: reported, then killed
    name = policy["name"] if policy else "none"
    if len(code) // 8 > bpf.MAX_INSNS:
        _fail(f"seccomp policy {name}", f"the filter needs {len(code) // 8} BPF instructions; the kernel loads "
              f"at most {bpf.MAX_INSNS}", "use fewer rules or conditions (merge calls into syscalls: [...] lists)")
    log_all = default == ("log",)
    log_nrs = sorted({numbers[n] for n, a, _ in rules if a == ("log",)})
    # A notification for a call that may also be a log is a kill only if a kill rule
    # matches its arguments; init checks that (the first-match order makes it exact).
    kills = [(numbers[n], c) for n, a, c in rules if a == KILL and (log_all or numbers[n] in log_nrs)]
    return code, log_nrs, log_all, kills


def compiled(policy, known=None):
    """(BPF bytes, syscall numbers whose notification means log, log everything?,
    kill rules among them) for a policy; None is `seccomp: none`, the base layer alone.
    `known`: the syscall table, if the caller has it."""
    key = marshal.dumps((COMPILER, policy and policy["default"], policy and policy["rules"]))
    path = os.path.join(_cache_dir(), f"{zlib.crc32(key):08x}-{len(key)}.marshal")
    lib = _library_id() if policy else "-"
    try:
        with open(path, "rb") as f:
            entry = marshal.load(f)
        if entry[0] == key and entry[1] == lib and not os.environ.get("SANDBOX_NO_BPF_CACHE"):
            return entry[2]
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        pass
    known = known or (_known_syscalls() if policy else BASE_NUMBERS)
    result = _program(policy, known)
    try:
        os.makedirs(_cache_dir(), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump((key, lib, result), f)
        os.replace(tmp, path)
        if policy:
            _save_names(known)
    except OSError:
        pass
    return result


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


def culprit(policy, name, arch, args):
    """Who killed a call, for the verdict: the base layer or the policy."""
    if arch == "x86_64" and args and any(
            n == name and a == KILL and all((args[i] & m) == v for i, _, m, v in c) for n, a, c in BASE_RULES):
        return ("the seccomp base layer (in every filter, seccomp: none too: it keeps init, pid 1, "
                "out of reach of calls that act on another process)")
    return f"the seccomp policy {policy['name']}" if policy else "the seccomp filter"


def describe(policy):
    if policy is None:
        return "none: no policy, only the base layer (init out of reach by pid)"
    mode = {"allow": "deny-list (default allow)", "kill": "allow-list (default kill)",
            "log": "learn (every call logged)"}.get(policy["default"][0], f"default {policy['default']}")
    return f"{policy['name']}: {mode}, {len(policy['rules'])} rules, after the base layer"


def _kill_spec(kills):
    """For init: "NR[,ARG,MASK,VALUE]...;..." -- a notification of NR whose arguments
    match every (args[ARG] & MASK) == VALUE of one entry is a kill, not a log."""
    return ";".join(str(nr) + "".join(f",{a},{m},{v}" for a, _, m, v in comps) for nr, comps in kills) or "-"


def steps(policy):
    """(ops for init before the fork, the seccomp step of the program).  The
    filter is the program's last step before exec, after no_new_privs.  With
    `seccomp: none` (policy None) the filter is the base layer alone."""
    from .step import Step, op
    bpf, log_nrs, log_all, kills = compiled(policy)
    spec = "*" if log_all else (",".join(map(str, log_nrs)) or "-")
    summary = ("load the seccomp filter (BPF, cached) with a listener handed to init" if policy else
               "no seccomp policy (the profile says none): load the base layer alone, which keeps init out "
               "of reach of calls that act on another process by pid")
    return [op("notify", spec, _kill_spec(kills))], Step(
        "seccomp", summary,
        {"policy": describe(policy), "bpf": f"{len(bpf) // 8} instructions",
         "foreign ABIs": "i386 (int 0x80) and x32 calls are killed and reported"},
        [op("seccomp", bpf.hex())],
        {"EINVAL": "the kernel refused the filter (a kernel without seccomp user notification: "
                   "Linux >= 5.5 is needed)",
         "EACCES": "no_new_privs was not set before the filter (a bug: please report it)"})
