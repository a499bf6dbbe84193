"""Limits: what the profile and the command line ask for, and how each is
enforced without cgroups.

Without cgroups two mechanisms work together.  The sandbox's init samples
every process of the sandbox every 10 ms (CPU of the whole tree, memory of the
whole tree) and the runner kills the sandbox the moment a sample is over a
limit; rlimits set on the program are backstops that hold even if sampling
lags, and the only enforcement for the per-process limits (file size, open
files, stack).

With a delegated cgroup (cgroup.py) the kernel enforces memory (memory.max,
no swap), processes (pids.max) and CPU rate (cpu.max), and CPU time is read
from the cgroup's cpu.stat, which counts every process that ever ran in it.
No RLIMIT_AS backstop then: it breaks runtimes that reserve address space
(the JVM, Go) and the cgroup already holds the line.
"""
import math

from . import hostfacts, launch
from .step import Step
from .units import format_duration, format_size

RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_AS = 0, 1, 3, 4, 6, 7, 9
RLIMIT_MEMLOCK, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE = 8, 11, 12
# Per-user limits the kernel charges to the caller's own allowance as well (one run took all 96365
# of the caller's pending signals, and the caller's processes could queue none): capped, never raised.
PER_USER_CAPS = ((RLIMIT_SIGPENDING, 256, "pending signals 256"), (RLIMIT_MSGQUEUE, 256 << 10, "message queues 256K"),
                 (RLIMIT_MEMLOCK, 64 << 10, "locked memory 64K"))
SAMPLE_MS = 10
AS_HEADROOM = 1 << 30   # default address-space backstop above the memory limit

# How each limit is enforced, for the report's "limits" section.
CGROUP_MECHANISMS = {
    "cpu_time": "cgroup: cpu.stat usage_usec of the run's cgroup, every process ever in it, sampled every 10 ms; "
                "RLIMIT_CPU per process as a backstop",
    "memory": "cgroup: memory.max of the run's cgroup (page cache and tmpfs included), memory.swap.max 0; "
              "the kernel's OOM killer acts at the limit",
    "processes": "cgroup: pids.max of the run's cgroup (threads count); RLIMIT_NPROC in the sandbox's user namespace",
    "cpus": "cgroup: cpu.max (CPU time per second)",
}
MECHANISMS = {
    "cpu_time": "monitor: CPU of the whole process tree, sampled every 10 ms; RLIMIT_CPU per process as a backstop",
    "wall_time": "runner: monotonic clock from exec",
    "memory": "monitor: memory of the whole process tree, sampled every 10 ms; RLIMIT_AS per process as a backstop",
    "address_space": "RLIMIT_AS per process",
    "processes": "RLIMIT_NPROC, counted inside the sandbox's own user namespace (threads count)",
    "file_size": "RLIMIT_FSIZE per process",
    "open_files": "RLIMIT_NOFILE per process",
    "stack": "RLIMIT_STACK per process",
    "output": "runner: bytes read from the program's stdout and stderr pipes",
    "cpus": "needs a cgroup (cpu.max); not enforced without one",
}


def effective(profile, overrides=None, cgroup=False):
    """The limits of a run: the profile's, overridden by the caller's."""
    limits = {k: None for k in MECHANISMS}
    limits.update(profile.get("limits", {}))
    for key, value in (overrides or {}).items():
        limits[key] = value
    explicit = "address_space" in profile.get("limits", {}) or "address_space" in (overrides or {})
    if not cgroup and not explicit and limits["memory"] is not None:
        limits["address_space"] = limits["memory"] + AS_HEADROOM
    return limits


def _lim(value):
    return -1 if value is None else value


def _rlimits(limits):
    """(limit key, resource, soft, hard) for each rlimit a run sets."""
    out = []
    cpu = limits["cpu_time"]
    if cpu is not None:
        # Backstop only: SIGXCPU a second after the limit, SIGKILL a second later.
        soft = math.ceil(cpu) + 1
        out.append(("cpu_time", RLIMIT_CPU, soft, soft + 1))
    for key, res in (("address_space", RLIMIT_AS), ("file_size", RLIMIT_FSIZE),
                     ("open_files", RLIMIT_NOFILE), ("stack", RLIMIT_STACK)):
        if limits[key] is not None:
            out.append((key, res, limits[key], limits[key]))
    if limits["processes"] is not None:
        # +1: the sandbox's init runs as the same user in the same namespace.
        out.append(("processes", RLIMIT_NPROC, limits["processes"] + 1, limits["processes"] + 1))
    return out


def above_caller(limits):
    """(key, asked, hard) for the first rlimit above the caller's own hard limit, or None.  setrlimit
    would refuse it (EPERM) inside the sandbox: raising a hard limit needs CAP_SYS_RESOURCE in the
    host's user namespace, which no sandbox has, so the plan refuses it before anything runs."""
    callers = hostfacts.hard_limits()
    for key, res, _, hard in _rlimits(limits):
        caller = callers[res]
        if caller != -1 and hard > caller:          # -1: unlimited (RLIM_INFINITY)
            return key, hard, caller
    return None


def step(limits):
    ops = [launch.rlimit(res, soft, hard) for _, res, soft, hard in _rlimits(limits)]
    ops.append(launch.rlimit(RLIMIT_CORE, 0, 0))
    ops += [launch.rlimitcap(res, cap) for res, cap, _ in PER_USER_CAPS]
    # If memory runs out, the program is the one to go, never the sandbox's init.
    ops.append(launch.oomadj(1000))
    return Step("rlimits", "per-process resource limits (backstops for the monitored ones)",
                {k: describe(k, v) for k, v in limits.items()} | {"core": "0 (no core dumps)",
                                                                   "per-user caps": ", ".join(d for *_, d in PER_USER_CAPS),
                                                                   "oom_score_adj": "1000 (the program goes first)"},
                ops,
                {"EPERM": "a hard limit of the caller is lower than the profile asks: lower the limit "
                          "or raise the caller's hard limit (ulimit -H)",
                 "EINVAL": "the limit value is out of range for this kernel"})


def describe(key, value):
    if key in ("cpu_time", "wall_time"):
        return format_duration(value)
    if key in ("processes", "open_files", "cpus"):
        return "unlimited" if value is None else str(value)
    return format_size(value)


def report(limits, cgroup=False):
    """The report's "limits" section: each effective limit and its mechanism."""
    out = {}
    for key, value in limits.items():
        mechanism = (CGROUP_MECHANISMS.get(key) if cgroup else None) or MECHANISMS[key]
        out[key] = {"value": value, "unit": "s" if key.endswith("_time") else
                    ("count" if key in ("processes", "open_files") else "cpus" if key == "cpus" else "bytes"),
                    "enforced_by": mechanism if value is not None else "not limited"}
    return out
