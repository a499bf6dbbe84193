"""A step of the plan: a name, what it does, its parameters (for --explain),
the launcher ops that carry it out, and fixes for the errors it can hit.  And the
plan itself: the steps in order, with what a run needs besides (plan.py builds it).
Both are kept apart from plan.py so that a run whose plan comes from plancache.py
imports none of the modules that build one."""
import os

from . import launch


class Step:
    __slots__ = ("name", "summary", "params", "ops", "hints")

    def __init__(self, name, summary, params=None, ops=(), hints=None):
        self.name = name            # stable identifier, shown in errors and --explain
        self.summary = summary      # one line: what and why
        self.params = params or {}  # shown by --explain
        self.ops = list(ops)        # the launcher's ops, from launch.py's constructors
        self.hints = hints or {}    # errno name -> how to fix


class Delegation:
    """Where runs' cgroups go: the subtree they may use (`base`), or why there is none (`reason`).
    cgroup.discover finds it; it is here, with the plan that holds it, for plancache."""
    __slots__ = ("base", "reason", "leaf")

    def __init__(self, base=None, reason=None, leaf=None):
        self.base, self.reason, self.leaf = base, reason, leaf   # leaf: where the runner must move first

    def __bool__(self):
        return self.base is not None


class Plan:
    __slots__ = ("profile", "steps", "argv", "env", "cwd", "limits", "seccomp", "cgroup", "rootfs", "host_ids",
                 "keep_workdir")

    def __init__(self, profile, steps, argv, env, cwd, limits, seccomp, cgroup, rootfs=None, host_ids=False,
                 keep_workdir=False):
        self.profile, self.steps, self.argv, self.env, self.cwd, self.limits = profile, steps, argv, env, cwd, limits
        self.seccomp = seccomp
        self.cgroup = cgroup        # a Delegation: where each run's cgroup goes, or why none
        self.rootfs = rootfs        # a rootfs.ImageRoot when / is an image
        self.host_ids = host_ids    # True: each run claims an unprivileged host id (a root caller)
        self.keep_workdir = keep_workdir    # the launcher sends the working directory's fd back (fd 7)

    def ops(self):
        """(op, step) pairs in execution order; the launcher reports failures by op index."""
        return [(o, s) for s in self.steps for o in s.ops]

    def encode(self, cgroup_path=None, host_id=None):
        """The launcher's input; `cgroup_path` is this run's fresh cgroup, `host_id` the
        unprivileged host id a root caller's run claimed (hostids.py)."""
        return launch.encode([o for s in self.steps for o in s.ops], cgroup_path, host_id)

    def explain(self):
        chain = " <- ".join(os.path.basename(p) for p in self.profile.chain)
        lines = [f"plan for profile {self.profile.name} ({chain}), {len(self.steps)} steps, in this order:"]
        for i, s in enumerate(self.steps, 1):
            lines.append(f"{i:3}. {s.name:<16} {s.summary}")
            for key, value in s.params.items():
                if isinstance(value, list):
                    value = ", ".join(map(str, value)) or "(none)"
                lines.append(f"       {key}: {value}")
        return "\n".join(lines)
