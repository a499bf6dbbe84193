"""cgroup v2: a fresh cgroup per run in a delegated subtree, for limits and
accounting that rlimits cannot give (whole-tree memory with page cache and
tmpfs, CPU of orphans, processes per sandbox rather than per uid).

Where runs go: the runner's own cgroup when it is delegated (writable, with
the memory, pids and cpu controllers available: what systemd's Delegate=yes
gives), or a parent named in the profile (a judge service running as root).
The no-internal-processes rule forbids enabling controllers for children of a
cgroup that holds processes, so the runner first moves itself into a leaf,
`supervisor`, of that subtree.

Each run gets `run-<pid>-<n>`, never reused (a reused cgroup's memory.peak
would carry the last run's peak), removed after the run; ones left by a
runner that was SIGKILLed are removed at the next start.
"""
import itertools
import os
import time

from . import hostfacts
from .errors import SetupError
from .step import Delegation

CONTROLLERS = ("memory", "pids", "cpu")
HOW_TO_DELEGATE = ("start it in a delegated cgroup: systemd-run --user --scope -p Delegate=yes sandbox run ...; "
                   "or, for a service, give the profile a cgroup_parent: the service owns (Delegate=yes in its unit)")
_counter = itertools.count(1)


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _mount_point():
    try:
        for line in hostfacts.read("/proc/self/mountinfo").splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split()[4]
    except OSError:
        pass
    return None


def _own_cgroup():
    try:
        for line in hostfacts.read("/proc/self/cgroup").splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


def discover(parent=None):
    """Read-only: find the subtree, or say why there is none.  Nothing changes."""
    mount = _mount_point()
    if mount is None:
        return Delegation(reason="no cgroup2 filesystem is mounted")
    if parent is None:
        own = _own_cgroup()
        if own is None:
            return Delegation(reason="this process is in no cgroup v2 hierarchy (a cgroup v1-only host)")
        base = os.path.normpath(mount + own)
        if os.path.basename(base) == "supervisor" and hostfacts.access(f"{os.path.dirname(base)}/cgroup.procs", os.W_OK):
            base = os.path.dirname(base)        # already in our own leaf (an earlier runner put us here)
    else:
        base = parent if parent.startswith("/") else os.path.join(mount, parent)   # relative: to the mount
        if not (base + "/").startswith(mount.rstrip("/") + "/"):
            return Delegation(reason=f"cgroup_parent {base} is not inside the cgroup2 mount {mount}")
    try:
        available = hostfacts.read(f"{base}/cgroup.controllers").split()
    except OSError as e:
        return Delegation(reason=f"cannot read {base}: {e.strerror}")
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        return Delegation(reason=f"the controllers {', '.join(missing)} are not available in {base} "
                                 f"(cgroup.controllers: {' '.join(available) or 'none'})")
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        if not hostfacts.access(f"{base}/{name}", os.W_OK):
            return Delegation(reason=f"{base} is not delegated to this user ({name} is not writable)")
    d = Delegation(base)
    own = _own_cgroup()
    if parent is None and own is not None and os.path.normpath(mount + own) == base:
        d.leaf = f"{base}/supervisor"           # we are in the subtree's root: leave it for a leaf first
    return d


def enable(d, cpuset=False):
    """Move the runner into its leaf if it must, enable the controllers for
    children (cpuset too when a profile pins CPUs), remove runs' cgroups that
    dead runners left.  Returns an error text, or None."""
    try:
        if d.leaf:
            os.makedirs(d.leaf, exist_ok=True)
            _write(f"{d.leaf}/cgroup.procs", "0")          # this whole process
        enabled = _read(f"{d.base}/cgroup.subtree_control").split()
        if cpuset and "cpuset" not in _read(f"{d.base}/cgroup.controllers").split():
            return f"the cpuset controller is not available in {d.base}, and the profile sets cpuset"
        wanted = [c for c in CONTROLLERS + (("cpuset",) if cpuset else ()) if c not in enabled]
        if wanted:
            _write(f"{d.base}/cgroup.subtree_control", " ".join("+" + c for c in wanted))
    except OSError as e:
        why = "other processes share that cgroup (move them out, or use a scope of its own)" \
            if e.errno == 16 else e.strerror
        return f"cannot enable {', '.join(CONTROLLERS)} for children of {d.base}: {why}"
    clean_stale(d.base)
    return None


def clean_stale(base):
    """Remove run cgroups whose runner is gone (SIGKILLed before it could)."""
    try:
        names = [n for n in os.listdir(base) if n.startswith("run-")]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        RunCgroup(f"{base}/{name}").remove()


def settings(limits, cpuset=None):
    """The files a run's cgroup is given, as (name, value): RunCgroup.create
    writes them and --explain shows them.  Files not listed keep the kernel's
    default (max)."""
    out = []
    if limits["memory"] is not None:
        # oom.group: an OOM kills the whole sandbox at once, its init included, rather than
        # whichever processes the killer picks one after another (a verdict that depends on
        # luck); CPU stays exact, it comes from cpu.stat.
        out += [("memory.max", str(limits["memory"])), ("memory.swap.max", "0"), ("memory.oom.group", "1")]
    if limits["processes"] is not None:
        out.append(("pids.max", str(limits["processes"] + 1)))         # + the sandbox's init
    if limits.get("cpus") is not None:
        out.append(("cpu.max", f"{int(limits['cpus'] * 100000)} 100000"))
    if cpuset:
        out.append(("cpuset.cpus", cpuset))
    return out


class RunCgroup:
    """One run's cgroup."""
    __slots__ = ("path", "memory_samples", "pids_samples")

    def __init__(self, path):
        self.path = path
        self.memory_samples = 0
        self.pids_samples = 0

    @classmethod
    def create(cls, base, limits, cpuset=None):
        cg = cls(f"{base}/run-{os.getpid()}-{next(_counter)}")
        os.mkdir(cg.path)
        for name, value in settings(limits, cpuset):
            try:
                _write(f"{cg.path}/{name}", value)
            except OSError as e:
                cg.remove()
                raise OSError(e.errno, f"cannot write {value!r} to {name}: {e.strerror}") from None
        return cg

    def _kv(self, name):
        try:
            return dict(line.split() for line in _read(f"{self.path}/{name}").splitlines())
        except (OSError, ValueError):
            return {}

    def _int(self, name):
        try:
            return int(_read(f"{self.path}/{name}").split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def usage_us(self):
        return int(self._kv("cpu.stat").get("usage_usec", 0))

    def sample(self):
        """Between two samples of init: memory and processes now (for kernels
        without memory.peak / pids.peak)."""
        mem, pids = self._int("memory.current"), self._int("pids.current")
        self.memory_samples = max(self.memory_samples, mem or 0)
        self.pids_samples = max(self.pids_samples, pids or 0)

    def final(self):
        """What the run used, read before the cgroup is removed."""
        cpu = self._kv("cpu.stat")
        peak = self._int("memory.peak")
        pids_peak = self._int("pids.peak")
        return {"user_us": int(cpu.get("user_usec", 0)), "system_us": int(cpu.get("system_usec", 0)),
                "memory_peak": peak if peak is not None else self.memory_samples,
                "memory_peak_source": "memory.peak" if peak is not None else "memory.current, sampled",
                "oom_kills": int(self._kv("memory.events").get("oom_kill", 0)),
                "pids_peak": pids_peak if pids_peak is not None else self.pids_samples,
                "pids_max_hits": int(self._kv("pids.events").get("max", 0))}

    def remove(self):
        """Kill whatever is left and remove the cgroup (retrying while the
        kernel finishes tearing the processes down)."""
        try:
            _write(f"{self.path}/cgroup.kill", "1")
        except OSError:
            try:
                for pid in _read(f"{self.path}/cgroup.procs").split():
                    os.kill(int(pid), 9)
            except (OSError, ValueError):
                pass
        for _ in range(200):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.005)


def host_steps(d, limits, cpuset):
    """The runner's part, before each run: its place in the tree, then the run's own cgroup."""
    if not d:
        return []
    from .hoststep import HostStep
    wanted = CONTROLLERS + (("cpuset",) if cpuset else ())

    def enable_for_run(run):
        error = enable(d, cpuset=bool(cpuset))
        if error is not None:
            raise SetupError(error, "cgroup", HOW_TO_DELEGATE)

    def create_for_run(run):
        try:
            run.cgroup = RunCgroup.create(d.base, limits, cpuset)
        except OSError as e:
            raise SetupError(f"cannot set up a cgroup in {d.base}: {e.strerror}", "cgroup", HOW_TO_DELEGATE) from None
        run.on_close(run.cgroup.remove)

    enable_params = {"parent": d.base, "controllers for children": " ".join(wanted),
                     "removes": "run cgroups whose runner is gone"}
    if d.leaf:
        enable_params["runner moves to"] = d.leaf + " (no internal processes where controllers are enabled)"
    return [HostStep("cgroup_delegation", "enable the controllers in the delegated subtree for the runs' cgroups",
                     enable_params, enable_for_run),
            HostStep("run_cgroup", "create this run's cgroup and write its limits",
                     {"path": f"{d.base}/run-<pid>-<n>, fresh for every run, removed after it",
                      **dict(settings(limits, cpuset)), "files not listed": "the kernel's defaults (max)"},
                     create_for_run)]


def step(d, limits, cpuset):
    from . import launch
    from .step import Step
    if not d:
        return Step("cgroup", "no cgroup: limits by rlimits and sampling (reported as degraded)",
                    {"unavailable": d.reason, "to get one": HOW_TO_DELEGATE}, [])
    return Step("cgroup", "the sandbox's init is born in the run's cgroup (CLONE_INTO_CGROUP)",
                {"cgroup": "the one run_cgroup created"}, [launch.cgroup(launch.RUN_CGROUP)],
                {"EACCES": "the cgroup is not writable by you: " + HOW_TO_DELEGATE,
                 "EPERM": "the kernel refused to place the sandbox in its cgroup: " + HOW_TO_DELEGATE})
