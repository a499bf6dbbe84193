"""A step that fails stops the run: exit 125, the step's name, the errno, a fix; never an unconfined run."""
import os

from conftest import SANDBOX, no_traceback


def test_failing_mount_step_stops_the_run(sbx, box):
    out = os.path.join(box, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    profile = sbx.script("p.yaml", "extends: shell\ntmpfs: {/usr/newdir: 1M}\n")
    r, rep = sbx.run("run", "--profile", profile, "--bind", f"{out}:/out:rw", "--", "touch", "/out/ran")
    text = no_traceback(r)
    assert r.returncode == 125
    assert "step 'tmpfs' failed" in text and "EROFS" in text and "fix:" in text
    assert rep["status"] == "XX"
    assert not os.path.exists(os.path.join(out, "ran"))


def test_user_namespaces_disabled_gives_the_hint(user):
    """user.max_user_namespaces = 0, set inside an outer user namespace (the sysctl is per
    namespace, so the host is untouched): the sandbox refuses to start and says how to fix it."""
    script = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {SANDBOX} run --profile shell -- true"
    r = user.run(["unshare", "--user", "--map-root-user", "sh", "-c", script])
    text = no_traceback(r)
    assert r.returncode == 125, text
    assert "step 'user_namespace' failed" in text and "ENOSPC" in text
    assert "sysctl -w user.max_user_namespaces" in text
