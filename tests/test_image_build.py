"""`sandbox image build` with mmdebstrap (rootless, unshare mode) and the built-in
py311-image profile on its result.  Slow (about a minute: it downloads and unpacks
Debian), so it is marked slow; CI runs it."""
import os
import shutil
import tempfile

import pytest

from conftest import no_traceback


@pytest.mark.slow
def test_build_a_debian_image_and_run_py311_image(sbx, user):
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed (apt install mmdebstrap uidmap; .ci/run installs it)")
    store = tempfile.mkdtemp(prefix="sandbox-test-store-")
    try:
        os.chmod(store, 0o755)
        if os.geteuid() == 0:
            os.chown(store, user.uid, user.gid)
        env = {"SANDBOX_STORE": store}
        r = sbx("image", "build", "bookworm-python3", "--debian", "bookworm", "--packages", "python3",
                env=env, timeout=900)
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
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_missing_image_for_py311_image(sbx, box):
    """Without the image, the profile says how to build it (and `check` says the same)."""
    r = sbx("run", "--profile", "py311-image", "--", "true", env={"SANDBOX_STORE": os.path.join(box, "empty")})
    text = no_traceback(r)
    assert r.returncode == 125
    assert "py311-image.yaml: rootfs.image: no image named 'bookworm-python3'" in text
    assert "sandbox image build bookworm-python3 --debian bookworm --packages python3" in text
    c = sbx("check", "py311-image", env={"SANDBOX_STORE": os.path.join(box, "empty")})
    assert c.returncode == 125 and b"no image named 'bookworm-python3'" in c.stderr
