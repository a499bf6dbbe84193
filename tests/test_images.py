"""Image roots: import (docker save, OCI), the layer store, hostile layers, and runs on
an overlay of the layers with both backends (kernel overlayfs, fuse-overlayfs)."""
import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
import time

import pytest

import imagekit as kit
from conftest import SANDBOX, no_traceback

FUSE_REASON = (f"fuse-overlayfs needs /dev/fuse readable and writable by the user; here it is mode "
               f"{oct(os.stat('/dev/fuse').st_mode & 0o777) if os.path.exists('/dev/fuse') else 'missing'} "
               "(distributions ship 0666; .ci/run sets 0666 for this reason)")


def fuse_usable(user):
    r = user.run(["sh", "-c", "test -r /dev/fuse && test -w /dev/fuse && command -v fuse-overlayfs"])
    return r.returncode == 0


@pytest.fixture
def store(box, user):
    path = os.path.join(box, "store")
    os.mkdir(path)
    if os.geteuid() == 0:
        os.chown(path, user.uid, user.gid)
    return path


class Images:
    """sandbox commands with the test's own store, and image files written into the box."""

    def __init__(self, sbx, store):
        self.sbx, self.store = sbx, store

    def __call__(self, *args, **kw):
        return self.sbx(*args, env={"SANDBOX_STORE": self.store}, **kw)

    def run(self, *args, **kw):
        return self.sbx.run(*args, env={"SANDBOX_STORE": self.store}, **kw)

    def file(self, name):
        return os.path.join(self.sbx.box, name)

    def own(self, path):
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
        os.chmod(path, 0o755)
        return path

    def import_(self, name, path):
        r = self("image", "import", name, self.own(path) if os.path.isdir(path) else path)
        assert r.returncode == 0, r.stderr
        return r

    def profile(self, image, **extra):
        body = {"extends": "shell", "rootfs": {"image": image, "binds": [], **extra.pop("rootfs", {})},
                "env": {"PATH": "/bin"}, **extra}
        return self.sbx.script(f"p-{image}.yaml", json.dumps(body))


@pytest.fixture
def images(sbx, store):
    return Images(sbx, store)


BASE = kit.busybox_layer(extra=[("etc/extra", b"extra\n"), ("etc/gone", b"whited out above\n"),
                                ("data", ("dir",)), ("data/old", b"hidden by an opaque dir above\n")])
TOP = kit.layer([("etc/motd", b"from the top layer\n"), ("etc/gone", ("whiteout",)),
                 ("data", ("dir",)), ("data", ("opaque",)), ("data/new", b"only this\n")])


@pytest.fixture
def two_layers(images):
    path = images.file("ds.tar")
    kit.docker_save(path, [BASE, TOP])
    os.chmod(path, 0o644)
    images.import_("two", path)
    return "two"


# ------------------------------------------------------------------ import and the store

def test_docker_save_and_oci_share_layers(images):
    kit.docker_save(images.file("ds.tar"), [BASE, TOP])
    kit.oci_layout(images.file("oci"), [BASE, TOP])
    kit.oci_layout(images.file("oci.tar"), [BASE, TOP], as_tar=True)
    for name, f in (("a", "ds.tar"), ("b", "oci"), ("c", "oci.tar")):
        os.chmod(images.file(f), 0o755) if os.path.isdir(images.file(f)) else os.chmod(images.file(f), 0o644)
        images.import_(name, images.file(f))
    ls = images("image", "ls").stdout.decode().split("\n")
    assert [line.split()[0] for line in ls if line] == ["a", "b", "c"]
    layers = sorted(n for n in os.listdir(os.path.join(images.store, "layers")) if not n.endswith(".json"))
    assert layers == sorted([hashlib.sha256(BASE).hexdigest(), hashlib.sha256(TOP).hexdigest()])
    info = json.loads(images("image", "inspect", "b").stdout)
    assert [l["diff_id"] for l in info["layers"]] == ["sha256:" + hashlib.sha256(x).hexdigest() for x in (BASE, TOP)]
    assert info["config"]["Cmd"] == ["/bin/sh"] and info["format"] == "oci"
    assert all(l["size"] > 0 for l in info["layers"])


def test_rm_collects_layers_no_image_uses(images):
    kit.docker_save(images.file("ds.tar"), [BASE, TOP])
    kit.docker_save(images.file("base.tar"), [BASE])
    for f in ("ds.tar", "base.tar"):
        os.chmod(images.file(f), 0o644)
    images.import_("both", images.file("ds.tar"))
    images.import_("base", images.file("base.tar"))
    layer_dirs = lambda: sorted(n for n in os.listdir(os.path.join(images.store, "layers")) if not n.endswith(".json"))
    assert len(layer_dirs()) == 2
    assert b"1 layers no image used were deleted" in images("image", "rm", "both").stdout
    assert layer_dirs() == [hashlib.sha256(BASE).hexdigest()]
    images("image", "rm", "base")
    assert layer_dirs() == [] and images("image", "ls").stdout == b""
    r = images("image", "rm", "base")
    assert r.returncode == 125 and b"no image named 'base'" in r.stderr


def test_concurrent_imports_of_the_same_layers(images, user):
    """Imports stage their layers apart and move them in at the end: racing imports of the same
    layers all succeed and the store keeps one copy of each, nothing staged left over."""
    path = images.file("ds.tar")
    kit.docker_save(path, [BASE, TOP])
    os.chmod(path, 0o644)
    procs = [user.popen([SANDBOX, "image", "import", f"c{i}", path], env={"SANDBOX_STORE": images.store},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    results = [(pr.wait(timeout=120), pr.communicate()[1]) for pr in procs]
    assert [rc for rc, _ in results] == [0] * 4, results
    layers = sorted(n for n in os.listdir(os.path.join(images.store, "layers")) if not n.endswith(".json"))
    assert layers == sorted(hashlib.sha256(x).hexdigest() for x in (BASE, TOP))
    assert os.listdir(os.path.join(images.store, "tmp")) == []
    assert images("image", "ls").stdout.decode().split()[::6] == ["c0", "c1", "c2", "c3"]


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_digest_mismatch_is_refused_and_nothing_is_kept(images, fmt):
    path = images.file("bad.tar")
    if fmt == "docker":
        kit.docker_save(path, [BASE, TOP], tamper="diff_id")
    else:
        kit.oci_layout(path, [BASE, TOP], as_tar=True, tamper="blob")
    os.chmod(path, 0o644)
    r = images("image", "import", "bad", path)
    text = no_traceback(r)
    assert r.returncode == 125 and "digest mismatch" in text and "fix:" in text
    assert images("image", "ls").stdout == b""
    assert [n for n in os.listdir(os.path.join(images.store, "tmp"))] == []
    assert os.listdir(os.path.join(images.store, "layers")) == []     # not even the untampered first layer


def _hostile(images, entries, name="evil.tar", env=None):
    path = images.file(name)
    kit.docker_save(path, [kit.layer(entries)])
    os.chmod(path, 0o644)
    return images.sbx("image", "import", "evil", path, env={"SANDBOX_STORE": images.store, **(env or {})})


HOSTILE = {
    "dotdot": ([("a/../../../outside-dotdot", b"x")], "climbs out with '..'"),
    "absolute": ([("/outside-absolute", b"x")], "has an absolute path"),
    "symlink_then_write": ([("lnk", ("symlink", "OUTSIDE")), ("lnk/pwned", b"x")], "goes through a symlink"),
    "hardlink_outside": ([("hl", ("link", "../../etc/passwd"))], "climbs out with '..'"),
    "hardlink_missing": ([("hl", ("link", "etc/shadow"))], "outside this layer or not yet extracted"),
    "duplicate": ([("f", b"one"), ("f", b"two")], "appears twice"),
    "whiteout_and_file": ([("f", b"one"), ("f", ("whiteout",))], "appears twice"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_is_refused_and_writes_nothing_outside(images, case, box):
    entries, what = HOSTILE[case]
    outside = os.path.join(box, "target")
    os.mkdir(outside)
    os.chmod(outside, 0o777)
    entries = [(n, tuple(outside if x == "OUTSIDE" else x for x in spec) if isinstance(spec, tuple) else spec)
               for n, spec in entries]
    r = _hostile(images, entries)
    text = no_traceback(r)
    assert r.returncode == 125 and what in text and "fix:" in text, text
    assert os.listdir(outside) == []
    assert images("image", "ls").stdout == b""
    assert os.listdir(os.path.join(images.store, "tmp")) == []


def test_sparse_file_is_refused(images, box):
    src = os.path.join(box, "sparse")
    os.mkdir(src)
    with open(os.path.join(src, "hole"), "wb") as f:
        f.truncate(10 << 20)
    path = images.file("sparse.tar")
    subprocess.run(["tar", "--sparse", "-C", src, "-cf", path, "hole"], check=True)
    os.chmod(path, 0o644)
    r = images("image", "import", "sparse", path)          # a plain rootfs tar
    assert r.returncode == 125 and b"is a sparse file" in r.stderr


def test_huge_layer_is_refused(images):
    r = _hostile(images, [("big", b"x" * 5000)], env={"SANDBOX_MAX_LAYER_BYTES": "4096"})
    assert r.returncode == 125 and b"unpacks to more than 4096 bytes" in r.stderr


def _disk_usage(root):
    return sum(os.lstat(os.path.join(d, n)).st_blocks * 512 for d, dirs, files in os.walk(root) for n in dirs + files
               ) + os.lstat(root).st_blocks * 512


def test_layer_cost_counts_every_entry_not_only_file_data(images):
    """Directories and long symlinks hold no file data but take disk: a small gzip of them
    must not pass a cap that only counted file contents (it passed a 1 MiB cap and took 15 MiB)."""
    entries = [(f"d{i}", ("dir",)) for i in range(400)] + [(f"s{i}", ("symlink", "t" * 4000)) for i in range(400)]
    blob = kit.layer(entries)
    assert len(gzip.compress(blob)) < 64 << 10
    r = _hostile(images, entries, env={"SANDBOX_MAX_LAYER_BYTES": "1M"})
    text = no_traceback(r)
    assert r.returncode == 125 and "unpacks to more than 1048576 bytes" in text, text
    assert "each entry counts 4096 bytes besides its data" in text and "SANDBOX_MAX_LAYER_BYTES" in text
    r = _hostile(images, entries)                        # under the default cap it imports; the count holds
    assert r.returncode == 0, r.stderr
    layer = os.path.join(images.store, "layers", hashlib.sha256(blob).hexdigest())
    with open(layer + ".json") as f:
        summary = json.load(f)["import"]
    used = _disk_usage(layer)
    assert summary["entries"] == 800 and used > 1 << 20     # what the old count called 0 bytes
    assert summary["cost"] >= used, (summary, used)         # the count is not below what the disk took


def test_layer_entry_count_is_capped(images):
    r = _hostile(images, [(f"f{i}", b"") for i in range(150)], env={"SANDBOX_MAX_LAYER_ENTRIES": "100"})
    text = no_traceback(r)
    assert r.returncode == 125 and "the layer has more than 100 entries (at 'f100')" in text, text
    assert "raise SANDBOX_MAX_LAYER_ENTRIES" in text
    assert os.listdir(os.path.join(images.store, "tmp")) == [] and images("image", "ls").stdout == b""


@pytest.mark.parametrize("var,value", [("SANDBOX_MAX_LAYER_BYTES", "abc"), ("SANDBOX_MAX_LAYER_BYTES", "-1"),
                                       ("SANDBOX_MAX_LAYER_BYTES", "1e999"), ("SANDBOX_MAX_LAYER_ENTRIES", "1.5"),
                                       ("SANDBOX_MAX_LAYER_ENTRIES", "１２")])
def test_bad_layer_cap_in_the_environment_is_a_clear_error(images, var, value):
    r = _hostile(images, [("f", b"x")], env={var: value})
    text = no_traceback(r)
    assert r.returncode == 125 and "internal error" not in text, text
    assert f"environment: {var}={value!r} is not a" in text and f"fix: set {var} to" in text, text


def test_devices_are_dropped_and_setuid_cleared(images):
    path = images.file("dev.tar")
    kit.docker_save(path, [kit.layer([("dev", ("dir",)), ("dev/sda", ("chr", 8, 0)),
                                      ("su", ("file", b"#!/bin/sh\n", 0o4755))])])
    os.chmod(path, 0o644)
    images.import_("dev", path)
    layer = os.path.join(images.store, "layers", json.loads(images("image", "inspect", "dev").stdout)
                         ["layers"][0]["diff_id"].split(":")[1])
    assert not os.path.exists(os.path.join(layer, "dev", "sda"))
    assert os.stat(os.path.join(layer, "su")).st_mode & 0o7777 == 0o755
    with open(layer + ".json") as f:
        summary = json.load(f)["import"]
    assert summary["dropped_devices"] == 1 and summary["cleared_setuid"] == 1


# ------------------------------------------------------------------ running on an image

@pytest.fixture(params=["kernel", "fuse"])
def backend(request, user):
    if request.param == "fuse" and not fuse_usable(user):
        pytest.skip(FUSE_REASON)
    return request.param


def _tree_digest(root):
    """Everything about a directory tree: names, types, modes, sizes, contents, xattrs, devices."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode} {st.st_size} {st.st_rdev} {st.st_mtime_ns}".encode())
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h.update(f.read())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            if not stat.S_ISLNK(st.st_mode):
                for attr in sorted(os.listxattr(p)):
                    h.update(attr.encode() + os.getxattr(p, attr))
    return h.hexdigest()


def test_layers_whiteouts_and_opaque_directories(images, two_layers, backend):
    p = images.profile(two_layers, rootfs={"overlay": backend})
    r, rep = images.run("run", "--profile", p, "--", "sh", "-c",
                        "cat /etc/motd /etc/extra; ls /etc/gone 2>&1; ls /data")
    assert rep["status"] == "OK", (rep, r.stderr)
    assert r.stdout.decode().splitlines() == ["from the top layer", "extra",
                                              "ls: /etc/gone: No such file or directory", "new"]
    assert rep["rootfs"] == {"image": "two", "layers": 2, "changes_kept_in": None,
                             "backend": "kernel overlayfs" if backend == "kernel" else "fuse-overlayfs"}


def test_writes_are_thrown_away_and_the_store_is_untouched(images, two_layers, backend):
    before = _tree_digest(images.store)
    p = images.profile(two_layers, rootfs={"overlay": backend})
    r, rep = images.run("run", "--profile", p, "--", "sh", "-c",
                        "echo changed > /etc/motd; rm /etc/extra; echo new > /newfile; mkdir /newdir; cat /etc/motd")
    assert r.stdout == b"changed\n", r.stderr
    r, _ = images.run("run", "--profile", p, "--", "sh", "-c", "cat /etc/motd /etc/extra; ls /newfile /newdir 2>&1")
    assert r.stdout.decode().splitlines()[:2] == ["from the top layer", "extra"]
    assert "No such file" in r.stdout.decode()
    assert _tree_digest(images.store) == before


def test_concurrent_runs_do_not_see_each_other(images, two_layers, backend, user):
    p = images.profile(two_layers, rootfs={"overlay": backend})
    script = "echo {0} > /mine-{0}; sleep 1; ls /mine-*"
    procs = [user.popen([SANDBOX, "run", "--profile", p, "--", "sh", "-c", script.format(i)],
                        env={"SANDBOX_STORE": images.store}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in (1, 2)]
    outs = [pr.communicate(timeout=60)[0].decode().split() for pr in procs]
    assert outs == [["/mine-1"], ["/mine-2"]]


def test_keep_changes_and_diff(images, two_layers, backend, box):
    keep = os.path.join(box, "kept")
    p = images.profile(two_layers, rootfs={"overlay": backend})
    r, rep = images.run("run", "--profile", p, "--keep-changes", keep, "--", "sh", "-c",
                        "echo changed > /etc/motd; rm /etc/extra; echo new > /newfile; mkdir -p /newdir/sub; "
                        "echo x > /newdir/sub/f; rm -r /data; mkdir /data; echo y > /data/z")
    assert rep["status"] == "OK" and rep["rootfs"]["changes_kept_in"] == keep, (rep, r.stderr)
    d = images("diff", keep)
    assert d.returncode == 0, d.stderr
    assert d.stdout.decode().splitlines() == ["C /data/ (replaced: what the image had in it is gone)", "A /data/z",
                                              "D /etc/extra", "C /etc/motd", "A /newdir/", "A /newdir/sub/",
                                              "A /newdir/sub/f", "A /newfile"]
    # a second run continues the kept changes; a directory holding anything else is refused
    r = images("run", "--profile", p, "--keep-changes", keep, "--", "sh", "-c", "cat /newfile /data/z; rm /newfile")
    assert r.returncode == 0 and r.stdout == b"new\ny\n", r.stderr
    assert "A /newfile" not in images("diff", keep).stdout.decode()
    other = os.path.join(box, "other")
    os.makedirs(os.path.join(other, "upper"))
    r = images("run", "--profile", p, "--keep-changes", other, "--", "true")
    assert r.returncode == 125 and b"is not empty" in r.stderr


def test_explain_shows_the_keep_changes_host_step_and_makes_nothing(images, two_layers, box):
    """The keep-changes directory is a host step of the plan: --explain shows it before the
    launcher's steps, and runs nothing, so the directory is not made."""
    keep = os.path.join(box, "kept-explain")
    r = images("run", "--profile", images.profile(two_layers), "--keep-changes", keep, "--explain", "--", "true")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    names = [line.split()[1] for line in text.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert "keep_changes" in names[:names.index("cgroup")], names        # before every launcher step
    assert f"       directory: {keep}\n" in text and "on the host, before the launcher starts" in text, text
    assert not os.path.exists(keep)

def test_no_mount_or_process_is_left(images, two_layers, backend, user):
    def table():
        with open("/proc/self/mountinfo") as f:
            return f.read()
    before = table()
    p = images.profile(two_layers, rootfs={"overlay": backend})
    images.run("run", "--profile", p, "--", "true")
    assert table() == before
    deadline = time.monotonic() + 10      # the launcher reaps it before it exits: normally at once
    while (left := subprocess.run(["pgrep", "-u", str(user.uid), "-f", "fuse-overlayfs"],
                                  capture_output=True).stdout) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == b""


def test_image_config_applies_unless_the_profile_overrides(images):
    layers = [kit.busybox_layer()]
    cfg = kit.config_for(layers, env=["PATH=/bin", "FOO=from-image", "BAR=from-image"], workdir="/etc", user="1234:99")
    path = images.file("cfg.tar")
    kit.docker_save(path, layers, config=cfg)
    os.chmod(path, 0o644)
    images.import_("cfg", path)
    body = {"rootfs": {"image": "cfg"}, "tmpfs": {"/tmp": "16M"}, "env": {"BAR": "from-profile"}}
    p = images.sbx.script("cfg.yaml", json.dumps(body))
    r, rep = images.run("run", "--profile", p, "--", "sh", "-c", 'echo $FOO $BAR; pwd; id -u; id -g')
    assert r.stdout.decode().split() == ["from-image", "from-profile", "/etc", "1234", "99"], r.stderr


def test_missing_image_and_conflicting_rootfs_are_clear_errors(images, two_layers):
    p = images.sbx.script("nope.yaml", json.dumps({"extends": "shell", "rootfs": {"image": "tow", "binds": []}}))
    r = images("run", "--profile", p, "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125 and "nope.yaml: rootfs.image" in text and "did you mean 'two'?" in text
    p = images.sbx.script("both.yaml", json.dumps({"extends": "shell", "rootfs": {"image": "two"}}))
    r = images("run", "--profile", p, "--", "true")
    assert r.returncode == 125 and b"rootfs.image and rootfs.binds cannot both be set" in r.stderr
    r = images("run", "--profile", "shell", "--keep-changes", "/tmp/x", "--", "true")
    assert r.returncode == 125 and b"--keep-changes needs an image root" in r.stderr


def test_interpreter_missing_from_the_image_is_a_clear_error(images, two_layers):
    """The interpreter is looked up in the image, not on the host (where python3 exists)."""
    p = images.profile(two_layers, script={"interpreter": ["python3"]})
    script = images.sbx.script("s.py", "print(1)\n")
    for r in (images("run", "--profile", p, script), images("check", p)):
        text = no_traceback(r)
        assert r.returncode == 125, text
        assert "script.interpreter" in text and "interpreter python3 is not in the image two (searched PATH=/bin)" in text
        assert "build or import an image that has it" in text


def test_image_command_errors(images, box):
    notatar = images.file("notatar")
    with open(notatar, "w") as f:
        f.write("plain text")
    os.chmod(notatar, 0o644)
    zstd = images.file("zstd")
    kit.oci_layout(zstd, [BASE])
    index = json.load(open(os.path.join(zstd, "index.json")))
    mpath = os.path.join(zstd, "blobs", "sha256", index["manifests"][0]["digest"].split(":")[1])
    manifest = json.load(open(mpath))
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    data = json.dumps(manifest).encode()
    new = hashlib.sha256(data).hexdigest()
    with open(os.path.join(zstd, "blobs", "sha256", new), "wb") as f:
        f.write(data)
    index["manifests"][0]["digest"] = "sha256:" + new
    json.dump(index, open(os.path.join(zstd, "index.json"), "w"))
    images.own(zstd)
    empty = os.path.join(box, "emptydir")
    os.mkdir(empty)
    os.chmod(empty, 0o755)
    cases = [(["image", "import", "-bad name", notatar], "is not a valid image name"),
             (["image", "import", "x", notatar], "is not a tar file"),
             (["image", "import", "x", os.path.join(box, "nothing")], "does not exist"),
             (["image", "import", "x", zstd], "zstd-compressed layers are not supported"),
             (["image", "import", "x", empty], "without index.json or manifest.json"),
             (["image", "frob"], "unknown or incomplete image command"),
             (["image", "inspect", "nope"], "no image named 'nope'"),
             (["image", "build", "x", "--packages", "python3"], "no --debian SUITE given"),
             (["diff", empty], "holds no kept changes"),
             (["run", "--profile", "shell", "--output", "x", "--", "true"], "--output belongs to sandbox learn"),
             (["learn", "--profile", "shell", "--output", "x", "--seccomp", "none", "--", "true"],
              "--seccomp does not apply to sandbox learn")]
    for args, what in cases:
        r = images(*args)
        text = no_traceback(r)
        assert r.returncode == 125, (args, text)
        assert what in text and "fix:" in text, (args, text)


WORKDIR_FILES = """
import json, sandbox
r = sandbox.run({profile!r}, ["sh", "-c", "pwd; cat in.txt; echo made > out.txt"],
                files_in={{"/work/in.txt": b"given"}}, files_out=["/work/out.txt"])
print(json.dumps({{"status": r.status, "message": r.message, "stdout": (r.stdout or b"").decode(),
                  "files": {{k: v.decode() for k, v in (r.files or {{}}).items()}}, "errors": r.file_errors}}))
"""


def test_files_in_and_out_use_the_images_working_directory(images, user):
    """Bug 8: with files_out and a profile without cwd, the working directory is the image's
    WorkingDir, for the files copied in and read back as for the program."""
    layers = [kit.busybox_layer(extra=[("work", ("dir",))])]
    path = images.file("wd.tar")
    kit.docker_save(path, layers, config=kit.config_for(layers, workdir="/work"))
    os.chmod(path, 0o644)
    images.import_("wd", path)
    profile = images.sbx.script("wd.yaml", json.dumps({"rootfs": {"image": "wd"}, "env": {"PATH": "/bin"}}))
    r = user.run([sys.executable, "-c", WORKDIR_FILES.format(profile=profile)], env={"SANDBOX_STORE": images.store})
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout.decode().splitlines()[-1])
    assert out["status"] == "OK" and out["stdout"] == "/work\ngiven", out
    assert out["files"] == {"/work/out.txt": "made\n"} and out["errors"] == [], out
