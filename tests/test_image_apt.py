"""`apt-get install` in a Debian image root with `user: {map: subordinate}` and --keep-changes:
the image's layer keeps its owners (/etc/shadow root:shadow, apt's partial/ directory _apt's),
a local .deb whose postinst adds a system user and gives it a directory installs (no network:
the sandbox has none), `sandbox diff` lists what it added, a second run on the kept changes
finds it installed, and `sandbox rm-changes` removes them.  The image is conftest's
debian_store (one build a session, shared with test_image_build.py)."""
import os
import shutil
import subprocess

import pytest

from conftest import no_traceback, write

PROFILE = """extends: shell
user: {map: subordinate, uid: 0, gid: 0}
rootfs: {image: bookworm-python3, binds: [], overlay: %s, writable_size: 512M}
env: {PATH: /usr/sbin:/usr/bin:/sbin:/bin, DEBIAN_FRONTEND: noninteractive, HOME: /root}
limits: {cpu_time: 300s, wall_time: 600s, memory: 1G, processes: 256, file_size: 1G, open_files: 1024}
"""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent passwd sbxdemo >/dev/null || useradd --system --user-group --no-create-home sbxdemo
    mkdir -p /var/lib/sbxdemo
    chown sbxdemo:sbxdemo /var/lib/sbxdemo
    chown 42:42 /usr/share/sbxdemo/data
fi
"""


def _deb(user, box):
    """A tiny .deb built on the host (dpkg-deb --root-owner-group): a data file and the postinst."""
    root = os.path.join(box, "pkg")
    os.makedirs(os.path.join(root, "DEBIAN"))
    os.makedirs(os.path.join(root, "usr", "share", "sbxdemo"))
    write(os.path.join(root, "DEBIAN", "control"), "Package: sbxdemo\nVersion: 1.0\nArchitecture: all\n"
          "Maintainer: tests <t@example.org>\nDescription: sandbox test package\n")
    write(os.path.join(root, "DEBIAN", "postinst"), POSTINST, 0o755)
    write(os.path.join(root, "usr", "share", "sbxdemo", "data"), "hello\n")
    deb = os.path.join(box, "sbxdemo.deb")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", root, deb], check=True, capture_output=True)
    os.chmod(deb, 0o644)
    return deb


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["kernel", "fuse"])
def test_apt_get_install_of_a_local_deb_with_kept_changes(sbx, user, box, debian_store, backend):
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed (package dpkg)")
    if backend == "fuse" and not (os.path.exists("/usr/bin/fuse-overlayfs") and os.stat("/dev/fuse").st_mode & 0o006 == 0o006):
        pytest.skip("fuse-overlayfs is not installed or /dev/fuse is not 0666 here (.ci/run chmods it)")
    store, build = debian_store
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    env = {"SANDBOX_STORE": store}
    p = sbx.script(f"apt-{backend}.yaml", PROFILE % backend)
    deb = _deb(user, box)
    keep = os.path.join(box, "kept")
    r, rep = sbx.run("run", "--profile", p, "--keep-changes", keep, "--bind", f"{deb}:/tmp/sbxdemo.deb", "--",
                     "/bin/sh", "-c", "stat -c '%U:%G %a %n' /etc/shadow /var/cache/apt/archives/partial && "
                     "apt-get install -y /tmp/sbxdemo.deb", env=env, timeout=600)
    assert rep and rep["status"] == "OK", (r.stdout.decode()[-3000:] + r.stderr.decode()[-3000:], rep)
    out = r.stdout.decode()
    assert out.startswith("root:shadow 640 /etc/shadow\n_apt:root 700 /var/cache/apt/archives/partial\n"), out
    assert "Setting up sbxdemo (1.0)" in out, out
    d = sbx("diff", keep, env=env)
    changes = no_traceback(d).splitlines()
    assert d.returncode == 0, d.stderr
    for line in ("A /usr/share/sbxdemo/", "A /usr/share/sbxdemo/data", "A /var/lib/sbxdemo/",
                 "A /var/lib/dpkg/info/sbxdemo.postinst", "C /etc/passwd", "C /var/lib/dpkg/status"):
        assert line in changes, (line, changes)
    # a second run on the kept changes: installed, with the owners the postinst gave
    r, rep = sbx.run("run", "--profile", p, "--keep-changes", keep, "--", "/bin/sh", "-c",
                     "dpkg -s sbxdemo | grep '^Status'; stat -c '%U:%G %n' /var/lib/sbxdemo; "
                     "stat -c '%u:%g %n' /usr/share/sbxdemo/data", env=env, timeout=300)
    assert rep and rep["status"] == "OK", (r.stderr.decode()[-3000:], rep)
    assert r.stdout.decode().splitlines() == ["Status: install ok installed", "sbxdemo:sbxdemo /var/lib/sbxdemo",
                                              "42:42 /usr/share/sbxdemo/data"], r.stdout
    r = sbx("rm-changes", keep, env=env)
    assert r.returncode == 0, no_traceback(r)
    assert not os.path.lexists(keep)
