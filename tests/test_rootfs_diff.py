"""`sandbox diff` (rootfs.diff) on a --keep-changes directory, in-process: what it lists,
and a clear error for a directory that is not one."""
import json
import os

import pytest

from sandbox import cli, rootfs
from sandbox.errors import UsageError

LAYER = "ab" * 32


def _keep(tmp_path, meta=None):
    """A store with one layer holding /etc/app.conf and /.profile, and a kept upper layer."""
    store = tmp_path / "store"
    layer = store / "layers" / LAYER
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "app.conf").write_text("x")
    (layer / ".profile").write_text("x")
    keep = tmp_path / "keep"
    (keep / "upper").mkdir(parents=True)
    (keep / "work").mkdir()
    if meta is None:
        meta = {"image": "img", "layers": [LAYER], "store": str(store)}
    (keep / "changes.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return keep


def test_top_level_dot_names_keep_their_dot(tmp_path):
    """issue 15 bug 1: .lstrip('.') turned /.config into /config."""
    keep = _keep(tmp_path)
    upper = keep / "upper"
    (upper / ".config" / "app").mkdir(parents=True)
    (upper / ".config" / "app" / "x").write_text("new")
    (upper / ".profile").write_text("changed")
    (upper / "etc").mkdir()
    (upper / "etc" / "app.conf").write_text("changed")
    (upper / "..hidden").write_text("new")
    assert rootfs.diff(str(keep)) == [("A", "/..hidden"), ("A", "/.config/"), ("A", "/.config/app/"),
                                      ("A", "/.config/app/x"), ("C", "/.profile"), ("C", "/etc/app.conf")]


@pytest.mark.parametrize("meta", ["{not json", "[]", "5", json.dumps({"image": "img"}),
                                  json.dumps({"image": "img", "layers": "abc", "store": "/nonexistent"}),
                                  json.dumps({"image": "img", "layers": ["../../../etc"], "store": "/"}),
                                  json.dumps({"image": 5, "layers": [LAYER], "store": ["x"]}),
                                  json.dumps({"image": "img", "layers": [LAYER], "store": "/nonexistent/store"})])
def test_malformed_changes_json_is_a_clear_error(tmp_path, meta, capsys):
    keep = _keep(tmp_path, meta)
    with pytest.raises(UsageError) as e:
        rootfs.diff(str(keep))
    assert e.value.where == "sandbox diff" and "changes.json" in e.value.what and e.value.fix
    assert cli.main(["diff", str(keep)]) == 125
    err = capsys.readouterr().err
    assert "internal error" not in err and "changes.json" in err


def test_diff_of_a_file_or_nothing_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for target in (str(f), str(tmp_path / "missing"), ""):
        assert cli.main(["diff", target]) == 125
        err = capsys.readouterr().err
        assert "internal error" not in err and "fix:" in err, err


def test_non_utf8_names_are_printed_escaped(tmp_path, capfdbinary):
    """A file name that is not UTF-8 goes to a strict UTF-8 stdout as \\xNN, not as an internal error."""
    import subprocess
    import sys
    keep = _keep(tmp_path)
    with open(os.path.join(os.fsencode(keep / "upper"), b"caf\xe9"), "w") as f:
        f.write("x")
    r = subprocess.run([sys.executable, "-c", "import sys, sandbox.cli as c; sys.exit(c.main(sys.argv[1:]))",
                        "diff", str(keep)], capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"A /caf\\xe9\n", r.stdout
