"""`sandbox doctor`: one line per capability, the truth about this host, a fix for what fails."""
import json
import shutil

import pytest

from conftest import SANDBOX, no_traceback

REQUIRED = {"user namespaces", "libseccomp binding", "seccomp user notification"}


def _doctor(user, *args, prefix=()):
    r = user.run([*prefix, SANDBOX, "doctor", *args])
    no_traceback(r)
    return r


def test_doctor_on_this_host_says_everything_required_works(user):
    r = _doctor(user)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "everything the built-in profiles need works here" in out
    for name in REQUIRED | {"cgroup v2 delegation", "kernel overlayfs in a user namespace", "fuse-overlayfs",
                            "subordinate ids", "clone3 / CLONE_INTO_CGROUP", "caller", "container"}:
        assert name in out, (name, out)
    # This host has no cgroup controllers for v2 (they are bound to v1): doctor must say so
    # and give the recipe, not claim delegation.
    line = next(line for line in out.splitlines() if "cgroup v2 delegation" in line)
    assert line.startswith("!") and "no delegated cgroup" in line, line


def test_doctor_json_is_machine_readable_and_agrees_with_the_exit_status(user):
    r = _doctor(user, "--json")
    data = json.loads(r.stdout)
    assert data["ok"] is True and r.returncode == 0
    by_name = {c["name"]: c for c in data["checks"]}
    assert REQUIRED <= set(by_name)
    assert all(by_name[n]["required"] and by_name[n]["state"] == "ok" for n in REQUIRED)
    for c in data["checks"]:
        assert c["state"] in ("ok", "no", "warn")
        assert c["meaning"]
        if c["state"] != "ok":
            assert c["fix"], c        # whatever does not work comes with the way to make it work
    assert by_name["caller"]["state"] == "ok"          # the suite runs it as an unprivileged user


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare (.ci/run installs util-linux)")
def test_doctor_without_user_namespaces_fails_with_the_sysctl_fix(user):
    """Take the capability away in a user namespace of the test's own: user.max_user_namespaces
    is per namespace, so 0 there stops every sandbox started below it, and nothing else."""
    r = _doctor(user, "--json", prefix=["unshare", "--user", "--map-root-user", "sh", "-c",
                                        'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"])
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["ok"] is False
    userns = next(c for c in data["checks"] if c["name"] == "user namespaces")
    assert userns["state"] == "no" and userns["required"]
    assert "ENOSPC" in userns["meaning"] or "No space" in userns["meaning"], userns
    assert "user.max_user_namespaces" in userns["fix"], userns
    # uid 0 of a user namespace is not the host's root, and doctor must not say it is.
    caller = next(c for c in data["checks"] if c["name"] == "caller")
    assert caller["state"] == "ok" and "outside this user namespace" in caller["meaning"], caller


def test_doctor_refuses_unknown_options(user):
    r = _doctor(user, "--frobnicate")
    assert r.returncode == 125
    assert "--frobnicate" in r.stderr.decode() and "fix:" in r.stderr.decode()
