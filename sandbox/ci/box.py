"""The sandbox one inner pytest runs in, and a run of it that streams its report lines.

Filesystem (why this layout): the project's tree is bound read-only at TREE_SRC and a
size-capped tmpfs is mounted at the tree's own path; the inner pytest copies the tree
there before it starts (sandbox/ci/inner.py).  The sandbox's image overlays only exist
for image roots, and a copy made on the host would put an untrusted tree's FIFOs, huge
files and inode counts on the host's disk; inside, the copy is bounded by the tmpfs and
charged to the sandbox's limits, and everything written (.pytest_cache, __pycache__,
files the tests write) vanishes with it.  The interpreter, its venv and every import path
of the outer pytest (editable installs included) are bound read-only at their own paths.
"""
import json
import os
import sys
import tempfile
import threading

import sandbox
from sandbox import profile as profile_mod, schema

TREE_SRC = "/run/sandbox-ci/tree"
INNER_MARK = "SANDBOX_CI_INNER"      # set inside: sandbox_run says plainly that sandboxes do not nest
DEFAULT_PROFILE = "pytest"


def _under(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def import_paths():
    """Host paths the inner interpreter needs: prefixes, sys.path, editable-install maps."""
    # (this package is found the same way: site-packages, a sys.path entry or an editable map)
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths += [p for p in sys.path if p]
    for name, module in list(sys.modules.items()):
        # setuptools' editable finders map package names to source directories
        mapping = getattr(module, "MAPPING", None) if name.startswith("__editable__") else None
        if isinstance(mapping, dict):
            paths += [str(p) for p in mapping.values()]
    return paths


def plan_binds(profile, tree, paths):
    """Read-only binds of `paths` not already visible (under a profile bind) nor in the tree,
    each once, outermost first; plus the tree itself at TREE_SRC."""
    covered = [b["dst"] for b in profile.get("rootfs", {}).get("binds", [])] + \
              [b["dst"] for b in profile.get("binds", [])]
    chosen = []
    for p in sorted({os.path.abspath(p) for p in paths if os.path.exists(p)}, key=len):
        if _under(p, tree) and not _under(tree, p):
            continue
        if any(_under(p, c) for c in covered + chosen):
            continue
        chosen.append(p)
    # a venv (or any import path) inside the tree is bound over the copy, not copied
    inside = sorted({os.path.abspath(p) for p in (sys.prefix, sys.exec_prefix)
                     if _under(os.path.abspath(p), tree) and os.path.abspath(p) != tree})
    binds = [{"src": tree, "dst": TREE_SRC, "rw": False}]
    binds += [{"src": p, "dst": p, "rw": False} for p in chosen + inside]
    return binds, inside


def changed(profile, **data):
    """A loaded profile (name or path) with some top-level keys replaced, in their
    normalised form: the run-time additions a YAML file cannot know (paths of this run)."""
    base = profile if isinstance(profile, profile_mod.Profile) else profile_mod.load(profile)
    return profile_mod.Profile(base.name, base.path, base.chain, dict(base.data, **data), base.origins)


def derive(profile, tree, size):
    """The profile plus a tmpfs at the tree's path (validated by the profile schema)."""
    base = profile if isinstance(profile, profile_mod.Profile) else profile_mod.load(profile)
    tmpfs = dict(base.get("tmpfs", {}))
    tmpfs.update(schema.SCHEMA["tmpfs"]({tree: {"size": size, "mode": "0755", "inodes": 1 << 20}},
                                             "--sandbox-tree-size"))
    return changed(base, tmpfs=tmpfs)


def environment(passed):
    """The inner's whole environment: PATH with the venv first, and only what was passed."""
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    # USER/LOGNAME: getpass.getuser() finds no passwd entry inside (no /etc/passwd is shown)
    env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "USER": "sandbox",
           "LOGNAME": "sandbox", INNER_MARK: "1"}
    # the inner pytest loads the plugins the outer was told to (-p sandbox without autoload)
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
    env.update(passed)
    return env


class Run:
    """One sandboxed inner pytest, started in a thread; iterate to get its messages as they
    come.  `result` is the sandbox's Result once iteration ends (or `error`)."""

    def __init__(self, profile, argv, *, binds, env, cwd, limits, live=False):
        self.result, self.error = None, None
        self.stderr = tempfile.TemporaryFile(prefix="sandbox-ci-stderr-")
        self._read, self._write = os.pipe()
        self._cancel_r, self._cancel_w = os.pipe()
        err_fd, self._live = self.stderr.fileno(), None
        if live:       # -s: the inner's other stream shown as it comes, and kept for diagnostics
            live_r, err_fd = os.pipe()
            self._live = threading.Thread(target=self._show, args=(live_r,), daemon=True)
            self._live.start()
        self._err_fd = err_fd
        kwargs = dict(binds=binds, env=env, cwd=cwd, limits=limits, stdout=self._write,
                      stderr=err_fd, cancel=self._cancel_r)
        self._thread = threading.Thread(target=self._run, args=(profile, argv, kwargs), daemon=True)
        self._thread.start()

    def _run(self, profile, argv, kwargs):
        try:
            self.result = sandbox.run(profile, argv, **kwargs)
        except sandbox.SandboxError as e:
            self.error = e
        except BaseException as e:      # a bug of ours: surfaced by the outer, never lost
            self.error = e
        finally:
            os.close(self._write)        # EOF for the reader
            if self._live is not None:
                os.close(self._err_fd)

    def _show(self, fd):
        out = sys.stdout.buffer
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            self.stderr.write(chunk)
        os.close(fd)

    def __iter__(self):
        self._lines = os.fdopen(self._read, "rb")
        for line in self._lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue            # not ours: a program inside wrote to the channel
            if isinstance(message, dict):
                yield message
        self._thread.join()

    def cancel(self):
        """End the sandbox now (-x reached, Ctrl-C): the runner kills everything in it."""
        try:
            os.write(self._cancel_w, b"x")
        except OSError:
            pass

    def close(self):
        """Cancel if still running, and wait: closing our end first, so a relay blocked on a
        full pipe nobody reads any more sees EPIPE instead of waiting for ever."""
        if self._thread.is_alive():
            self.cancel()
        lines = getattr(self, "_lines", None)
        if lines is not None:
            lines.close()
        else:
            os.close(self._read)
        self._thread.join()
        if self._live is not None:
            self._live.join()
        os.close(self._cancel_r)
        os.close(self._cancel_w)
        self.stderr.close()

    def stderr_tail(self, limit=8192):
        if self._live is not None:
            self._live.join()
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - limit))
        text = self.stderr.read().decode("utf-8", "replace")
        return ("...\n" if size > limit else "") + text
