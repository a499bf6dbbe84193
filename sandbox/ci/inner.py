"""The inner pytest: runs INSIDE the sandbox, `python -P -m sandbox.ci.inner CONFIG_JSON`.

It first copies the project's tree from its read-only bind into the tmpfs mounted at the
tree's own path (so paths, rootdir and node ids are the same as outside, and
`.pytest_cache`, `__pycache__` and test writes land on a tmpfs that dies with the sandbox),
then runs pytest in this process with `Relay`, which writes one JSON line per event on a
private copy of the original stdout.  Everything else printed to stdout (the inner
terminal; with -s what tests print, while the inner terminal then writes nowhere) goes to
stderr, so it cannot be mistaken for a report line.

The reports are the project's own word: its code runs in this process and could write
anything here.  What the sandbox guarantees is what that code can reach, not what it says
about itself.  The outer side (`replay`) only turns lines into pytest reports.
"""
import json
import os
import shutil
import stat
import sys

import pytest


class Relay:
    """A pytest plugin: serialises what the outer pytest needs to replay."""

    def __init__(self, out, only=None, stdout=None):
        self.out, self.only = out, set(only) if only is not None else None
        self.stdout = stdout     # with -s: what tests print, once the terminal has its own (null) file

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config):
        self.config = config
        if self.stdout is not None:       # after the terminal reporter took sys.stdout (os.devnull)
            sys.stdout = self.stdout

    def send(self, kind, **data):
        self.out.write(json.dumps({"t": kind, **data}) + "\n")
        self.out.flush()

    def _report(self, config, report):
        return config.hook.pytest_report_to_serializable(config=config, report=report)

    def pytest_collection_modifyitems(self, session, config, items):
        # --sandbox-scope=test and restarts after a kill run a chosen subset of the items
        if self.only is None:
            return
        # (not reported as deselected: the outer pytest already counted these items)
        items[:] = [i for i in items if i.nodeid in self.only]

    def pytest_deselected(self, items):
        self.send("deselected", nodeids=[i.nodeid for i in items])

    def pytest_collectreport(self, report):
        if report.failed or report.skipped:
            self.send("collectreport", report=self._report(self.config, report))

    def pytest_collection_finish(self, session):
        marks = []
        for item in session.items:
            mark = item.get_closest_marker("sandbox")
            marks.append({"nodeid": item.nodeid, "location": list(item.location),
                          "limits": dict(mark.kwargs) if mark else {}})
        self.send("collected", items=marks)

    def pytest_runtest_logstart(self, nodeid, location):
        self.send("logstart", nodeid=nodeid, location=list(location))

    def pytest_runtest_logreport(self, report):
        self.send("report", report=self._report(self.config, report))

    def pytest_runtest_logfinish(self, nodeid, location):
        self.send("logfinish", nodeid=nodeid, location=list(location))

    def pytest_warning_recorded(self, warning_message, when, nodeid, location):
        self.send("warning", when=when, nodeid=nodeid, message=str(warning_message.message),
                  category=warning_message.category.__name__, filename=str(warning_message.filename),
                  lineno=warning_message.lineno)

    def pytest_sessionfinish(self, session, exitstatus):
        self.send("finish", exitstatus=int(exitstatus))


def copy_tree(src, dst, skip):
    """Copy the read-only tree into the tmpfs at its own path.  Symlinks stay symlinks (what
    they point at inside is only what the sandbox shows); FIFOs, sockets and devices are
    left out (opening a FIFO would block the copy); `skip` holds paths bound separately
    (a venv inside the project)."""
    def ignore(directory, names):
        left = []
        for name in names:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, src)
            if os.path.join(dst, rel) in skip:
                left.append(name)
                continue
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                left.append(name)
        return left
    shutil.copytree(src, dst, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def add_pth_paths():
    """Path lines of the site directories' .pth files, now that the tree exists: at start-up
    the tree's tmpfs was empty, so site.py left out a project installed editable (a .pth
    holding /project/src).  Only paths are added; the .pth files' import lines already ran."""
    import site
    dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    for sitedir in dirs:
        try:
            names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(sitedir, name), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                path = os.path.abspath(os.path.join(sitedir, line))
                if path not in sys.path and os.path.isdir(path):
                    sys.path.append(path)


def main(argv):
    cfg = json.loads(argv[0])
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)                          # stdout is now the diagnostic stream
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", errors="replace", closefd=False)
    printed = None
    if cfg.get("live"):
        # -s: the outer shows this stream as it comes; the inner terminal's own lines would
        # only repeat the outer's, so they go nowhere, and what tests print comes through
        printed, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        copy_tree(cfg["tree_src"], cfg["tree"], set(cfg["skip"]))
    except OSError as e:
        hint = " (raise --sandbox-tree-size)" if "No space left" in str(e) else ""
        print(f"sandbox: cannot copy the project's tree into the sandbox: {e}{hint}", file=sys.stderr)
        return 3
    add_pth_paths()
    os.chdir(cfg["cwd"])
    if cfg.get("path0"):
        sys.path.insert(0, cfg["path0"])
    # This process imported `sandbox` (this module is in it) before pytest starts, so pytest's
    # assertion rewriting of installed plugins warns that it cannot rewrite it: harmless (the
    # plugin does nothing inside), but a project with `filterwarnings = error` (toolz) would
    # die of it before collecting.  Only that one warning is ignored.
    quiet = ["-W", "ignore:Module already imported so cannot be rewritten; sandbox:pytest.PytestAssertRewriteWarning"]
    return int(pytest.main(quiet + cfg["args"], plugins=[Relay(out, cfg.get("only"), printed)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
