"""pytest plugin (entry point `pytest11: sandbox`): `pytest --sandbox[=PROFILE]`.

Inactive until --sandbox is given (only the `sandbox` marker and the `sandbox_run`
fixture exist then).  With it, the outer pytest runs no code of the project:
- conftest.py files are never loaded: before pytest loads the initial conftests
  (`pytest_load_initial_conftests`, tryfirst, which runs before the built-in trylast
  implementation) we switch on --noconftest, which also stops every later conftest;
- the project's directories are taken off sys.path, so nothing imported later by the
  outer pytest can come from the project;
- collection and the test loop are taken over (tryfirst `pytest_collection` and
  `pytest_runtestloop` returning True): no test module is imported here.
Everything runs in the inner pytest, in the sandbox (session.py, box.py, inner.py).

What a plugin cannot prevent, because pytest does it before any entry-point plugin is
imported: `-p MODULE` in the project's ini `addopts`, `pythonpath` shadowing a module,
and pytest11 entry points of packages the project installed.  If such a module was
imported from the project's tree, we refuse to go on instead of pretending (SECURITY.md).
"""
import os
import sys

import pytest

from sandbox.errors import did_you_mean


def pytest_addoption(parser):
    group = parser.getgroup("sandbox", "run the tests inside a sandbox (no network, clean environment, limits)")
    group.addoption("--sandbox", nargs="?", const="pytest", default=None, metavar="PROFILE",
                    help="run the tests in a sandbox; PROFILE (write --sandbox=PROFILE) is a built-in name "
                         "or a YAML file, default: pytest")
    group.addoption("--sandbox-scope", choices=("session", "test"), default="session",
                    help="session: one sandbox runs every test (default); test: a fresh sandbox per test, "
                         "with the limits of its @pytest.mark.sandbox(...)")
    group.addoption("--sandbox-env", action="append", default=[], metavar="NAME[=VALUE]",
                    help="pass this environment variable into the sandbox (nothing else is passed)")
    group.addoption("--sandbox-limit", action="append", default=[], metavar="KEY=VALUE",
                    help="override a limit of the profile, e.g. cpu_time=60s, memory=1G (repeatable)")
    group.addoption("--sandbox-arg", action="append", default=[], metavar="ARG",
                    help="an argument for the sandboxed pytest only, e.g. an option the project's conftest.py "
                         "adds (the outer pytest loads no conftest, so it does not know them; repeatable)")
    group.addoption("--sandbox-stop-commands", choices=("auto", "on", "off"), default="auto",
                    help="wrap the whole output in ::stop-commands:: so that nothing the tests print (captured "
                         "output, messages) can issue a GitHub workflow command; auto: on under GITHUB_ACTIONS")
    group.addoption("--sandbox-tree-size", default="1G", metavar="SIZE",
                    help="size of the tmpfs holding the sandbox's copy of the project's tree (default 1G)")
    parser.addini("sandbox_run_profile", "profile of the sandbox_run fixture (default: python3)", default="python3")
    parser.addini("sandbox_run_limits", "limits of the sandbox_run fixture, KEY=VALUE lines", type="linelist",
                  default=[])


CONTROLLER = pytest.StashKey()


def _active(config):
    return config.stash.get(CONTROLLER, None)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    ns = early_config.known_args_namespace
    if getattr(ns, "sandbox", None) is None:
        return
    ns.noconftest = True          # read by the built-in (trylast) implementation right after us
    tree = str(early_config.rootpath)
    here = str(early_config.invocation_params.dir)
    sys.path[:] = [p for p in sys.path if p and not _project(os.path.abspath(p), tree) and os.path.abspath(p) != here]
    ran = sorted({m.__name__ for m in list(sys.modules.values())
                  if _project(getattr(m, "__file__", None) or "", tree)})
    if ran:
        raise pytest.UsageError(
            f"--sandbox: code of the project under test already ran outside the sandbox: module(s) "
            f"{', '.join(ran)} from {tree} were imported before this plugin was loaded (by -p in the project's "
            "addopts, its pythonpath, or a pytest11 entry point it installed); fix: run "
            "`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -P -m pytest -p sandbox -o addopts= -o pythonpath= --sandbox` "
            "(README: pytest plugin)")


def _inside(path, tree):
    return bool(path) and (path == tree or path.startswith(tree.rstrip("/") + "/"))


def _project(path, tree):
    """In the project's tree, and not in the interpreter's own environment (a .venv inside
    the project holds pytest itself: that is the outer pytest's code, not the project's)."""
    return _inside(path, tree) and not any(_inside(path, os.path.abspath(p)) for p in (sys.prefix, sys.exec_prefix))


class Options:
    def __init__(self, config):
        value = config.getoption("sandbox")
        # `--sandbox tests/` : argparse hands the test path to --sandbox; it is a test path
        # (the inner pytest still gets it), and the profile is the default
        self.test_path = os.path.isdir(value) or value.endswith(".py") or "::" in value
        self.profile = "pytest" if self.test_path else value
        self.scope = config.getoption("sandbox_scope")
        self.tree_size = config.getoption("sandbox_tree_size")
        self.env = {}
        for item in config.getoption("sandbox_env"):
            name, eq, value = item.partition("=")
            if not name:
                raise pytest.UsageError(f"--sandbox-env {item!r}: write NAME or NAME=VALUE")
            if eq:
                self.env[name] = value
            elif name in os.environ:
                self.env[name] = os.environ[name]
        self.limits = parse_limits(config.getoption("sandbox_limit"), "--sandbox-limit")
        self.inner_args = list(config.getoption("sandbox_arg"))


def parse_limits(items, where):
    from sandbox import schema
    keys = schema.SCHEMA["limits"]
    limits = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise pytest.UsageError(f"{where} {item!r}: write KEY=VALUE, e.g. cpu_time=60s")
        if key not in keys:
            raise pytest.UsageError(f"{where} {item!r}: unknown limit {key!r}; "
                                    + did_you_mean(key, keys, f"limits: {', '.join(keys)}"))
        limits[key] = value.strip()
    return limits


def pytest_configure(config):
    config.addinivalue_line("markers", "sandbox(**limits): limits of this test's own sandbox under "
                                       "--sandbox-scope=test, e.g. cpu_time='2s', memory='256M'")
    if config.getoption("sandbox", None) is None:
        return
    from .session import Controller
    controller = config.stash[CONTROLLER] = Controller(config, Options(config))
    stop = config.getoption("sandbox_stop_commands")
    if stop == "on" or stop == "auto" and os.environ.get("GITHUB_ACTIONS") == "true":
        import secrets
        controller.stop_token = secrets.token_hex(16)      # made here: nothing inside can know it
        sys.stdout.write(f"::stop-commands::{controller.stop_token}\n")
        sys.stdout.flush()
    # the outer pytest writes nothing into the project's tree: the cache lives (and dies)
    # inside the sandbox, so --lf/--ff/--sw do not carry over from one run to the next
    for name in ("lfplugin", "nfplugin", "stepwiseplugin"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    controller = _active(session.config)
    if controller is None:
        return None
    controller.collect(session)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    controller = _active(session.config)
    if controller is None:
        return None
    controller.runtestloop(session)
    return True


def pytest_unconfigure(config):
    controller = _active(config)
    if controller is not None:        # an interrupted session: end its sandbox now, not at exit
        controller.abandon()
        if controller.stop_token:
            sys.stdout.write(f"\n::{controller.stop_token}::\n")
            sys.stdout.flush()


def pytest_report_header(config):
    controller = _active(config)
    if controller is not None:
        return controller.header()


def pytest_terminal_summary(terminalreporter, config):
    controller = _active(config)
    if controller is not None:
        controller.summary(terminalreporter)


@pytest.fixture
def sandbox_run(request, tmp_path):
    """Run untrusted code in a sandbox and get its Result:
    `sandbox_run(["prog", "arg"])`, `sandbox_run(source="print(1)")` (run as the profile's
    script), with `stdin=`, `limits=`, `profile=` and the other `sandbox.run` arguments.
    Defaults come from the ini keys sandbox_run_profile and sandbox_run_limits."""
    import sandbox
    if os.environ.get("SANDBOX_CI_INNER"):       # box.INNER_MARK (box is not imported without --sandbox)
        pytest.fail("sandbox_run cannot work under pytest --sandbox: a sandbox cannot start another one (no "
                    "nested user namespaces); run the grader's own tests without --sandbox", pytrace=False)
    default_profile = request.config.getini("sandbox_run_profile") or "python3"
    default_limits = parse_limits(request.config.getini("sandbox_run_limits"), "sandbox_run_limits")
    counter = iter(range(1 << 30))

    def run(argv=None, *, source=None, name="main.py", profile=None, limits=None, **kw):
        if source is not None:
            path = tmp_path / f"sandbox-run-{next(counter)}" / name
            path.parent.mkdir()
            path.write_bytes(source.encode() if isinstance(source, str) else source)
            path.chmod(0o644)
            kw["script"] = str(path)
        return sandbox.run(profile or default_profile, argv, limits={**default_limits, **(limits or {})}, **kw)
    return run
