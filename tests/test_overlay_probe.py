"""The kernel overlayfs probe (rootfs.kernel_overlay_works): a tiny sandbox of
its own, built from launch.py's ops and userns.step, run once per kernel."""
import json
import os
import sys

PROBE = r"""
import json, os, sys
from sandbox import rootfs
before = sorted(os.listdir("/proc/self/fd"))
works = rootfs.kernel_overlay_works()
after = sorted(os.listdir("/proc/self/fd"))
with open(rootfs._probe_file()) as f:
    remembered = f.read().strip()
print(json.dumps({"before": before, "after": after, "works": works, "remembered": remembered}))
"""


def test_the_probe_runs_says_overlay_works_and_leaves_no_descriptor_open(user, box):
    # A fresh cache: the probe really runs (a remembered answer would open nothing).
    r = user.run([sys.executable, "-c", PROBE], env={"XDG_CACHE_HOME": box})
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(r.stdout)
    assert got["after"] == got["before"], "the probe left descriptors open"
    # This host (Linux 6.x, unprivileged user namespaces) mounts kernel overlayfs in one.
    assert got["works"] is True and got["remembered"] == "kernel overlayfs works", got
    assert os.listdir(os.path.join(box, "sandbox")) == [f"overlay-probe-{os.uname().release}"]
