"""seccomp policy files: YAML -> the canonical policy that sandbox/seccomp.py
compiles.  Reading checks everything a filter could not honour, so that a
policy that resolves also loads: values and names (ASCII only, bounded in
messages), contradictions inside one file, kill rules that init could not tell
from logs, the rule count, the file size and, by compiling it, the kernel's
4096-instruction limit.  Finding files and walking `extends` is
sandbox/configfiles.py's, the same for policies as for profiles."""
import errno as errno_mod
import os

from . import configfiles, hostfacts
from .configfiles import POLICY, unknown_keys
from .errors import ProfileError, did_you_mean, shorten
from .seccomp import KILL, LOW32, compiled, known_syscalls

MAX_EXPANSION = 512               # rules one rule's conditions may expand to
MAX_RULES = 4096                  # rules a policy may expand to: each costs at least one of the kernel's 4096 instructions
MAX_FILE_BYTES = 256 << 10        # a policy file: 4096 rules fit; parsing more would take seconds for nothing

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


def _fail(where, what, fix):
    raise ProfileError(what, where, fix)


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
        if v.isascii() and len(v) <= 70:               # int() would take Unicode digits and 4,000-digit strings
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
    (arg, op, a, b), so that a rule holds at most one comparison per argument.
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
    unknown_keys(raw, ("syscall", "syscalls", "action", "when"), where)
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
                  "keep one of the two rules; to override a rule of the policy you extend, write it in the "
                  "extending policy, whose rules come first")
        if not comps and not first:
            unconditional[name] = (action, origin)


def _reachable(rules, origins):
    """The rules without those that can never apply: repeats, and rules after an
    unconditional one for the same call (an extending policy's override hides the
    parent's rules for that call, so a child may turn a parent's kill into a log)."""
    decided, seen, kept, kept_origins = set(), set(), [], []
    for rule, origin in zip(rules, origins):
        if rule[0] in decided or rule in seen:
            continue
        seen.add(rule)
        kept.append(rule)
        kept_origins.append(origin)
        if not rule[2]:
            decided.add(rule[0])
    return kept, kept_origins


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


def _layer(path, known, count):
    """One policy file -> ({"default"?, "rules", "origins", "remove"}, rules counted so
    far, raw mapping), everything in it checked."""
    name, size = os.path.basename(path), hostfacts.stat(path)[1]
    if size > MAX_FILE_BYTES:
        _fail(name, f"the policy file is {size} bytes, more than {MAX_FILE_BYTES}: more rules than "
              "the kernel's 4096-instruction filter can hold", "merge rules into syscalls: [...] lists, or use "
              "an allow-list")
    raw = configfiles.read_mapping(path, POLICY)     # duplicate keys refused there, both lines named
    try:
        unknown_keys(raw, ("description", "extends", "default_action", "rules", "remove"), None)
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
    if "extends" in raw and not isinstance(raw["extends"], str):
        _fail(f"{name}: extends", "expected a policy name or path", "write extends: default")
    return layer, count, raw


def resolve(ref, relative_to=None, where="seccomp"):
    """A policy reference -> (canonical policy, files read).  The canonical form
    is plain data (marshal-able): {"name", "default", "rules": [(syscall, action,
    comparisons)]}, rules in the order the filter tries them: a child policy's
    first, so that the child wins where both say something about a call."""
    known, count = known_syscalls(), 0

    def read(path):                                    # one file; the rule count runs across the chain
        nonlocal count
        layer, count, raw = _layer(path, known, count)
        return layer, raw.get("extends")
    layers, chain, files = configfiles.chain(ref, POLICY, where, read, relative_to)
    default, rules, origins = None, [], []
    for layer in reversed(layers):                     # base first; each layer's rules go before what it extends
        kept = [i for i, r in enumerate(rules) if r[0] not in layer["remove"]]
        rules = layer["rules"] + [rules[i] for i in kept]
        origins = layer["origins"] + [origins[i] for i in kept]
        default = layer.get("default", default)
    if default is None:
        _fail(f"{os.path.basename(chain[-1])}: default_action", "no default action in the policy or what it extends",
              "add default_action: allow (a deny-list) or default_action: kill (an allow-list)")
    rules, origins = _reachable(rules, origins)
    _check_notifications(rules, origins, default)
    display = ref if not configfiles.is_path(ref) else os.path.basename(chain[0])
    policy = {"name": display, "default": default, "rules": rules}
    compiled(policy, known)                            # what cannot load is refused now, not when a run starts
    return policy, files
