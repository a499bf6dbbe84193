"""pytest --sandbox: the outer pytest (run as the unprivileged test user, in a project it
owns) runs no project code, and each thing the sample project's tests reach for outside a
sandbox is out of their reach inside one."""
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pytest

from conftest import no_traceback, pong_server

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ci_samples")


def make_project(user, dest, sample, **subst):
    """Copy tests/ci_samples/SAMPLE (dropping .tmpl, filling @KEY@) into DEST, owned by the user."""
    src = os.path.join(SAMPLES, sample)
    for base, dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        for name in files:
            with open(os.path.join(base, name)) as f:
                text = f.read()
            for key, value in subst.items():
                text = text.replace(f"@{key}@", str(value))
            with open(os.path.join(dest, rel, name[:-len(".tmpl")]), "w") as f:
                f.write(text)
    if os.geteuid() == 0:
        for base, dirs, files in os.walk(dest):
            for name in dirs + files + ["."]:
                os.lchown(os.path.join(base, name), user.uid, user.gid)
    return dest


def pytest_as(user, project, *args, env=None, python_flags=(), timeout=240):
    """The outer pytest, as the test user, in the project; returns (completed, {name: outcome})."""
    xml = os.path.join(os.path.dirname(project), "junit.xml")
    if os.path.exists(xml):
        os.unlink(xml)
    # --basetemp next to the project (removed with it; the sandboxed runs use their own /tmp)
    basetemp = os.path.join(os.path.dirname(project), "basetemp")
    r = user.run([sys.executable, *python_flags, "-m", "pytest", f"--junitxml={xml}", f"--basetemp={basetemp}", *args],
                 cwd=project, env=env, timeout=timeout)
    outcomes = {}
    if os.path.exists(xml):
        for case in ET.parse(xml).iter("testcase"):
            kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            message = next((c.get("message") for c in case if c.tag in ("failure", "error")), None)
            outcomes[case.get("name")] = (kinds[0] if kinds else "passed", message, props)
    return r, outcomes


@pytest.fixture
def workdir(user):
    """A directory the user owns, holding one project and its junit.xml."""
    import tempfile
    d = tempfile.mkdtemp(prefix="sandbox-ci-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, user.uid, user.gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def secret_service(user):
    """A loopback TCP server, run as the test user, that hands out a secret."""
    with pong_server(user, b"secret-service") as port:
        yield port


@pytest.fixture
def leaky(user, secret_service):
    home = user.home
    os.makedirs(os.path.join(home, ".ssh"), exist_ok=True)
    with open(os.path.join(home, ".ssh", "id_leaky"), "w") as f:
        f.write("PRIVATE KEY")
    if os.geteuid() == 0:
        os.chown(os.path.join(home, ".ssh"), user.uid, user.gid)
        os.chown(os.path.join(home, ".ssh", "id_leaky"), user.uid, user.gid)
    for marker in ("leaky-conftest-ran", "leaky-module-imported"):
        if os.path.exists(os.path.join(home, marker)):
            os.unlink(os.path.join(home, marker))
    with open(os.path.join(home, ".leaky-rc"), "w") as f:
        f.write("original\n")
    if os.geteuid() == 0:
        os.chown(os.path.join(home, ".leaky-rc"), user.uid, user.gid)
    # inside the home, as a CI checkout is ($HOME/work/REPO): the tree's neighbours stay hidden
    os.makedirs(os.path.join(home, "work"), exist_ok=True)
    if os.geteuid() == 0:
        os.chown(os.path.join(home, "work"), user.uid, user.gid)
    project = make_project(user, os.path.join(home, "work", "leaky"), "leaky", HOME=home, PORT=secret_service)
    yield project
    shutil.rmtree(os.path.join(home, ".ssh"), ignore_errors=True)
    shutil.rmtree(os.path.join(home, "work"), ignore_errors=True)


SECRETS = {"LEAKY_SECRET": "hunter2", "GITHUB_TOKEN": "ghs_leaky"}
LEAKS = ("test_env_secret", "test_github_token", "test_ssh_key", "test_network", "test_write_outside")
ALWAYS = {"test_tree_writes": "passed", "test_prints_workflow_commands": "failure"}


def _markers(user):
    """What the project's code left in the user's home: markers, and a tampered rc file."""
    found = sorted(m for m in ("leaky-conftest-ran", "leaky-module-imported")
                   if os.path.exists(os.path.join(user.home, m)))
    with open(os.path.join(user.home, ".leaky-rc")) as f:
        return found + ([] if f.read() == "original\n" else [".leaky-rc tampered"])


def test_without_sandbox_every_leak_works(user, leaky):
    """The control: the sample's tests really do reach the secrets when nothing stops them."""
    r, outcomes = pytest_as(user, leaky, env=SECRETS)
    assert r.returncode == 1, no_traceback(r)
    assert {n: o[0] for n, o in outcomes.items()} == dict({n: "passed" for n in LEAKS}, **ALWAYS)
    assert _markers(user) == ["leaky-conftest-ran", "leaky-module-imported", ".leaky-rc tampered"]
    assert os.path.exists(os.path.join(leaky, "tree-file.txt"))


def test_sandbox_stops_every_leak_and_runs_no_project_code_outside(user, leaky):
    r, outcomes = pytest_as(user, leaky, "--sandbox", "-ra", env=SECRETS)
    out = no_traceback(r)
    assert r.returncode == 1, out
    assert {n: o[0] for n, o in outcomes.items()} == dict({n: "failure" for n in LEAKS}, **ALWAYS)
    # conftest.py and the test module ran only inside: their host markers never appeared
    assert _markers(user) == []
    # what the tests (and pytest inside) wrote into the tree went to the throw-away copy
    assert sorted(os.listdir(leaky)) == ["conftest.py", "pytest.ini", "tests"], os.listdir(leaky)
    assert os.listdir(os.path.join(leaky, "tests")) == ["test_leaks.py"]
    assert "FAILED tests/test_leaks.py::test_network" in out and "1 sandbox (1 RE)" in out
    assert f"sandbox: profile pytest, scope session; {leaky} as a throw-away copy; no network" in out


def test_a_rootdir_holding_the_home_is_refused(user, leaky):
    """The tree is visible inside: a rootdir that holds ~ (and ~/.ssh) must not become it."""
    r, outcomes = pytest_as(user, leaky, "--sandbox", f"--rootdir={user.home}", env=SECRETS)
    err = no_traceback(r)
    assert r.returncode == 4 and "holds your home directory" in err and outcomes == {}, err
    assert _markers(user) == []


def test_sandbox_env_passes_only_what_is_named(user, leaky):
    r, outcomes = pytest_as(user, leaky, "--sandbox", "--sandbox-env", "LEAKY_SECRET", "-k", "secret or token",
                            env=SECRETS)
    assert r.returncode == 1, no_traceback(r)
    assert {n: o[0] for n, o in outcomes.items()} == {"test_env_secret": "passed", "test_github_token": "failure"}
    assert "5 deselected" in r.stdout.decode()


def test_under_github_actions_the_output_can_issue_no_command(user, leaky):
    """The outer pytest prints what the tests captured: under GITHUB_ACTIONS all of its
    output sits between ::stop-commands::TOKEN and ::TOKEN::, with a token made outside."""
    r, outcomes = pytest_as(user, leaky, "--sandbox", "-k", "workflow_commands", env={"GITHUB_ACTIONS": "true"})
    lines = no_traceback(r).splitlines()
    assert outcomes["test_prints_workflow_commands"][0] == "failure"
    assert "::set-output name=result::forged" in lines and "::add-mask::hunter2" in lines
    token = lines[0][len("::stop-commands::"):]
    assert lines[0].startswith("::stop-commands::") and len(token) == 32 and lines[-1] == f"::{token}::"
    assert [line for line in lines if line.startswith("::")][1:-1] == ["::add-mask::hunter2",
                                                                       "::set-output name=result::forged"]


def test_exitfirst_stops_the_sandboxed_run(user, leaky):
    r, outcomes = pytest_as(user, leaky, "--sandbox", "-x", env=SECRETS)
    assert r.returncode == 1, no_traceback(r)
    assert list(outcomes.values())[0][0] == "failure" and len(outcomes) == 1, outcomes
    assert "stopping after 1 failures" in r.stdout.decode()


@pytest.fixture
def limits_project(user, workdir):
    return make_project(user, os.path.join(workdir, "limits"), "limits")


def test_scope_test_gives_each_test_its_marker_limits_and_verdict(user, limits_project):
    r, outcomes = pytest_as(user, limits_project, "--sandbox", "--sandbox-scope=test", "-ra")
    out = no_traceback(r)
    assert r.returncode == 1, out
    assert outcomes["test_spins"][0] == "failure"
    assert outcomes["test_spins"][1].startswith("TLE: CPU time limit exceeded"), outcomes["test_spins"]
    assert outcomes["test_hogs_memory"][1].startswith("MLE: memory limit exceeded"), outcomes["test_hogs_memory"]
    assert outcomes["test_fails"][0] == "failure" and "assert" in outcomes["test_fails"][1]
    assert outcomes["test_first"][0] == outcomes["test_last"][0] == "passed"
    # each test's own figures are JUnit properties
    props = outcomes["test_spins"][2]
    assert props["sandbox_status"] == "TLE" and float(props["sandbox_cpu_time_s"]) >= 1.0
    assert outcomes["test_last"][2]["sandbox_status"] == "OK"
    assert float(outcomes["test_last"][2]["sandbox_cpu_time_s"]) >= 0.05
    assert outcomes["test_exits_hard"][1] == "RE: exited with status 3"
    # a misspelt limit fails its own test, saying what and how to fix it
    assert outcomes["test_bad_marker"][0] == "error" and \
        "@pytest.mark.sandbox(memroy='1G'): --sandbox: limits.memroy: unknown key 'memroy'" in \
        outcomes["test_bad_marker"][1], outcomes["test_bad_marker"]
    assert "did you mean 'memory'" in outcomes["test_bad_marker"][1]
    assert outcomes["test_denied_call"][1].startswith("SYS: killed by the seccomp policy default: unshare"), \
        outcomes["test_denied_call"]
    assert "8 sandboxes (1 MLE, 3 OK, 2 RE, 1 SYS, 1 TLE)" in out, out


def test_scope_session_kill_fails_that_test_and_the_rest_continue(user, limits_project):
    r, outcomes = pytest_as(user, limits_project, "--sandbox", "--sandbox-limit", "cpu_time=2s", "-k",
                            "not hogs and not denied")
    out = no_traceback(r)
    assert r.returncode == 1, out
    assert outcomes["test_spins"][1].startswith("TLE: CPU time limit exceeded"), outcomes
    assert outcomes["test_spins"][2]["sandbox_status"] == "TLE"
    assert outcomes["test_first"][0] == outcomes["test_last"][0] == outcomes["test_bad_marker"][0] == "passed"
    assert outcomes["test_fails"][0] == "failure"
    assert outcomes["test_exits_hard"][1] == "RE: exited with status 3"
    # killed at test_spins, died at test_exits_hard, then a third sandbox ran test_last
    assert "3 sandboxes (1 OK, 1 RE, 1 TLE)" in out, out
    suite = ET.parse(os.path.join(os.path.dirname(limits_project), "junit.xml")).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["sandbox_statuses"] == "TLE RE OK" and props["sandbox_runs"] == "3"
    assert float(props["sandbox_cpu_time_s"]) >= 2.0 and int(props["sandbox_memory_peak_bytes"]) > 0


@pytest.mark.parametrize("args, message", [
    (["--sandbox-limit", "memroy=1G"], "did you mean 'memory'"),
    (["--sandbox-limit", "cpu_time"], "write KEY=VALUE"),
    (["--sandbox=no-such-profile"], "no-such-profile"),
    (["--sandbox-limit", "cpu_time=fast"], "cpu_time"),
])
def test_bad_options_say_what_and_run_nothing(user, limits_project, args, message):
    r, outcomes = pytest_as(user, limits_project, "--sandbox", *args)
    err = no_traceback(r)
    assert r.returncode == 4, err
    assert message in err and outcomes == {}


def test_project_ini_plugin_is_refused_and_the_workaround_keeps_it_inside(user, workdir):
    """`addopts = -p evilplugin` is imported by pytest before any plugin can act: the
    plugin refuses to go on; with the hardened command line the project's plugin runs
    only inside, where the inner pytest honours the ini."""
    project = make_project(user, os.path.join(workdir, "addopts"), "addopts", HOME=user.home)
    marker = os.path.join(user.home, "evilplugin-ran")
    r, outcomes = pytest_as(user, project, "--sandbox")
    err = no_traceback(r)
    assert r.returncode == 4 and "already ran outside the sandbox" in err and "evilplugin" in err, err
    os.unlink(marker)
    r, outcomes = pytest_as(user, project, "-p", "sandbox", "-o", "addopts=", "-o", "pythonpath=", "--sandbox",
                            python_flags=["-P"], env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert r.returncode == 0, no_traceback(r)
    assert outcomes == {"test_inside": ("passed", None, {})}
    assert not os.path.exists(marker)


def test_sandbox_run_fixture_for_autograders(user, workdir):
    project = make_project(user, os.path.join(workdir, "grader"), "grader")
    r, outcomes = pytest_as(user, project)
    assert r.returncode == 0, no_traceback(r)
    assert [o[0] for o in outcomes.values()] == ["passed"] * 3
    # under --sandbox it cannot nest, and says so
    r, outcomes = pytest_as(user, project, "--sandbox")
    assert r.returncode == 1 and [o[0] for o in outcomes.values()] == ["error"] * 3, no_traceback(r)
    assert all("a sandbox cannot start another one" in o[1] for o in outcomes.values())


def test_plugin_is_inactive_without_the_option(user, limits_project):
    """Registered through the entry point, but without --sandbox tests run as usual."""
    r, outcomes = pytest_as(user, limits_project, "-k", "first or fails or last")
    assert r.returncode == 1 and "sandbox ---" not in r.stdout.decode()
    assert {n: o[0] for n, o in outcomes.items()} == {"test_first": "passed", "test_fails": "failure",
                                                      "test_last": "passed"}


# pure Python, sdists that ship their tests, which need no network
THIRD_PARTY = [("six==1.17.0", "test_six.py"), ("toolz==1.2.0", "toolz/tests")]


@pytest.mark.parametrize("requirement, tests", THIRD_PARTY)
def test_third_party_suite_same_counts_with_and_without_sandbox(user, workdir, requirement, tests):
    """A real package's own suite (every test case, by module and name), fetched from PyPI at test time (nothing vendored; PyPI is
    the only network the CI machine has), gives the same counts inside as outside."""
    dl = os.path.join(workdir, "dl")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
                        "-d", dl, requirement], capture_output=True, timeout=180)
    assert r.returncode == 0, f"pip download {requirement} failed (PyPI unreachable?): {r.stderr.decode()}"
    (sdist,) = os.listdir(dl)
    os.chmod(os.path.join(dl, sdist), 0o644)
    assert user.run(["tar", "-xzf", os.path.join(dl, sdist), "-C", workdir]).returncode == 0   # as the user
    project = os.path.join(workdir, sdist[:-len(".tar.gz")])
    counts = {}
    for mode in ("plain", "sandbox"):
        r, outcomes = pytest_as(user, project, "-p", "no:cacheprovider", tests,
                                *(["--sandbox"] if mode == "sandbox" else []))
        assert r.returncode == 0, no_traceback(r)
        cases = ET.parse(os.path.join(workdir, "junit.xml")).iter("testcase")     # names repeat across modules
        counts[mode] = sorted((c.get("classname"), c.get("name"), [x.tag for x in c] or ["passed"]) for c in cases)
        if mode == "plain":            # the sandboxed run must not reuse the plain run's bytecode
            caches = [os.path.join(b, "__pycache__") for b, dirs, _ in os.walk(project) if "__pycache__" in dirs]
            for cache in caches:
                shutil.rmtree(cache)
            assert caches
    assert counts["plain"] == counts["sandbox"]
    assert len(counts["plain"]) > 150 and any(o == ["skipped"] for _, _, o in counts["plain"])
    assert not [b for b, dirs, _ in os.walk(project) if "__pycache__" in dirs]


def test_conftest_options_go_through_sandbox_arg_and_collect_only_lists(user, workdir):
    """The outer pytest loads no conftest.py, so an option it adds is given with --sandbox-arg."""
    project = make_project(user, os.path.join(workdir, "options"), "options")
    r, outcomes = pytest_as(user, project)
    assert r.returncode == 0 and outcomes["test_localhost_and_user_work_as_outside"][0] == "passed"
    r, outcomes = pytest_as(user, project, "--sandbox")
    assert r.returncode == 0 and outcomes["test_slow"][0] == "skipped", no_traceback(r)
    assert outcomes["test_localhost_and_user_work_as_outside"][0] == "passed"
    r, outcomes = pytest_as(user, project, "--sandbox", "--sandbox-arg=--runslow")
    assert r.returncode == 0 and outcomes["test_slow"][0] == "passed", no_traceback(r)
    # -s: what the test prints is shown (once: the inner terminal's own lines are not)
    r, outcomes = pytest_as(user, project, "--sandbox", "-s")
    out = no_traceback(r)
    assert r.returncode == 0 and "printed-by-the-test" in out and out.count("test session starts") == 1, out
    r, outcomes = pytest_as(user, project, "--sandbox")
    assert "printed-by-the-test" not in no_traceback(r)
    r, outcomes = pytest_as(user, project, "--sandbox", "--collect-only", "-q")
    out = no_traceback(r)
    assert r.returncode == 0 and "tests/test_opt.py::test_slow" in out and "1 sandbox (1 OK)" in out, out
    assert not [d for d in os.listdir(tempfile.gettempdir()) if d.startswith("sandbox-ci-scratch-") and
                os.stat(os.path.join(tempfile.gettempdir(), d)).st_uid == user.uid]      # its scratch is gone


def test_venv_inside_the_project_is_bound_not_copied_and_warnings_come_back(user, workdir):
    """A project with its own .venv (here one that extends this venv): the interpreter runs
    from it inside, the copy leaves it out, and a warning raised inside reaches the summary."""
    project = os.path.join(workdir, "venvproj")
    os.makedirs(os.path.join(project, "tests"))
    with open(os.path.join(project, "tests", "test_v.py"), "w") as f:
        f.write("import sys, warnings\n\n\ndef test_a():\n"
                "    warnings.warn('careful now', DeprecationWarning)\n"
                f"    assert sys.prefix == {os.path.join(project, '.venv')!r}\n")
    if os.geteuid() == 0:
        for base, dirs, files in os.walk(workdir):
            for name in dirs + files + ["."]:
                os.lchown(os.path.join(base, name), user.uid, user.gid)
    base_python = os.path.realpath(sys.executable)
    assert user.run([base_python, "-m", "venv", "--without-pip", os.path.join(project, ".venv")]).returncode == 0
    site = os.path.join(project, ".venv", "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                        "site-packages")
    import sysconfig
    with open(os.path.join(site, "outer.pth"), "w") as f:
        f.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    # a plugin installed in that venv, which imports from it later: the venv is the outer
    # pytest's own environment, not the project's code, so neither is refused nor cut off
    with open(os.path.join(site, "venvplugin.py"), "w") as f:
        f.write("def pytest_configure(config):\n    import venvhelper\n")
    with open(os.path.join(site, "venvhelper.py"), "w") as f:
        f.write("")
    venv_python = os.path.join(project, ".venv", "bin", "python")
    r = user.run([venv_python, "-m", "pytest", "-p", "venvplugin", "--sandbox", "-W", "default"], cwd=project,
                 timeout=240)
    out = no_traceback(r)
    assert r.returncode == 0, out
    assert "1 passed, 1 warning" in out and "careful now" in out
    assert sorted(os.listdir(project)) == [".venv", "tests"]


def test_a_tree_larger_than_its_tmpfs_is_a_clear_error(user, limits_project):
    with open(os.path.join(limits_project, "big.bin"), "wb") as f:
        f.write(b"x" * (1 << 20))
    r, outcomes = pytest_as(user, limits_project, "--sandbox", "--sandbox-tree-size=256K")
    err = no_traceback(r)
    assert r.returncode == 4 and outcomes == {}, err
    assert "cannot copy the project's tree into the sandbox" in err and "raise --sandbox-tree-size" in err


def test_garbled_reports_neither_crash_the_outer_pytest_nor_pass(user, workdir):
    project = make_project(user, os.path.join(workdir, "garbled"), "garbled")
    r, outcomes = pytest_as(user, project, "--sandbox")
    out = no_traceback(r)
    assert r.returncode == 1, out
    assert outcomes["test_fine"][0] == "passed" and outcomes["test_garbles"][0] == "passed"
    assert "sent 6 message(s) that could not be replayed" in out, out


def test_project_installed_editable_is_imported_from_the_copy(user, workdir):
    """`pip install -e .` (a .pth naming PROJECT/src) into the project's venv: site.py skips
    that path inside at start-up (the tree's copy is not there yet), so the inner pytest adds
    the .pth paths again once it is; the package then comes from the throw-away copy."""
    project = os.path.join(workdir, "edproj")
    for path, text in {"pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\n'
                                         'build-backend = "setuptools.build_meta"\n'
                                         '[project]\nname = "edpkg"\nversion = "0.1"\n'
                                         '[tool.setuptools.packages.find]\nwhere = ["src"]\n',
                       "src/edpkg/__init__.py": "def answer():\n    return 42\n",
                       "tests/test_ed.py": "import os\n\nimport edpkg\n\n\ndef test_answer():\n"
                                           "    assert edpkg.answer() == 42\n"
                                           f"    assert edpkg.__file__ == {project + '/src/edpkg/__init__.py'!r}\n"
                                           "    open(os.path.join(os.path.dirname(edpkg.__file__), 'w'), 'w')\n"}.items():
        os.makedirs(os.path.dirname(os.path.join(project, path)), exist_ok=True)
        with open(os.path.join(project, path), "w") as f:
            f.write(text)
    if os.geteuid() == 0:
        for base, dirs, files in os.walk(workdir):
            for name in dirs + files + ["."]:
                os.lchown(os.path.join(base, name), user.uid, user.gid)
    venv = os.path.join(project, ".venv")
    assert user.run([os.path.realpath(sys.executable), "-m", "venv", "--without-pip", venv]).returncode == 0
    import sysconfig
    site = os.path.join(venv, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    with open(os.path.join(site, "outer.pth"), "w") as f:       # pytest and this package from this venv
        f.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    r = user.run([sys.executable, "-m", "pip", "--python", os.path.join(venv, "bin", "python"), "install", "-q",
                  "--disable-pip-version-check", "-e", project], env={"HOME": workdir}, timeout=300)
    assert r.returncode == 0, f"pip install -e failed (PyPI unreachable?): {r.stderr.decode()}"
    r = user.run([os.path.join(venv, "bin", "python"), "-m", "pytest", "--sandbox", "-p", "no:cacheprovider"],
                 cwd=project, timeout=240)
    assert r.returncode == 0, no_traceback(r)
    assert sorted(os.listdir(os.path.join(project, "src", "edpkg"))) == ["__init__.py"]
