"""Reporting: the raw outcome of a run becomes a Result with one verdict.

Verdict precedence when several apply: XX > TLE > MLE > OLE > SYS > SG > RE > OK.
"""
import errno as errno_mod
import os

from . import limits as limits_mod
from .errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_SANDBOX
from .units import format_duration, format_size, human_size
from .version import __version__

PRECEDENCE = ("XX", "TLE", "MLE", "OLE", "SYS", "SG", "RE", "OK")
SIGNAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
            8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
            14: "SIGALRM", 15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS"}
SIGKILL, SIGXCPU, SIGXFSZ, SIGSYS = 9, 24, 25, 31

FIELDS = ("status", "message", "exit_code", "signal", "signal_name", "limit_hit", "killed_by_sandbox",
          "cpu_time_s", "user_time_s", "sys_time_s", "cpu_vanished_s", "wall_time_s", "memory_peak_bytes",
          "memory_counted", "max_rss_bytes", "init",
          "processes_peak", "oom_kills", "stdout_bytes", "stderr_bytes", "output_truncated", "context_switches",
          "setup_time_s", "limits", "seccomp", "syscall", "seccomp_logged", "cgroup", "rootfs", "degraded", "root",
          "host_ids", "profile", "argv", "sandbox_version")


class Result:
    """What a run did.  Every FIELDS entry is an attribute; `stdout`/`stderr`
    hold captured bytes (None when relayed); `cancelled`: the caller stopped the run
    (execute's cancel) and nothing else decided its verdict (SG)."""
    __slots__ = FIELDS + ("stdout", "stderr", "exit_status", "files", "file_errors", "cancelled")

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))

    def to_dict(self):
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self):
        import json
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __repr__(self):
        return f"<Result {self.status}: {self.message}>"


def setup_failure(plan, op_index, err, text):
    """Message, fix and exit code for a failed step, from the op that failed."""
    ops = plan.ops()
    step = ops[op_index][1] if 0 <= op_index < len(ops) else None
    name = errno_mod.errorcode.get(err, str(err))
    what = f"step '{step.name if step else '?'}' failed: {text}: {os.strerror(err)} ({name})"
    fix = (step.hints.get(name) if step else None) or \
        "this is unexpected: please report it with the output of `sandbox run --explain` and `uname -r`"
    code = EXIT_SANDBOX
    if step is not None and step.name == "exec":
        code = EXIT_NOT_FOUND if err in (errno_mod.ENOENT, errno_mod.ENOTDIR) else EXIT_CANNOT_EXEC
    return what, fix, code


ARCH_NAMES = {0xC000003E: "x86_64", 0x40000003: "i386"}


def _syscall(nr, arch_id):
    """{"name", "number", "arch"} for a call the kernel reported."""
    from .seccomp import syscall_name
    arch = ARCH_NAMES.get(arch_id, hex(arch_id))
    if arch == "x86_64" and nr & 0x40000000:
        arch = "x32"
    return {"name": syscall_name(nr, arch), "number": nr, "arch": arch}


def build(plan, o, stdout=None, stderr=None, degraded=(), cgroup=None, cgroup_path=None, host_ids=None):
    """`cgroup`: what the run's cgroup measured (cgroup.RunCgroup.final), if it had one;
    `host_ids`: (uid, gid) the run's processes had on the host, when not the caller's own."""
    limits = plan.limits
    ru = o.rusage or (0, 0, 0, 0, 0)
    # CPU: the cgroup's, which counts every process that ever ran in it, else the
    # rusage of init's tree; either way without init's own work.
    user_us, sys_us = (cgroup["user_us"], cgroup["system_us"]) if cgroup else (ru[0], ru[1])
    user = max(0, user_us - o.init_self[0]) / 1e6
    sys_ = max(0, sys_us - o.init_self[1]) / 1e6
    # processes the kernel reaped for a parent that ignores SIGCHLD reach no rusage: init
    # counted them as last sampled (a cgroup counts them itself)
    vanished = 0.0 if cgroup else o.cpu_vanished_us / 1e6
    cpu = user + sys_ + vanished
    ran = o.t_exec is not None and o.setup_error is None
    wall = (o.t_end - o.t_exec) if ran else 0.0
    max_rss = ru[2] * 1024
    peak = cgroup["memory_peak"] if cgroup else max(o.mem_peak, max_rss)
    oom_kills = cgroup["oom_kills"] if cgroup else 0
    exit_code = signal = None
    if o.wstatus is not None:
        if os.WIFEXITED(o.wstatus):
            exit_code = os.WEXITSTATUS(o.wstatus)
        elif os.WIFSIGNALED(o.wstatus):
            signal = os.WTERMSIG(o.wstatus)
    elif (o.killed is not None or oom_kills) and ran:
        signal = SIGKILL     # init was killed (by us, or with the whole cgroup by the OOM killer)

    degraded = list(degraded) + ["pivot_root" if d == "chroot" else d for d in o.degraded]
    status, limit_hit, message, code = _verdict(plan, o, limits, ran, cpu, wall, peak, exit_code, signal, oom_kills,
                                                cgroup["pids_max_hits"] if cgroup else 0)
    if code is None:
        code = exit_code if exit_code is not None else 128 + (signal or 0)
    result = Result(
        status=status, message=message, exit_code=exit_code, signal=signal,
        signal_name=SIGNAMES.get(signal) if signal else None, limit_hit=limit_hit,
        killed_by_sandbox=o.killed is not None and ran,
        cpu_time_s=round(cpu, 6), user_time_s=round(user, 6), sys_time_s=round(sys_, 6),
        cpu_vanished_s=round(vanished, 6), wall_time_s=round(wall, 6), memory_peak_bytes=peak,
        memory_counted=_memory_counted(o, cgroup), max_rss_bytes=max_rss,
        init={"cpu_s": round(sum(o.init_self) / 1e6, 6), "samples": o.samples},
        processes_peak=(cgroup["pids_peak"] - 1 if cgroup and cgroup["pids_peak"] else o.procs_peak) or (1 if ran else 0),
        oom_kills=oom_kills,
        stdout_bytes=o.out_bytes, stderr_bytes=o.err_bytes, output_truncated=o.truncated,
        context_switches={"voluntary": ru[3], "involuntary": ru[4]},
        setup_time_s=round((o.t_exec or o.t_end) - o.t_spawn, 6),
        limits=limits_mod.report(limits, cgroup=bool(cgroup)),
        seccomp=plan.seccomp["name"] if plan.seccomp else "none",
        syscall=dict(_syscall(o.violation[0], o.violation[1]), args=o.violation[2]) if o.violation else None,
        seccomp_logged=[_syscall(nr, arch) for nr, arch in o.logged],
        cgroup={"path": cgroup_path, "memory_peak_source": cgroup["memory_peak_source"]} if cgroup else
               {"path": None, "unavailable": plan.cgroup.reason},
        rootfs=_rootfs(plan),
        degraded=degraded,
        root="chroot" if "chroot" in o.degraded else "pivot_root",
        host_ids={"uid": host_ids[0], "gid": host_ids[1], "claimed": True} if host_ids else
                 {"uid": os.getuid(), "gid": os.getgid(), "claimed": False},
        profile=plan.profile.name, argv=plan.argv, sandbox_version=__version__,
        stdout=stdout, stderr=stderr)
    result.exit_status = code
    result.cancelled = status == "SG" and o.killed == "cancelled"
    return result


def _memory_counted(o, cgroup):
    """What memory_peak_bytes is made of."""
    if cgroup:
        return {"what": [f"cgroup {cgroup['memory_peak_source']}"], "at_peak": None}
    parts = dict(zip(("processes", "sysv_shm", "dev_shm"), o.mem_at_peak or (0, 0, 0)))
    return {"what": ["anonymous", "largest_file_backed", "shared_proportional", "sysv_shm", "dev_shm", "max_rss"],
            "at_peak": parts}


TAMPERING = {"rlimit_cpu": "lowered the CPU time limit of the sandbox's init (prlimit64 on pid 1) to where the "
                           "kernel would kill it",
             "rlimit_nofile": "lowered the open-files limit of the sandbox's init (prlimit64 on pid 1) below what "
                              "it needs to supervise",
             "oom_score_adj": "lowered its oom_score_adj and made itself non-dumpable so that it could not be "
                              "raised back"}


def _rootfs(plan):
    if plan.rootfs is None:
        return {"image": None, "backend": "host directories, read-only binds"}
    from .rootfs import report
    return report(plan.rootfs)


def _verdict(plan, o, limits, ran, cpu, wall, peak, exit_code, signal, oom_kills=0, pids_max_hits=0):
    """(status, limit_hit, message, exit code override) by the documented precedence."""
    if o.setup_error is not None:
        what, fix, code = setup_failure(plan, *o.setup_error)
        return "XX", None, f"{what}\n  fix: {fix}", code
    if o.killed == "setup_timeout":
        return "XX", None, f"the sandbox did not start within {int(o.t_end - o.t_spawn)} s", EXIT_SANDBOX
    if o.wstatus is None and o.killed is None and o.violation is None and not oom_kills:
        return "XX", None, "the sandbox's init died before the program ended (killed from outside?)", EXIT_SANDBOX
    cpu_limit, wall_limit, mem_limit = limits["cpu_time"], limits["wall_time"], limits["memory"]
    if o.killed == "cpu_time" or signal == SIGXCPU or (cpu_limit is not None and cpu > cpu_limit):
        return "TLE", "cpu_time", (f"CPU time limit exceeded: {cpu:.3f} s of CPU used, limit "
                                   f"{format_duration(cpu_limit)}"), None
    if o.killed == "wall_time" or (wall_limit is not None and wall > wall_limit):
        return "TLE", "wall_time", (f"wall time limit exceeded: {wall:.3f} s elapsed ({cpu:.3f} s of CPU), limit "
                                    f"{format_duration(wall_limit)}"), None
    if o.killed == "memory" or oom_kills or (mem_limit is not None and peak > mem_limit):
        how = ("the kernel's OOM killer acted in the run's cgroup" if oom_kills else
               "the monitor killed the sandbox" if o.killed == "memory" else "measured at the end")
        return "MLE", "memory", (f"memory limit exceeded: peak {human_size(peak)}, limit "
                                 f"{format_size(mem_limit)} ({how})"), None
    if o.killed == "output":
        return "OLE", "output", (f"output limit exceeded: more than {format_size(limits['output'])} written to "
                                 "stdout and stderr (output truncated there)"), None
    if signal == SIGXFSZ:
        return "OLE", "file_size", (f"file size limit exceeded: a write went past "
                                    f"{format_size(limits['file_size'])} (SIGXFSZ)"), None
    if o.violation is not None:
        call = _syscall(o.violation[0], o.violation[1])
        name = call["name"] or "an unknown system call"
        where = "" if call["arch"] == "x86_64" else f" through the {call['arch']} ABI"
        from .seccomp import culprit
        return "SYS", None, (f"killed by {culprit(plan.seccomp, call['name'], call['arch'], o.violation[2])}: "
                             f"{name} (number {call['number']}{where}) is not allowed"), None
    if o.tampered is not None:
        return "SYS", None, ("stopped by the sandbox: the program "
                             f"{TAMPERING.get(o.tampered, 'tampered with its supervisor: ' + o.tampered)}"), None
    if signal == SIGSYS:
        return "SYS", None, "killed by a disallowed system call (SIGSYS)", None
    if o.killed == "cancelled":
        return "SG", None, "stopped by the caller (cancelled)", None
    if signal is not None:
        return "SG", None, f"killed by signal {signal} ({SIGNAMES.get(signal, '?')})", None
    if exit_code:
        hint = ""
        if limits["processes"] is not None and (pids_max_hits or o.procs_peak >= limits["processes"]):
            hint = f" (the processes limit {limits['processes']} was reached)"
        return "RE", None, f"exited with status {exit_code}{hint}", None
    return "OK", None, "exited with status 0", None
