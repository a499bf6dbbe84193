"""Steps of the plan that the runner carries out itself, on the host, before it spawns the
launcher: what needs the runner's own process (a lock held for the run, the runner's place
in the cgroup tree) or the caller's access to host files.

They are steps like the others, in the plan's order and shown by --explain, but they carry
no launcher ops: `act(run)` does the step for one run, records what it made in `run` (a
HostRun) and registers how to undo it.  A prepared plan is run many times, from several
threads at once (judge.Artifact, judge.interact), so a step keeps nothing of a run itself.
"""
from .step import Step


class HostStep(Step):
    __slots__ = ("act",)

    def __init__(self, name, summary, params, act):
        super().__init__(name, "on the host, before the launcher starts: " + summary, params)
        self.act = act


class HostRun:
    """What one run's host steps made: the claimed host id (hostids.Claim), the run's cgroup
    (cgroup.RunCgroup).  close() undoes the steps, the last one first."""
    __slots__ = ("host", "cgroup", "_undo")

    def __init__(self):
        self.host = self.cgroup = None
        self._undo = []

    def on_close(self, undo):
        self._undo.append(undo)

    def owner(self):
        """(uid, gid) that the run's files belong to, when not the caller (a claimed host id)."""
        return (self.host.uid, self.host.gid) if self.host else None

    def close(self):
        while self._undo:
            self._undo.pop()()
