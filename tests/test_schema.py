"""The profile schema documents itself: the README's reference, `sandbox profiles keys` and the
defaults a run gets all come from sandbox/schema.py's one table."""
import os
import subprocess
import sys

from conftest import REPO, no_traceback
from sandbox import schema


def test_the_readme_reference_is_the_schema_table():
    """The README holds `python3 -m sandbox.schema --markdown` between its markers, exactly."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert readme.count(schema.BEGIN) == 1 and readme.count(schema.END) == 1
    held = readme[readme.index(schema.BEGIN) + len(schema.BEGIN):readme.index(schema.END)].lstrip("\n")
    generated = subprocess.run([sys.executable, "-m", "sandbox.schema", "--markdown"], capture_output=True,
                               check=True, cwd=REPO).stdout.decode()
    assert held == generated, "README.md's profile reference is stale: paste `python3 -m sandbox.schema --markdown`"


def test_profiles_keys_prints_the_reference(sbx):
    r = sbx("profiles", "keys")
    out = no_traceback(r)
    assert r.returncode == 0, out
    for key in schema.KEYS:
        assert key.name in out
    assert "shm_size              size, at least 4K; default 16M" in out
    assert "tmpfs.PATH.mode       quoted octal; default '1777'" in out


def test_a_profile_that_says_nothing_gets_the_documented_defaults(sbx):
    """hostname, shm_size, the root's size and a tmpfs entry's mode and inodes, left out of a profile
    that extends nothing, are the table's defaults in a real run."""
    profile = sbx.script("bare.yaml", "rootfs: {binds: [/usr, /bin, /lib, {src: /lib64, optional: true}]}\n"
                                      "env: {PATH: /usr/bin:/bin}\ntmpfs: {/scratch: 1M}\n")
    explain = sbx("run", "--profile", profile, "--explain", "--", "/bin/true")
    text = no_traceback(explain)
    assert explain.returncode == 0, text
    d = schema.DEFAULTS
    assert f"size: {d['rootfs.size']}\n" in text
    assert f"/scratch: size=1048576,mode={d['tmpfs.PATH.mode']:o},inodes={d['tmpfs.PATH.inodes']}" in text
    r = sbx("run", "--profile", profile, "--", "/bin/sh", "-c",
            "cat /proc/sys/kernel/hostname; stat -c %a /scratch; df -k /dev/shm | tail -1")
    out = no_traceback(r)
    assert r.returncode == 0, out
    hostname, mode, shm = r.stdout.decode().splitlines()
    assert hostname == d["hostname"] == "sandbox"
    assert int(mode, 8) == d["tmpfs.PATH.mode"] == 0o1777
    assert int(shm.split()[1]) * 1024 == d["shm_size"] == 16 << 20
