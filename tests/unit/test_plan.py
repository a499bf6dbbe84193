"""plan.build in-process: the order of the steps, host steps first, and the values
resolved once (the working directory, the limits, the program).  Like every test in
tests/unit, nothing runs in a sandbox: together they take a few seconds."""
import os

import pytest

from sandbox import hostids, report, runner
from sandbox.errors import UsageError
from sandbox.hoststep import HostRun, HostStep
from sandbox.supervise import Outcome

PROFILES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "profiles")
LAUNCHER_ORDER = ["cgroup", "user_namespace", "mount_namespace", "root_tmpfs", "binds", "tmpfs", "inner_binds", "proc",
                  "dev", "pivot_root", "uts_ipc_net", "fork", "rlimits", "drop_privileges", "setsid", "close_fds",
                  "die_with_parent", "seccomp", "exec"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Profiles and filters load into a cache of the test's own, never the caller's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def names(plan):
    return [s.name for s in plan.steps]


def step(plan, name):
    return next(s for s in plan.steps if s.name == name)


def test_steps_in_order_host_steps_first():
    plan = runner.prepare("shell", ["true"])
    host = [s.name for s in plan.steps if isinstance(s, HostStep)]
    assert names(plan)[:len(host)] == host                  # every host step before the launcher's
    assert all(not s.ops for s in plan.steps if isinstance(s, HostStep))
    launcher = names(plan)[len(host):]
    if hostids.caller_is_root():
        assert host[0] == "host_id"
        launcher.remove("sandbox_ids")                      # a root caller's run takes its own ids
    else:
        assert "host_id" not in host
    assert launcher == LAUNCHER_ORDER
    if not plan.cgroup:
        assert "cgroup_delegation" not in host and "run_cgroup" not in host
    assert [o[0] for o in step(plan, "exec").ops] == ["exec"] and plan.ops()[-1][1].name == "exec"


def test_params_come_from_the_profile_and_the_request():
    plan = runner.prepare("shell", ["sh", "-c", "echo hi"], limits={"cpu_time": "1.5s", "memory": "32M"},
                          env={"A": "1"})
    rl = step(plan, "rlimits").params
    assert rl["cpu_time"] == "1.5s" and rl["memory"] == "32M", rl
    assert step(plan, "exec").params["argv"] == ["sh", "-c", "echo hi"] and "A=1" in step(plan, "exec").params["env"]
    assert plan.limits["cpu_time"] == 1.5 and plan.limits["memory"] == 32 << 20


def test_the_working_directory_is_resolved_once(tmp_path):
    assert runner.prepare("shell", ["true"]).cwd == "/box"                      # the profile's
    assert runner.prepare("shell", ["true"], cwd="/tmp").cwd == "/tmp"          # the caller's first
    bare = tmp_path / "bare.yaml"            # native without its cwd
    with open(os.path.join(PROFILES, "native.yaml")) as f:
        native = f.read()
    assert "\ncwd: /box\n" in native
    bare.write_text(native.replace("\ncwd: /box\n", "\n"))
    plan = runner.prepare(str(bare), ["true"])
    assert plan.cwd == "/" and step(plan, "fork").params["cwd"] == "/"
    assert ("chdir", "/") in step(plan, "fork").ops


def test_files_in_go_by_the_resolved_working_directory(tmp_path):
    """With files_out the files for the working directory are copied into its tmpfs, the others bound."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    plan = runner.prepare("shell", ["true"], cwd="/tmp", keep_workdir=True, scratch=str(scratch),
                          files_in={"/tmp/in.txt": b"given", "/box/other.txt": b"bound"})
    assert "files_out" in step(plan, "fork").params and ("keepdir", "/tmp") in step(plan, "fork").ops
    text = "\n".join(f"{k}: {v}" for s in plan.steps for k, v in s.params.items())
    assert "/tmp/in.txt" in text and "/box/other.txt" in text
    assert sorted(os.listdir(scratch)) == ["in-0", "in-1"]
    with pytest.raises(UsageError, match="files_in"):
        runner.prepare("shell", ["true"], files_in={"relative.txt": b""}, scratch=str(scratch))


def test_a_host_step_acts_on_its_run_only(monkeypatch):
    """The host id step claims for the HostRun it is given and releases when that run closes."""
    if not hostids.caller_is_root():
        pytest.skip(f"claiming a host id takes a lock in {hostids.LOCK_DIR}, root's")
    monkeypatch.setenv(hostids.ENV, "61990-61991")
    s = hostids.step()
    a, b = HostRun(), HostRun()
    s.act(a)
    s.act(b)
    try:
        assert a.host.uid != b.host.uid and a.owner() == (a.host.uid, a.host.uid)
    finally:
        a.close()
        b.close()
    assert a.host._fd is None and b.host._fd is None


def test_report_marks_a_cancelled_run():
    plan = runner.prepare("shell", ["true"])
    o = Outcome()
    o.t_spawn, o.t_exec, o.t_end, o.killed = 0.0, 0.001, 0.5, "cancelled"
    r = report.build(plan, o)
    assert r.status == "SG" and r.cancelled is True
    o.killed, o.wstatus = None, 0
    assert report.build(plan, o).cancelled is False
