"""The outer pytest's collection and test loop under --sandbox: start sandboxes, replay.

Session scope: one sandbox collects and runs everything; if the sandbox is ended while a
test runs (a limit), that test fails with the verdict and the tests it did not reach
continue in a fresh sandbox.  Test scope: one sandbox collects (--collect-only), then
each test runs in its own sandbox with its `@pytest.mark.sandbox(...)` limits, and its
reports are replayed once the sandbox is gone, carrying the run's figures for JUnit.
"""
import os
import shlex
import sys

import pytest

from ..schema import DEFAULTS
from . import box
from .replay import LIMIT_STATUSES, Replayer, figures

# Options that only make sense for the outer pytest (it writes the XML; the inner's tmp
# files live in the sandbox's /tmp) and our own: never passed to the inner pytest.
OUTER_ONLY = {"--junitxml", "--junit-xml", "--junit-prefix", "--basetemp", "--sandbox-scope", "--sandbox-env",
              "--sandbox-limit", "--sandbox-tree-size", "--sandbox-arg", "--sandbox-stop-commands"}
OUTER_FLAGS = {"--sandbox"}
# `-o addopts= -o pythonpath=` keep the project's ini from bringing code into the OUTER
# pytest (README); the inner pytest must see the project's ini as it is.
OUTER_OVERRIDES = {"addopts=", "pythonpath="}


def inner_args(config, opts):
    """The outer's command line (PYTEST_ADDOPTS first, as pytest reads it) minus outer-only
    options; the inner reads the project's ini (and its addopts) itself."""
    args = shlex.split(os.environ.get("PYTEST_ADDOPTS", "")) + list(config.invocation_params.args)
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in ("-o", "--override-ini") and i + 1 < len(args) and args[i + 1] in OUTER_OVERRIDES:
            skip = True
            continue
        if arg[2:] in OUTER_OVERRIDES and arg.startswith("-o") or \
                arg.partition("=")[2] in OUTER_OVERRIDES and arg.startswith("--override-ini="):
            continue
        name, eq, _ = arg.partition("=")
        if name in OUTER_FLAGS:
            # a bare --sandbox may have consumed the next word as its profile
            skip = not eq and not opts.test_path and i + 1 < len(args) and args[i + 1] == opts.profile
            continue
        if name in OUTER_ONLY:
            skip = not eq
            continue
        out.append(arg)
    return out


def _path0():
    """What the outer interpreter put first on sys.path (the script's dir, or the cwd for -m)."""
    if sys.flags.safe_path:
        return None
    if os.path.basename(sys.argv[0]) == "__main__.py":
        return os.getcwd()
    return os.path.dirname(os.path.abspath(sys.argv[0]))


class Controller:
    def __init__(self, config, opts):
        self.config, self.opts = config, opts
        self.tree = str(config.rootpath)
        self.cwd = str(config.invocation_params.dir)
        if not box._under(self.cwd, self.tree):
            raise pytest.UsageError(f"--sandbox: pytest was started in {self.cwd}, outside the project's rootdir "
                                    f"{self.tree}; start it inside the project (or pass --rootdir)")
        home = os.path.realpath(os.path.expanduser("~"))
        if box._under(home, os.path.realpath(self.tree)):
            # the whole tree is visible inside: it must not be a home directory (~/.ssh) or /
            raise pytest.UsageError(f"--sandbox: the rootdir {self.tree} holds your home directory {home}, which "
                                    "would then be visible inside the sandbox; run pytest inside the project (with "
                                    "its pytest.ini, pyproject.toml or setup.cfg), or pass --rootdir=PROJECT")
        from sandbox import SandboxError
        try:
            self.profile = box.derive(opts.profile, self.tree, opts.tree_size)
        except SandboxError as e:
            raise pytest.UsageError(f"--sandbox={opts.profile}: {e}") from None
        self.binds, self.skip = box.plan_binds(self.profile, self.tree, box.import_paths())
        # "localhost" must resolve, as it does outside, without showing the host's /etc/hosts
        import tempfile
        self.scratch = tempfile.mkdtemp(prefix="sandbox-ci-scratch-")
        hosts = os.path.join(self.scratch, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                    f"127.0.1.1 {self.profile.get('hostname') or DEFAULTS['hostname']}\n")
        os.chmod(hosts, 0o644)
        self.binds.append({"src": hosts, "dst": "/etc/hosts", "rw": False})
        inifile = str(config.inipath) if config.inipath else None
        if inifile and not box._under(inifile, self.tree):      # -c FILE from elsewhere: the inner reads it too
            self.binds.append({"src": inifile, "dst": inifile, "rw": False})
        self.env = box.environment(opts.env)
        self.args = inner_args(config, opts) + opts.inner_args
        self.live = config.getoption("capture") == "no"     # -s: what tests print is shown as it comes
        self.results = []          # the Result of every sandbox, for the summary
        self.run, self.replayer, self.messages = None, None, None
        self.stop_token = None     # set by the plugin when the output is wrapped in ::stop-commands::

    def start(self, only=None, collect_only=False, limits=None):
        cfg = {"tree_src": box.TREE_SRC, "tree": self.tree, "skip": self.skip, "cwd": self.cwd,
               "path0": _path0(), "args": self.args + (["--collect-only", "-q"] if collect_only else []),
               "only": only, "live": self.live}
        import json
        argv = [sys.executable, "-P", "-m", "sandbox.ci.inner", json.dumps(cfg)]
        return box.Run(self.profile, argv, binds=self.binds, env=self.env, cwd=self.tree,
                       limits=dict(self.opts.limits, **(limits or {})), live=self.live)

    # ------------------------------------------------------------ collection
    def collect(self, session):
        self.replayer = Replayer(session)
        self.run = self.start(collect_only=self.opts.scope == "test")
        self.messages = iter(self.run)
        for message in self.messages:
            if self.replayer.collection(message):
                break
        else:
            self._ended_early("while collecting")
        self.replayer.finish_collection()
        if self.opts.scope == "test":
            for _ in self.messages:         # the --collect-only session's end
                pass
            self._close()

    # ------------------------------------------------------------ running
    def runtestloop(self, session):
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            self._close()
            raise session.Interrupted(f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
                                      "during collection")
        if session.config.option.collectonly:
            for _ in self.messages or ():      # the inner --collect-only session's end
                pass
            self._close()
            return
        try:
            if self.opts.scope == "test":
                self._each_test(session)
            else:
                self._whole_session(session)
        finally:
            if self.replayer.malformed:     # an inner that garbles its reports cannot make the run pass
                session.testsfailed += 1
            self._suite_properties()

    def _suite_properties(self):
        """The sandboxes' figures as <testsuite> properties of --junitxml (what
        record_testsuite_property writes): in session scope no test has its own."""
        from _pytest.junitxml import xml_key       # the LogXML of --junitxml, as record_testsuite_property finds it
        xml = self.config.stash.get(xml_key, None)
        if xml is None or not self.results:
            return
        for name, value in (("sandbox_profile", self.profile.name), ("sandbox_scope", self.opts.scope),
                            ("sandbox_runs", len(self.results)),
                            ("sandbox_statuses", " ".join(r.status for r in self.results)),
                            ("sandbox_cpu_time_s", round(sum(r.cpu_time_s for r in self.results), 6)),
                            ("sandbox_wall_time_s", round(sum(r.wall_time_s for r in self.results), 6)),
                            ("sandbox_memory_peak_bytes", max(r.memory_peak_bytes for r in self.results)),
                            ("sandbox_processes_peak", max(r.processes_peak for r in self.results))):
            xml.add_global_property(name, str(value))

    def _stop_if_asked(self, session):
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)

    def _whole_session(self, session):
        rep = self.replayer
        while True:
            for message in self.messages:
                rep.running_message(message)
                if session.shouldfail or session.shouldstop:
                    self._close()
                    self._stop_if_asked(session)
            result = self._close()
            if rep.exitstatus is not None and (result is None or result.status not in LIMIT_STATUSES):
                self._inner_failed(rep.exitstatus)
                return
            left = [n for n in rep.order if n not in rep.done]
            if rep.running is None:
                why = self._why(result, "ended the sandbox between tests")
                for nodeid in left:
                    rep.lost(nodeid, why)
                return
            rep.verdict(rep.running[0], result)
            self._stop_if_asked(session)
            left = [n for n in rep.order if n not in rep.done]
            if not left:
                return
            # the tests the killed sandbox did not reach run in a fresh one
            rep.exitstatus = None
            self.run = self.start(only=left)
            self.messages = (m for m in self.run if m["t"] not in ("collected", "deselected", "collectreport"))

    def _each_test(self, session):
        rep = self.replayer
        for nodeid in list(rep.order):
            limits = rep.items[nodeid]["limits"]
            self.run = self.start(only=[nodeid], limits=limits)
            buffered = [m for m in self.run if m["t"] not in ("collected", "deselected")]
            try:
                result = self._close()
            except pytest.UsageError as e:      # the marker's limits are wrong: this test's problem
                args = ", ".join(f"{k}={v!r}" for k, v in limits.items())
                rep.lost(nodeid, f"@pytest.mark.sandbox({args}): {e}")
                self._stop_if_asked(session)
                continue
            props = figures(result)
            ended = result.status in LIMIT_STATUSES
            for message in buffered:
                if message["t"] == "report" and isinstance(message.get("report"), dict):
                    message["report"]["user_properties"] = list(message["report"].get("user_properties", [])) + \
                        [list(p) for p in props]
                # a test the sandbox ended gets the verdict as its last phase instead
                if ended and (message["t"] in ("logfinish", "finish") or message["t"] == "report" and
                              isinstance(message.get("report"), dict) and message["report"].get("when") == "teardown"):
                    continue
                rep.running_message(message)
            if ended or nodeid not in rep.done:     # ended by a limit, or the inner pytest died (os._exit...)
                rep.verdict(nodeid, result, props)
            self._stop_if_asked(session)

    # ------------------------------------------------------------ endings
    def _close(self):
        """Wait for the current sandbox; its Result (None if it could not start)."""
        run, self.run = self.run, None
        if run is None:
            return None
        self.tail = run.stderr_tail()
        run.close()
        if run.error is not None:
            from sandbox import SandboxError
            if isinstance(run.error, SandboxError):
                raise pytest.UsageError(f"--sandbox: {run.error}")
            raise run.error
        self.results.append(run.result)
        return run.result

    def abandon(self):
        run, self.run = self.run, None
        if run is not None:
            run.close()
        import shutil
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _why(self, result, what):
        status = f"{result.status}: {result.message}" if result is not None else "the sandbox did not start"
        tail = self.tail.strip()
        return f"sandbox {what}: {status}" + (f"\n--- the sandboxed pytest's output ---\n{tail}" if tail else "")

    def _ended_early(self, when):
        result = self._close()
        raise pytest.UsageError(self._why(result, f"ended {when}"))

    def _inner_failed(self, exitstatus):
        # 3 internal error, 4 usage error inside: nothing else says why, the inner's output does
        if exitstatus in (3, 4):
            pytest.exit(f"the sandboxed pytest exited with status {exitstatus}:\n{self.tail.strip()}",
                        returncode=exitstatus)

    def header(self):
        limits = ", ".join(f"{k}={v}" for k, v in self.opts.limits.items())
        return (f"sandbox: profile {self.profile.name}, scope {self.opts.scope}"
                + (f", limits {limits}" if limits else "")
                + f"; {self.tree} as a throw-away copy; no network; environment passed: "
                + (", ".join(sorted(self.opts.env)) or "nothing"))

    def summary(self, terminal):
        bad = self.replayer.malformed if self.replayer else []
        if bad:
            terminal.write_sep("!", "sandbox: malformed messages", red=True)
            terminal.write_line(f"the sandboxed pytest sent {len(bad)} message(s) that could not be replayed and were "
                                f"ignored (so this run fails); the first: {bad[0]}")
        if not self.results:
            return
        verdicts = {}
        for r in self.results:
            verdicts[r.status] = verdicts.get(r.status, 0) + 1
        cpu = sum(r.cpu_time_s for r in self.results)
        wall = sum(r.wall_time_s for r in self.results)
        peak = max(r.memory_peak_bytes for r in self.results)
        terminal.write_sep("-", "sandbox")
        terminal.write_line(f"{len(self.results)} sandbox{'es' if len(self.results) != 1 else ''} "
                            f"({', '.join(f'{n} {s}' for s, n in sorted(verdicts.items()))}), profile "
                            f"{self.profile.name}: {cpu:.2f} s CPU, {wall:.2f} s wall, peak memory "
                            f"{peak / (1 << 20):.1f} MiB; no network, environment: "
                            f"{', '.join(sorted(self.opts.env)) or 'nothing passed'}")
