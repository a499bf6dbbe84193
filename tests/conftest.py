"""Test harness: every sandbox run happens as a real unprivileged user.

Run as root (CI), the suite drops to SANDBOX_TEST_USER (default: sandbox-test)
with setpriv for each invocation; run as a normal user it runs as that user.
Either way the rootless path is what gets exercised.  A missing test user is a
failure, not a skip: `.ci/run` creates it.
"""
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SANDBOX = os.path.join(BIN, "sandbox")


def _test_user():
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    name = os.environ.get("SANDBOX_TEST_USER", "sandbox-test")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"running as root, the suite needs an unprivileged user '{name}' to run sandboxes as: "
                    f"useradd -m {name} (or set SANDBOX_TEST_USER); .ci/run does this", pytrace=False)


class User:
    """Runs commands as the unprivileged test user."""

    def __init__(self, pw, home):
        self.pw, self.home = pw, home
        self.uid, self.gid, self.name = pw.pw_uid, pw.pw_gid, pw.pw_name

    def prefix(self):
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]

    def env(self, extra=None):
        env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    # Commands run from the user's home: the checkout may be unreadable to the user (/root),
    # and `python -c` there would import the unbuilt source tree instead of the installed package.
    def run(self, argv, *, input=None, timeout=120, env=None, check=False, **kw):
        kw.setdefault("cwd", self.home)
        return subprocess.run(self.prefix() + list(argv), input=input, capture_output=True, timeout=timeout,
                              env=self.env(env), check=check, **kw)

    def popen(self, argv, env=None, **kw):
        kw.setdefault("cwd", self.home)
        return subprocess.Popen(self.prefix() + list(argv), env=self.env(env), **kw)


@pytest.fixture(scope="session")
def user():
    pw = _test_user()
    home = tempfile.mkdtemp(prefix="sandbox-test-home-")
    os.chmod(home, 0o755)
    if os.geteuid() == 0:
        os.chown(home, pw.pw_uid, pw.pw_gid)
    u = User(pw, home)
    if not os.access(SANDBOX, os.X_OK):
        pytest.fail(f"{SANDBOX} is missing: install the package into this environment (pip install .)", pytrace=False)
    r = u.run([SANDBOX, "--version"])
    if r.returncode != 0:
        pytest.fail(f"user {u.name} cannot run {SANDBOX}: {r.stderr.decode()} -- the environment must be "
                    "readable by that user (CI puts it outside /root)", pytrace=False)
    yield u
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def box(user):
    """A scratch directory the test user owns and everyone can read."""
    d = tempfile.mkdtemp(prefix="sandbox-test-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, user.uid, user.gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(path, text, mode=0o644, owner=None):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner.uid, owner.gid)
    return path


class Sbx:
    """`sandbox` as the test user; `run()` also returns the JSON report."""

    def __init__(self, user, box):
        self.user, self.box = user, box

    def __call__(self, *args, input=None, timeout=120, env=None):
        return self.user.run([SANDBOX, *args], input=input, timeout=timeout, env=env)

    def run(self, *args, input=None, timeout=120, env=None):
        report = os.path.join(self.box, "report.json")
        if os.path.exists(report):
            os.unlink(report)
        r = self(args[0], "--report", report, *args[1:], input=input, timeout=timeout, env=env)
        data = None
        if os.path.exists(report):
            with open(report) as f:
                data = json.load(f)
        return r, data

    def script(self, name, text, mode=0o644):
        return write(os.path.join(self.box, name), text, mode, self.user)


@pytest.fixture
def sbx(user, box):
    return Sbx(user, box)


@pytest.fixture(scope="session")
def debian_store(user):
    """One Debian bookworm image (python3), built once per session with `sandbox image build`
    (mmdebstrap, unshare mode: about a minute) in a store of the test user's: (store, build
    result).  Removed with `sandbox image rm` at the end, which must also remove the copies of
    its layers that subordinate-id runs made (owned by subordinate ids)."""
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed (apt install mmdebstrap uidmap; .ci/run installs it)")
    store = tempfile.mkdtemp(prefix="sandbox-test-store-")
    os.chmod(store, 0o755)
    if os.geteuid() == 0:
        os.chown(store, user.uid, user.gid)
    env = {"SANDBOX_STORE": store}
    build = user.run([SANDBOX, "image", "build", "bookworm-python3", "--debian", "bookworm", "--packages", "python3"],
                     env=env, timeout=900)
    yield store, build
    try:
        if build.returncode == 0:
            r = user.run([SANDBOX, "image", "rm", "bookworm-python3"], env=env)
            assert r.returncode == 0, r.stderr
            left = os.listdir(os.path.join(store, "layers"))
            assert left == [], f"sandbox image rm left {left} in the store"
    finally:
        shutil.rmtree(store, ignore_errors=True)


def chown_tree(user, path):
    """Give a file, or a tree, the test makes as root to the test user (nothing to do as that user)."""
    if os.geteuid() == 0:
        os.lchown(path, user.uid, user.gid)
        for base, dirs, files in os.walk(path):
            for name in dirs + files + ["."]:
                os.lchown(os.path.join(base, name), user.uid, user.gid)


@contextlib.contextmanager
def pong_server(user, reply=b"pong"):
    """A TCP server on 127.0.0.1, run as the test user, that answers `reply` to every connection
    (a stand-in for the network a setup step may reach, or a service a test must not reach);
    yields its port, stops it after."""
    server = user.popen([sys.executable, "-c",
                         "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\n"
                         "print(s.getsockname()[1], flush=True)\n"
                         f"while True:\n    c, _ = s.accept(); c.sendall({reply!r}); c.close()\n"],
                        stdout=subprocess.PIPE)
    try:
        yield int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def no_traceback(r):
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert "Traceback" not in out, out
    return out
