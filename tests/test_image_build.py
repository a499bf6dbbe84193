"""`sandbox image build` with mmdebstrap (rootless, unshare mode) and the built-in
py311-image profile on its result.  Slow (about a minute: it downloads and unpacks
Debian), so it is marked slow; CI runs it.  The build is conftest's debian_store, one a session."""
import os

import pytest

from conftest import no_traceback


@pytest.mark.slow
def test_build_a_debian_image_and_run_py311_image(sbx, debian_store):
    store, r = debian_store                            # (shared with test_image_apt.py: one build a session)
    env = {"SANDBOX_STORE": store}
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert b"bookworm-python3: Debian bookworm image" in r.stdout
    hello = sbx.script("hello.py", "import os, sys\nprint(sys.version_info[:2], open('/etc/debian_version').read()"
                                   ".split('.')[0], os.path.exists('/usr/bin/gcc'))\n")
    r, rep = sbx.run("run", "--profile", "py311-image", hello, env=env)
    assert rep["status"] == "OK", (rep, r.stderr)
    assert r.stdout == b"(3, 11) 12 False\n"          # the image's Python and Debian; no host compiler
    assert rep["rootfs"]["image"] == "bookworm-python3"
    c = sbx("check", "py311-image", env=env)          # the interpreter is looked up in the image
    assert c.returncode == 0 and c.stdout.startswith(b"py311-image: ok"), c.stderr


def test_missing_image_for_py311_image(sbx, box):
    """Without the image, the profile says how to build it (and `check` says the same)."""
    r = sbx("run", "--profile", "py311-image", "--", "true", env={"SANDBOX_STORE": os.path.join(box, "empty")})
    text = no_traceback(r)
    assert r.returncode == 125
    assert "py311-image.yaml: rootfs.image: no image named 'bookworm-python3'" in text
    assert "sandbox image build bookworm-python3 --debian bookworm --packages python3" in text
    c = sbx("check", "py311-image", env={"SANDBOX_STORE": os.path.join(box, "empty")})
    assert c.returncode == 125 and b"no image named 'bookworm-python3'" in c.stderr
