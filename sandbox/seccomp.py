"""seccomp: the filter every program gets -- a policy (read from YAML by
sandbox/seccomp_policy.py, which imports this module, never the other way round)
behind the base layer, compiled to BPF (sandbox/bpf.py), cached.

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

from . import configfiles, hostfacts
from .errors import ProfileError
from .launch import ERR_FD, NOTIFY_FD    # what the program process uses after loading the filter

ARCHES = {0xC000003E: "x86_64", 0x40000003: "i386"}
COMPILER = "first-match-1"        # in the cache key: a BPF cached by another compiler is not reused
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER = 1, 2, 3
F_SETOWN, F_SETOWN_EX, FIOSETOWN, SIOCSPGRP = 8, 15, 0x8901, 0x8902
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
    # (Not ptrace: init is non-dumpable and holds capabilities the program lacks, so the kernel
    # answers PTRACE_ATTACH with EPERM -- a layer of its own, which test_isolation.py tests alone.)
    + [(name, KILL, (_pid_is(1, INIT),)) for name in ("tgkill", "rt_tgsigqueueinfo", "kcmp", "perf_event_open")]
    + [("setpriority", KILL, (_pid_is(0, PRIO_PROCESS), _pid_is(1, INIT))),
       ("ioprio_set", KILL, (_pid_is(0, IOPRIO_WHO_PROCESS), _pid_is(1, INIT))),
       # The owner of a descriptor gets its SIGIO/SIGURG, or any signal F_SETSIG names: F_SETOWN 1
       # plus F_SETSIG SIGTERM forged a stop request.  (-1: process group 1, should init ever lead one.)
       ("fcntl", KILL, (_pid_is(1, F_SETOWN), _pid_is(2, INIT))),
       ("fcntl", KILL, (_pid_is(1, F_SETOWN), _pid_is(2, LOW32))),
       # process_madvise acts through a pidfd, which a filter cannot read.
       ("process_madvise", KILL, ())]
    + [("setpriority", EPERM, (_pid_is(0, which),)) for which in (PRIO_PGRP, PRIO_USER)]
    + [("ioprio_set", EPERM, (_pid_is(0, which),)) for which in (IOPRIO_WHO_PGRP, IOPRIO_WHO_USER)]
    # The same owner, given in memory a filter cannot read.
    + [("fcntl", EPERM, (_pid_is(1, F_SETOWN_EX),))]
    + [("ioctl", EPERM, (_pid_is(1, which),)) for which in (FIOSETOWN, SIOCSPGRP)]
    # pidfd_send_signal also takes an fd of a /proc/<pid> directory, and /proc/1 is
    # there to open: ENOSYS, so that libc and language runtimes fall back to kill(2).
    + [("pidfd_send_signal", ENOSYS, ())])
# x86_64 numbers of the calls above, so that `seccomp: none` needs no binding (tests compare them with libseccomp's).
BASE_NUMBERS = {"write": 1, "ioctl": 16, "sendmsg": 46, "fcntl": 72, "kill": 62, "rt_sigqueueinfo": 129, "setpriority": 141,
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
    rules, default = policy["rules"], policy["default"]
    # A refusal of the base layer gives way where the policy kills that form anyway: stricter.
    base = [r for r in BASE_RULES if r[1] == KILL or not _policy_kills(r[0], r[2], rules, default)]
    return LAUNCHER_RULES + base + rules, default


def _policy_kills(syscall, form, rules, default):
    """Does the policy kill every call of `syscall` whose arguments meet `form` (32-bit
    equalities)?  The first rule that may match such a call decides; a rule with a
    different value for one of those arguments cannot match."""
    want = {arg: value for arg, _, _, value in form}

    def exact(c):
        return c[1] == "masked_eq" and c[2] == LOW32 and c[0] in want

    for name, action, comps in rules:
        if name != syscall or any(exact(c) and c[3] != want[c[0]] for c in comps):
            continue
        return action == KILL and all(exact(c) for c in comps)
    return default == KILL


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
    """Which libseccomp's syscall table numbered a cached filter, without importing a binding."""
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"):
        path = os.path.join(d, "libseccomp.so.2")
        if hostfacts.exists(path):
            real = hostfacts.realpath(path)
            return f"{real}:{hostfacts.stat(real)[1]}"
    return "unknown"


def known_syscalls():
    """x86_64 name -> number, from libseccomp's table."""
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


# ------------------------------------------------------------------ compiling

def _cache_dir():
    return configfiles.cache_path("seccomp")


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
            entry = marshal.loads(f.read())
        if entry[0] == key and entry[1] == lib and not os.environ.get("SANDBOX_NO_BPF_CACHE"):
            return entry[2]
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        pass
    known = known or (known_syscalls() if policy else BASE_NUMBERS)
    result = _program(policy, known)
    try:
        configfiles.write_atomic(path, marshal.dumps((key, lib, result)))
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
    configfiles.write_atomic(_names_file(), marshal.dumps({"x86_64": {nr: n for n, nr in known_x86_64.items()},
                                                            "i386": i386}))


def syscall_name(nr, arch):
    """'mount' for (165, 'x86_64'); None if unknown.  Reads the table cached at compile time."""
    try:
        with open(_names_file(), "rb") as f:
            names = marshal.loads(f.read())
    except (OSError, EOFError, ValueError):
        try:
            known = known_syscalls()
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
    from . import launch
    from .step import Step
    bpf, log_nrs, log_all, kills = compiled(policy)
    spec = "*" if log_all else (",".join(map(str, log_nrs)) or "-")
    summary = ("load the seccomp filter (BPF, cached) with a listener handed to init" if policy else
               "no seccomp policy (the profile says none): load the base layer alone, which keeps init out "
               "of reach of calls that act on another process by pid")
    return [launch.notify(spec, _kill_spec(kills))], Step(
        "seccomp", summary,
        {"policy": describe(policy), "bpf": f"{len(bpf) // 8} instructions",
         "foreign ABIs": "i386 (int 0x80) and x32 calls are killed and reported"},
        [launch.seccomp(bpf)],
        {"EINVAL": "the kernel refused the filter (a kernel without seccomp user notification: "
                   "Linux >= 5.5 is needed)",
         "EACCES": "no_new_privs was not set before the filter (a bug: please report it)"})
