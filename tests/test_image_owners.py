"""Image layers keep their tar's ownership under `user: {map: subordinate}` (idlayers.py):
a copy of each layer per mapping, made by idtree.py in the subordinate ids' namespace; the
default map still sees the flattened layer.  Kept changes of such runs are read by `sandbox
diff` and removed by `sandbox rm-changes` through the same namespace; `sandbox image rm`
removes the copies.  Nothing owned by a subordinate id is left behind."""
import os
import stat
import subprocess

import pytest

import imagekit
from conftest import no_traceback, write

OWNED = [("etc/shadow", ("file", b"root:*:1::::::\n", 0o640)), ("var", ("dir",)), ("var/cache", ("dir",)),
         ("var/cache/partial", ("dir", 0o700)), ("var/cache/partial/f", b"apt's\n"), ("home", ("dir",)),
         ("home/u", ("dir", 0o750)), ("home/u/f", b"u's\n"), ("home/u/ln", ("symlink", "f")),
         ("home/u/hard", ("link", "home/u/f")), ("far", b"x\n"), ("farther", b"y\n"),
         ("suid", ("file", b"#!/bin/sh\n", 0o6755)), ("dev", ("dir",)), ("dev/sda", ("chr", 8, 0))]
OWNERS = {"etc/shadow": (0, 42), "var/cache/partial": (42, 0), "var/cache/partial/f": (42, 65534),
          "home/u": (1000, 1000), "home/u/f": (1000, 1000), "home/u/ln": (1000, 42),
          "home/u/hard": (7, 7),          # a hard link takes its target's owner (the tar's link header is not used)
          "far": (70000, 70000), "farther": (2 ** 31, 5), "suid": (1000, 42), "dev/sda": (42, 42)}    # beyond the mapping: the overflow id 65534
PATHS = ["/etc/shadow", "/var/cache/partial", "/var/cache/partial/f", "/home/u", "/home/u/f", "/home/u/ln",
         "/home/u/hard", "/far", "/farther", "/etc/motd"]
EXPECT = ["0 42", "42 0", "42 65534", "1000 1000", "1000 1000", "1000 42", "1000 1000", "65534 65534",
          "65534 5", "0 0"]


def _subrange(user):
    with open("/etc/subuid") as f:
        for line in f:
            name, start, count = line.strip().split(":")
            if name == user.name:
                return int(start)
    raise AssertionError(f"{user.name} has no line in /etc/subuid: .ci/run adds one")


def _fuse_usable():
    """fuse-overlayfs needs /dev/fuse usable by the test user (.ci/run makes it 0666)."""
    return os.path.exists("/usr/bin/fuse-overlayfs") and stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006 == 0o006


@pytest.fixture(params=["kernel", "fuse"])
def backend(request):
    if request.param == "fuse" and not _fuse_usable():
        pytest.skip("fuse-overlayfs is not installed or /dev/fuse is not 0666 here (.ci/run chmods it)")
    return request.param


class Store:
    def __init__(self, sbx, box):
        self.sbx, self.box = sbx, box
        self.env = {"SANDBOX_STORE": os.path.join(box, "store")}

    def add(self, name, layers):
        tar = os.path.join(self.box, name + ".tar")
        imagekit.docker_save(tar, layers)
        os.chmod(tar, 0o644)
        r = self.sbx("image", "import", name, tar, env=self.env)
        assert r.returncode == 0, r.stderr

    def profile(self, image, backend="kernel", subordinate=True):
        user = "user: {map: subordinate, uid: 0, gid: 0}\n" if subordinate else ""
        return self.sbx.script(f"{image}-{backend}-{subordinate}.yaml", f"extends: shell\n{user}rootfs: "
                               f"{{image: {image}, binds: [], overlay: {backend}}}\n")

    def run(self, *args):
        return self.sbx.run(*args, env=self.env)

    def __call__(self, *args):
        return self.sbx(*args, env=self.env)

    def layers_dir(self):
        return os.path.join(self.env["SANDBOX_STORE"], "layers")


@pytest.fixture
def store(sbx, box):
    return Store(sbx, box)


def _stat(store, p, paths=PATHS):
    r, rep = store.run("run", "--profile", p, "--", "stat", "-c", "%u %g", *paths)
    assert rep and rep["status"] == "OK", (r.stderr, rep)
    return r.stdout.decode().splitlines()


def test_subordinate_runs_see_the_tars_owners_and_single_runs_the_flattened_layer(store, user, backend):
    store.add("owned", [imagekit.busybox_layer(OWNED, OWNERS)])
    assert _stat(store, store.profile("owned", backend)) == EXPECT
    # no setuid or setgid bit, no device node, with the owners too
    assert _stat(store, store.profile("owned", backend), ["/suid"]) == ["1000 42"]
    r, rep = store.run("run", "--profile", store.profile("owned", backend), "--", "stat", "-c", "%a", "/suid")
    assert r.stdout == b"755\n", (r.stdout, rep)
    assert not os.path.lexists(os.path.join(store.layers_dir(), [e for e in os.listdir(store.layers_dir())
                                                                 if ".ids-" in e and "lock" not in e][0],
                                            "root", "dev", "sda"))
    # on the host, the copy's files belong to the caller (0) and its subordinate ids (n: start + n - 1)
    start = _subrange(user)
    copies = [e for e in os.listdir(store.layers_dir()) if ".ids-" in e and not e.endswith(".lock")]
    assert len(copies) == 1, copies
    root = os.path.join(store.layers_dir(), copies[0], "root")
    st = os.stat(os.path.join(root, "etc", "shadow"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.uid, start + 41, 0o640)
    st = os.lstat(os.path.join(root, "home", "u", "ln"))
    assert (st.st_uid, st.st_gid) == (start + 999, start + 41)
    # the default map: unchanged, flattened (inside, every file is the sandbox user's, 1000)
    assert _stat(store, store.profile("owned", backend, subordinate=False)) == ["1000 1000"] * len(PATHS)
    flat = os.path.join(store.layers_dir(), copies[0].partition(".")[0], "etc", "shadow")
    assert os.stat(flat).st_uid == user.uid
    # a second run uses the copy made by the first: still one
    assert _stat(store, store.profile("owned", backend)) == EXPECT
    assert len([e for e in os.listdir(store.layers_dir()) if ".ids-" in e and not e.endswith(".lock")]) == 1
    _rm_image(store, "owned")


def test_a_layer_all_roots_needs_no_copy(store):
    store.add("plain", [imagekit.busybox_layer()])
    assert _stat(store, store.profile("plain"), ["/etc/motd", "/bin"]) == ["0 0", "0 0"]
    assert not [e for e in os.listdir(store.layers_dir()) if ".ids-" in e]


def test_explain_names_the_owned_layers_step_and_makes_nothing(store):
    store.add("owned", [imagekit.busybox_layer(OWNED, OWNERS)])
    r = store("run", "--profile", store.profile("owned"), "--explain", "--", "true")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "owned_layers" in text and "1 of 1 need a copy" in text, text
    assert text.index("owned_layers") < text.index("user_namespace")
    assert not [e for e in os.listdir(store.layers_dir()) if ".ids-" in e]
    _rm_image(store, "owned")


def test_the_copy_never_chowns_through_a_layers_symlink(store, user, box):
    """A layer's symlinks point at a host file of the test user (absolute, and climbing out with
    ..), owned by other ids in the tar; the host file keeps its owner and mode, the symlinks
    themselves get the tar's owners."""
    target = write(os.path.join(box, "target"), "mine\n", 0o600, user)
    up = "../" * 40 + target.lstrip("/")
    entries = [("abs", ("symlink", target)), ("rel", ("symlink", up)), ("d", ("dir",)), ("d/up", ("symlink", up))]
    owners = {"abs": (42, 42), "rel": (43, 43), "d/up": (44, 44), "d": (45, 45)}
    store.add("escape", [imagekit.busybox_layer(entries, owners)])
    assert _stat(store, store.profile("escape"), ["/abs", "/rel", "/d/up", "/d"]) == \
        ["42 42", "43 43", "44 44", "45 45"]
    st = os.stat(target)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.uid, user.gid, 0o600)
    _rm_image(store, "escape")


def test_idtree_copy_uses_lchown_only(tmp_path):
    """idtree.copy itself, run here as root (so any chown would succeed): a symlink to a file
    outside the tree, and an owners record naming a path outside, change nothing outside."""
    if os.geteuid() != 0:
        pytest.skip("needs root to chown to arbitrary ids (the suite runs as root in CI)")
    from sandbox import idtree
    outside = tmp_path / "outside"
    outside.write_text("x")
    os.chown(outside, 0, 0)
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(str(outside), src / "ln")
    (tmp_path / "owners").write_bytes(b"4242 4242 ln\0" + b"4343 4343 ../outside\0")
    counts = idtree.copy(str(src), str(tmp_path / "dst"), str(tmp_path / "owners"), 65535, 65535)
    assert counts == {"entries": 1, "chowned": 1, "overflow": 0}
    assert (os.stat(outside).st_uid, os.stat(outside).st_gid) == (0, 0)
    assert os.lstat(tmp_path / "dst" / "ln").st_uid == 4242


def test_an_id_beyond_a_small_mapping_and_the_overflow_id_is_an_error(tmp_path):
    from sandbox import idtree
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (tmp_path / "owners").write_bytes(b"70000 0 f\0")
    with pytest.raises(idtree.Refused, match=r"entry f is owned by uid 70000, outside the ids this mapping covers "
                                             r"\(0-1000\), and so is the overflow id 65534"):
        idtree.copy(str(src), str(tmp_path / "dst"), str(tmp_path / "owners"), 1000, 1000)


def _rm_image(store, name):
    r = store("image", "rm", name)
    assert r.returncode == 0, r.stderr
    left = os.listdir(store.layers_dir())
    assert left == [], left                             # the copies too, though subordinate ids own them


def test_kept_changes_of_subordinate_ids_diff_continue_and_rm(store, user, box, backend):
    store.add("owned", [imagekit.busybox_layer(OWNED, OWNERS)])
    p = store.profile("owned", backend)
    keep = os.path.join(box, "kept")
    r, rep = store.run("run", "--profile", p, "--keep-changes", keep, "--", "sh", "-c",
                       "echo new > /var/cache/partial/g && chown 42:42 /var/cache/partial/g && "
                       "mkdir -m 700 /home/u/private && echo s > /home/u/private/s && chown -R 1000:1000 /home/u/private"
                       " && rm /far")
    assert rep["status"] == "OK", (r.stderr, rep)
    # the caller cannot read what its subordinate ids keep closed...
    with pytest.raises(subprocess.CalledProcessError):
        user.run(["ls", os.path.join(keep, "upper", "home", "u", "private")], check=True)
    # ...but sandbox diff can
    d = store("diff", keep)
    assert d.returncode == 0, d.stderr
    assert d.stdout.decode().splitlines() == ["D /far", "A /home/u/private/", "A /home/u/private/s",
                                              "A /var/cache/partial/g"], d.stdout
    # a second run on the kept changes sees them, with their owners
    r, rep = store.run("run", "--profile", p, "--keep-changes", keep, "--", "stat", "-c", "%u %g",
                       "/var/cache/partial/g", "/home/u/private/s")
    assert rep["status"] == "OK", (r.stderr, rep)
    assert r.stdout.decode().split("\n")[:2] == ["42 42", "1000 1000"]
    # the default map cannot continue them (other ids), nor can another image's run
    r = store("run", "--profile", store.profile("owned", backend, subordinate=False), "--keep-changes", keep,
              "--", "true")
    assert r.returncode == 125 and b"is not empty (nor the kept changes of a run on owned with the same ids)" in \
        r.stderr, r.stderr
    # rm-changes removes it all, as the caller
    r = store("rm-changes", keep)
    assert r.returncode == 0, no_traceback(r)
    assert not os.path.lexists(keep)
    _rm_image(store, "owned")


def test_rm_changes_refuses_a_directory_without_kept_changes(store, box):
    os.makedirs(os.path.join(box, "other", "x"))
    r = store("rm-changes", os.path.join(box, "other"))
    assert r.returncode == 125 and b"holds no kept changes" in r.stderr, r.stderr
    assert os.path.isdir(os.path.join(box, "other", "x"))
