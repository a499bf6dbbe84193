"""rootfs.diff on a kept upper layer built here, against a one-layer store: added, changed and
deleted paths in both whiteout forms, opaque directories, symlinks, dot names."""
import json
import os

import pytest

from sandbox import rootfs

LAYER = "cd" * 32


def kept(tmp_path):
    store = tmp_path / "store"
    layer = store / "layers" / LAYER
    for d in ("etc/app", "data/old", ".config"):
        (layer / d).mkdir(parents=True)
    for f in ("etc/app/a.conf", "etc/hosts", "data/old/x", ".config/rc", "gone"):
        (layer / f).write_text("image\n")
    keep = tmp_path / "keep"
    upper = keep / "upper"
    (keep / "work").mkdir(parents=True)
    (keep / "changes.json").write_text(json.dumps({"image": "img", "layers": [LAYER], "store": str(store)}))
    return upper


def test_added_changed_deleted(tmp_path):
    upper = kept(tmp_path)
    (upper / "etc" / "app").mkdir(parents=True)
    (upper / "etc" / "app" / "a.conf").write_text("changed\n")          # in the image: C
    (upper / "etc" / "app" / "new.conf").write_text("new\n")           # not: A
    (upper / "etc" / ".wh.hosts").write_text("")                       # fuse-overlayfs's whiteout: D
    (upper / "newdir" / "sub").mkdir(parents=True)                     # a new directory: A, with its contents
    (upper / "newdir" / "sub" / "f").write_text("")
    (upper / ".config").mkdir()
    (upper / ".config" / "rc").write_text("changed\n")                 # a top-level dot name keeps its dot
    os.symlink("/nowhere", upper / "link")                             # a symlink is an entry of its own
    os.symlink("etc", upper / "linkdir")                               # even one to a directory
    assert rootfs.diff(str(upper.parent)) == [
        ("C", "/.config/rc"),
        ("C", "/etc/app/a.conf"),
        ("A", "/etc/app/new.conf"),
        ("D", "/etc/hosts"),
        ("A", "/link"),
        ("A", "/linkdir"),
        ("A", "/newdir/"),
        ("A", "/newdir/sub/"),
        ("A", "/newdir/sub/f"),
    ]


def test_an_opaque_directory_is_replaced(tmp_path):
    upper = kept(tmp_path)
    (upper / "data").mkdir(parents=True)
    (upper / "data" / ".wh..wh..opq").write_text("")                   # fuse-overlayfs marks it with a file
    (upper / "data" / "fresh").write_text("")
    assert rootfs.diff(str(upper.parent)) == [
        ("C", "/data/ (replaced: what the image had in it is gone)"), ("A", "/data/fresh")]


def test_a_kernel_whiteout_is_a_deletion(tmp_path):
    upper = kept(tmp_path)
    upper.mkdir()
    try:
        os.mknod(upper / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # kernel overlayfs's form: a 0/0 device
    except PermissionError:
        pytest.skip("a 0/0 character device needs CAP_MKNOD")
    assert rootfs.diff(str(upper.parent)) == [("D", "/gone")]


def test_nothing_changed(tmp_path):
    upper = kept(tmp_path)
    upper.mkdir()
    assert rootfs.diff(str(upper.parent)) == []
