"""cgroup v2 limits and accounting.

On this kind of host cgroup v2 has no controllers (they are bound to v1), so the
real tests run in a QEMU guest with a pure cgroup2 hierarchy (tests/vmlane.py):
one guest runs every scenario (tests/vm_guest.py) as an unprivileged user in a
delegated scope, and the tests below check what it found.  They are skipped only
where the guest truly cannot run (not root, no qemu), with the reason.  The host
part checks the path without delegation."""
import json
import os
import sys
import warnings

import pytest

from conftest import SANDBOX, no_traceback

import vmlane

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20


def _boot_guest(user):
    return vmlane.run(["/usr/bin/python3", os.path.join(HERE, "vm_guest.py"), SANDBOX, user.name], timeout=480)


def _failure(r):
    tasks = r.diag[:8000] or ("(none: its watchdog never ran, so the whole guest stood still, not one task in it)"
                              if r.returncode == vmlane.EXIT_TIMEOUT else "(none: it did not hang)")
    return (f"the guest failed (rc={r.returncode}, {r.wall_s:.0f} s)\n--- guest stderr (progress):\n{r.stderr[-4000:]}\n"
            f"--- guest stdout:\n{r.stdout[-1000:]}\n--- guest tasks at its watchdog:\n{tasks}\n"
            f"--- console:\n{r.console[-3000:]}")


@pytest.fixture(scope="session")
def guest(user):
    why = vmlane.unavailable()
    if why:
        pytest.skip(f"cgroup v2 VM lane unavailable: {why}")
    r = _boot_guest(user)
    if r.returncode in (vmlane.EXIT_TIMEOUT, vmlane.EXIT_VMFAIL):
        # A guest that hangs or whose VM fails is booted once more, and said so: the whole guest
        # hung once in CI with nothing on its console (the diagnosis below now shows where).  A
        # second failure, or a scenario that fails, fails every test of the lane.
        warnings.warn(f"cgroup VM lane: the guest failed and was booted again.\n{_failure(r)}", stacklevel=2)
        r = _boot_guest(user)
    if r.returncode != 0:
        pytest.fail(_failure(r), pytrace=False)
    return json.loads(r.stdout.splitlines()[-1])


def report(fact):
    assert fact["report"], f"no report (rc={fact['rc']}): {fact['stderr']}"
    return fact["report"]


def test_memory_bomb_is_mle_with_an_oom_kill_and_a_peak_near_the_limit(guest):
    fact = guest["memory_bomb"]
    rep = report(fact)
    assert rep["status"] == "MLE" and rep["oom_kills"] >= 1, fact
    assert 48 * MiB <= rep["memory_peak_bytes"] <= 64 * MiB, fact
    assert "memory.peak" == rep["cgroup"]["memory_peak_source"], fact
    assert "OOM killer" in rep["message"] and "survived" not in fact["stdout"], fact
    assert rep["limits"]["memory"]["enforced_by"].startswith("cgroup: memory.max")
    assert rep["limits"]["address_space"]["value"] is None          # no RLIMIT_AS to break JVMs with
    assert rep["degraded"] == [], fact


def test_fork_bomb_stops_at_pids_max_and_the_guest_stays_responsive(guest):
    rep = report(guest["fork_bomb"])
    assert rep["processes_peak"] == 20, rep
    assert rep["limits"]["processes"]["enforced_by"].startswith("cgroup: pids.max")
    assert guest["after_fork_bomb"]["stdout"] == "responsive\n"


def test_an_orphaned_cpu_burner_is_counted_and_killed(guest):
    fact = guest["orphan_burner"]
    rep = report(fact)
    assert rep["status"] == "OK" and rep["cpu_time_s"] >= 0.5, rep     # it burned while its parent slept
    assert rep["processes_peak"] == 3
    assert fact["user_processes_after"] == [] and fact["runs_left"] == []


def test_memory_written_to_tmpfs_is_charged(guest):
    rep = report(guest["tmpfs_charged"])
    assert rep["status"] == "MLE" and rep["oom_kills"] >= 1, rep
    assert "wrote" not in guest["tmpfs_charged"]["stdout"]


def test_consecutive_runs_report_independent_peaks(guest):
    first, second = report(guest["first_of_two"]), report(guest["second_of_two"])
    assert first["status"] == "OK" and first["memory_peak_bytes"] >= 150 * MiB, first
    assert second["status"] == "OK" and second["memory_peak_bytes"] < 40 * MiB, second
    assert first["cgroup"]["path"] != second["cgroup"]["path"]


def test_the_sandbox_cannot_reach_its_cgroup(guest):
    """Own cgroup namespace (its cgroup is /), no cgroupfs inside, no way to mount one."""
    out = guest["cannot_touch_cgroup"]["stdout"]
    assert out.splitlines()[0] == "0::/"
    assert "cannot access '/sys/fs/cgroup'" in out
    assert "must be superuser" in out or "Operation not permitted" in out
    assert "memory.max" not in out.replace("/sys/fs/cgroup/memory.max: No such file", "")


def test_cpu_time_comes_from_the_cgroup(guest):
    rep = report(guest["cpu_limit"])
    assert rep["status"] == "TLE" and rep["limit_hit"] == "cpu_time" and 0.5 <= rep["cpu_time_s"] < 1.0, rep
    assert rep["limits"]["cpu_time"]["enforced_by"].startswith("cgroup: cpu.stat usage_usec")


def test_cpu_rate_and_cpuset(guest):
    """cpus: 0.25 (cpu.max) lets a spinning program have a quarter of a CPU; cpuset '0' pins it to one."""
    fact = guest["cpu_rate"]
    rep = report(fact)
    assert rep["status"] == "OK", rep
    assert fact["stdout"].splitlines()[0] == "1"
    assert 0.1 <= rep["cpu_time_s"] / rep["wall_time_s"] <= 0.35, (rep["cpu_time_s"], rep["wall_time_s"])
    assert rep["limits"]["cpus"]["enforced_by"].startswith("cgroup: cpu.max")


def test_detached_sysv_shared_memory_is_charged(guest):
    """Issue 9: SysV segments touched and detached belong to no process; the cgroup charges them."""
    fact = guest["sysv_shm"]
    rep = report(fact)
    assert "survived" not in fact["stdout"], fact
    assert rep["status"] == "MLE" and rep["oom_kills"] >= 1, rep
    assert rep["memory_peak_bytes"] <= 128 * MiB, rep
    assert rep["memory_counted"]["what"] == ["cgroup memory.peak"], rep


def test_shared_anonymous_memory_in_children_is_charged(guest):
    fact = guest["shared_anon"]
    rep = report(fact)
    assert "survived" not in fact["stdout"] and rep["status"] == "MLE" and rep["oom_kills"] >= 1, rep


def test_cpu_of_auto_reaped_children_is_counted_by_the_cgroup(guest):
    rep = report(guest["autoreaped"])
    assert rep["status"] == "TLE" and rep["limit_hit"] == "cpu_time" and rep["cpu_time_s"] >= 1.0, rep
    assert rep["cpu_vanished_s"] == 0.0        # the cgroup counted them; init's estimate is not added


def test_init_with_a_lowered_rlimit_cpu_survives_a_sigchld_flood(guest):
    """Init's hard RLIMIT_CPU lowered to 1 s, then a SIGCHLD flood: init is never killed by the
    kernel (XX).  Whether its own CPU stays clear of that limit is the guest's speed (every 10 ms
    sample costs what the emulated CPU makes it cost, and a loaded host stretches the run): so the
    run is OK with the program's 1.5 s counted while init stayed clear of it (the guard stops at
    0.75 s, checked at each sample), and otherwise ends SYS, init having stopped it itself before
    the kernel could."""
    fact = guest["init_rlimit_flood"]
    rep = report(fact)
    assert fact["attack_rc"] == 0, fact["attack_stderr"]
    if rep["status"] == "OK":
        assert fact["stdout"] == "ready\ndone\n" and rep["cpu_time_s"] >= 1.5, fact
        assert rep["init"]["cpu_s"] < 1.0, rep             # alive under its hard limit to the end
    else:
        assert rep["status"] == "SYS" and "CPU time limit of the sandbox's init" in rep["message"], rep
        assert rep["init"]["cpu_s"] >= 0.5, rep            # near its limit: not a stop for nothing


def test_without_clone3_only_inits_tree_is_in_the_run_cgroup(guest):
    """Issue 15 bug 9: with clone3 answering ENOSYS the launcher moved itself into the run's
    cgroup (and with it the FUSE daemon it starts); now init moves itself, then makes its
    cgroup namespace there.  tests/test_clone_fallback.py checks who writes, on the host."""
    fact = guest["no_clone3"]
    rep = report(fact)
    assert rep["status"] == "OK" and rep["cgroup"]["path"] and rep["degraded"] == [], rep
    assert fact["pid_depths"] == [2], fact           # only processes of the sandbox, never the launcher (1)
    assert fact["stdout"].splitlines()[0] == "0::/", fact     # its cgroup namespace is rooted at the run's cgroup
    assert fact["runs_left"] == []
    rep = report(guest["no_clone3_memory_bomb"])
    assert rep["status"] == "MLE" and rep["oom_kills"] >= 1, rep


def test_a_killed_runners_cgroup_is_removed_at_the_next_start(guest):
    fact = guest["runner_killed"]
    assert len(fact["runs_after_kill"]) == 1 and fact["sleep_left"] == []
    assert report(fact["next"])["status"] == "OK"
    assert fact["runs_after_next_start"] == []


def test_without_delegation_require_cgroup_refuses_with_the_recipe(guest):
    fact = guest["no_delegation"]
    assert fact["rc"] == 125 and fact["report"] is None
    assert "a cgroup is required but none can be used" in fact["stderr"]
    assert "systemd-run --user --scope -p Delegate=yes" in fact["stderr"]
    assert report(guest["no_delegation_degraded"])["degraded"] == ["cgroup"]


def test_doctor_sees_the_delegation_where_there_is_one(guest):
    fact = guest["doctor_delegated"]
    data = json.loads(fact["stdout"])
    assert fact["rc"] == 0 and data["ok"], fact
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["cgroup v2 delegation"]["state"] == "ok", checks["cgroup v2 delegation"]
    assert checks["clone3 / CLONE_INTO_CGROUP"]["state"] == "ok" and checks["memory.peak"]["state"] == "ok"


def test_a_root_service_with_a_cgroup_parent_runs_as_unprivileged_ids(guest):
    """Issue: root callers.  The pids limit holds by pids.max (and by RLIMIT_NPROC of the run's id),
    memory by memory.max, and the program's host id is never 0."""
    rep = report(guest["root_caller_pids"])
    assert rep["host_ids"]["claimed"] and rep["host_ids"]["uid"] != 0, rep["host_ids"]
    assert rep["cgroup"]["path"] and rep["degraded"] == [], rep
    assert rep["processes_peak"] <= 4 and rep["status"] == "RE", rep
    rep = report(guest["root_caller_memory"])
    assert rep["status"] == "MLE" and rep["host_ids"]["uid"] != 0, rep
    assert guest["root_caller_memory"]["runs_left"] == []


# ------------------------------------------------------------------ on this host (no controllers in v2)

def test_require_cgroup_on_this_host(sbx):
    r = sbx("run", "--profile", "shell", "--require-cgroup", "--", "true")
    text = no_traceback(r)
    if r.returncode == 0:
        pytest.skip("this host delegates a cgroup v2 subtree to the test user; the refusal is tested in the guest")
    assert r.returncode == 125
    assert "--require-cgroup: a cgroup is required but none can be used" in text
    assert "fix: start it in a delegated cgroup: systemd-run --user --scope -p Delegate=yes" in text


def test_require_cgroup_in_a_profile(sbx):
    profile = sbx.script("p.yaml", "extends: shell\nrequire_cgroup: true\n")
    r = sbx("run", "--profile", profile, "--", "true")
    if r.returncode == 0:
        pytest.skip("this host delegates a cgroup v2 subtree to the test user")
    assert r.returncode == 125 and b"p.yaml: require_cgroup" in r.stderr


def test_explain_shows_the_cgroup_step(sbx):
    """What --explain says is what cgroup.discover finds for the test user: on this kind of host
    (and wherever the suite drops to the test user from root's cgroup) no delegation, and why;
    with one, the runner's two host steps (the delegation, the run's cgroup with its limits)
    before the launcher's cgroup step."""
    found = sbx.user.run([sys.executable, "-c", "from sandbox import cgroup; print(cgroup.discover().reason or '')"])
    reason = found.stdout.decode().strip()
    r = sbx("run", "--profile", "shell", "--explain", "--", "true")
    text = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    names = [line.split()[1] for line in text.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    if reason:
        assert names[0] == "cgroup" and "run_cgroup" not in names and "cgroup_delegation" not in names, names
        assert "  1. cgroup           no cgroup: limits by rlimits and sampling" in text, text
        assert f"       unavailable: {reason}\n" in text, text
    else:
        assert names[:3] == ["cgroup_delegation", "run_cgroup", "cgroup"], names
        assert "       memory.max: " in text and "       pids.max: " in text, text
