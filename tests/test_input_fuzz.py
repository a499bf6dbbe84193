"""Property tests (hypothesis) over the profile schema and the CLI's option values: every
input gets OK or a clear error (a SandboxError with where and fix, exit 125), never an
internal error, within a bound; and what `check` accepts, a real run accepts too.

Inputs: a built-in profile with one key (any key of the schema, at any depth) replaced by
a hostile value -- wrong types, extremes, Unicode, NUL, surrogates -- dumped to YAML, then
perhaps mutated as text: an alias bomb, a duplicate key, a raw control character.
"""
import os
import time

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from sandbox import cli, profile as profile_mod, schema, yamlload
from sandbox.errors import SandboxError

BUILTINS = {name: yamlload.load(os.path.join(profile_mod.builtin_dir(), name + ".yaml"))
            for name in ("native", "shell", "c-run", "py311", "py311-compile")}


def _paths(schema, prefix=()):
    for key, check in schema.items():
        yield prefix + (key,)
        if isinstance(check, dict):
            yield from _paths(check, prefix + (key,))


KEY_PATHS = sorted(_paths(schema.SCHEMA)) + [("tmpfs", "/tmp"), ("tmpfs", "/tmp", "size"),
                                                  ("tmpfs", "/tmp", "mode"), ("tmpfs", "/tmp", "inodes"),
                                                  ("env", "PATH"), ("env", "X"), ("nonsense",)]
NASTY = ["", " ", "unlimited", "none", "inf", "²", "１２M", "٣", "12", "0", "-1", "3", "1e999", "600h", "500h",
         "8388608T", "4194304T", "9223372036854775808", ".inf", "0x" + "f" * 80, "0-3,5", "3-1", "junk",
         "/", "/tmp", "/usr", "/proc/x", "/box", "box", "..", "/sys/fs/cgroup/x", "/sys/fs/cgroup/../x", "a/b",
         "caller", "host", "kernel", "fuse", "auto", "default", "judge-strict", "0755", "1777", "7777", "99999",
         "h" * 65, "h" * 64, "a\0b", "\ud800", "\udcff", "\x07", "\ufffe", "é", "2001-13-45", "64M", "1.5s",
         "/usr:/mnt:rw", "x" * 5000]
# numbers as people (and other scripts) write them: '٣', '²', '１２M', '12 k', '1.5.2s'
NUMBERS = st.builds(lambda digits, dot, unit: digits + dot + unit,
                    st.text(alphabet=st.characters(whitelist_categories=("Nd", "No")), min_size=1, max_size=4)
                    | st.text(alphabet="0123456789", min_size=1, max_size=25),
                    st.sampled_from(["", ".", ".5", ".."]), st.sampled_from(["", "K", "M", "T", "s", "ms", "h", " k"]))
SCALARS = st.one_of(NUMBERS, st.sampled_from(NASTY), st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.sampled_from([0, 1, 3, 4, 16, 2**31, 2**32, 2**62, 2**63, 2**64, 4194303, 4194304]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.sampled_from(NASTY))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["src", "dst", "rw", "optional", "size", "mode", "policy",
                                                         "uid", "memory", "x"]) | st.text(max_size=8),
                                        inner, max_size=4), max_leaves=12)


def _bomb(width, depth):
    lines = [f"  - &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, depth):
        lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@st.composite
def profiles(draw):
    base = draw(st.sampled_from(sorted(BUILTINS)))
    data = yaml.safe_load(yaml.safe_dump(BUILTINS[base]))          # a deep copy
    path = draw(st.sampled_from(KEY_PATHS))
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = draw(VALUES)
    text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()))
    mutation = draw(st.sampled_from(["none", "none", "bomb", "duplicate", "raw_char", "deep", "long_number"]))
    if mutation == "bomb":
        key = draw(st.sampled_from(["binds", "env", "description", "nonsense"]))
        data.pop(key, None)
        text = yaml.safe_dump(data) + f"{key}:\n" + _bomb(draw(st.integers(1, 9)), draw(st.integers(1, 7)))
    elif mutation == "duplicate":
        text += f"{draw(st.sampled_from(sorted(data)))}: {draw(st.sampled_from(['x', '1', '[]']))}\n"
    elif mutation == "raw_char":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\0", "\x07", "\x1b", "\ufffe", "\x85", "\t", "\ud800"])) + text[at:]
    elif mutation == "deep":
        text += "nonsense: " + "[" * draw(st.integers(1, 300)) + "\n"
    elif mutation == "long_number":
        text += "limits: {processes: " + draw(st.sampled_from(["9" * 4301, "0x" + "f" * 4000, "1:" * 500 + "1"])) + "}\n"
    return text


def _clear(e):
    """A clear error: it says where, how to fix, exits 125, and is short whatever the input."""
    assert isinstance(e, SandboxError), repr(e)
    assert e.exit_code == 125 and e.where and e.fix, str(e)
    assert len(str(e)) < 1500, str(e)[:300]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(d / "cache")        # the profile cache of every example goes here
    yield d
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


_counter = iter(range(10**9))


def _write(workdir, text):
    path = workdir / f"p{next(_counter)}.yaml"              # a new name: the cache is keyed by path and mtime
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return str(path)


def _check(path):
    """`sandbox check PATH` in-process: None if OK, else the error."""
    try:
        cli.cmd_check([path])
        return None
    except SandboxError as e:
        return e


def _cpu(fn, *args):
    t = time.process_time()
    result = fn(*args)
    return result, time.process_time() - t


@pytest.fixture(scope="module")
def baseline(workdir):
    """CPU time of checking an unchanged built-in profile: the unit of the time bound."""
    spent = []
    for name in BUILTINS:
        for _ in range(2):
            error, cpu = _cpu(_check, _write(workdir, yaml.safe_dump(BUILTINS[name])))
            assert error is None or "image" in error.what, error
            spent.append(cpu)
    return max(spent)


# what the issue 16 campaign found, kept as explicit examples
CAMPAIGN = ["limits: {processes: '²'}", "limits: {memory: '１２M'}", "limits: {cpu_time: .inf}", "limits: {cpus: true}",
            "limits: {memory: 9223372036854775808}", "tmpfs: {/tmp: unlimited}", "shm_size: unlimited",
            "rootfs: {size: null}", "hostname: " + "h" * 65, "limits: {open_files: 3}", "hostname: 2001-13-45",
            "env: {X: 0x" + "f" * 4000 + "}", "hostname: !!int ''", 'hostname: "\\U00110000"', "binds:\n" + _bomb(9, 9)]


def _campaign(test):
    for line in CAMPAIGN:
        test = example(text=f"extends: shell\n{line}\n")(test)
    return test


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@_campaign
@given(text=profiles())
def test_check_gives_ok_or_a_clear_error_in_bounded_time(workdir, baseline, capsys, text):
    assert len(text.encode("utf-8", "surrogatepass")) < 64 * 1024      # the bound on input size
    error, cpu = _cpu(_check, _write(workdir, text))
    capsys.readouterr()
    if error is not None:
        _clear(error)
    assert cpu < 50 * baseline + 0.05, (cpu, baseline)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(text=profiles())
def test_a_real_run_refuses_nothing_check_accepted(sbx, text):
    """A small sample through `sandbox check` and `sandbox run` as the test user."""
    path = sbx.script(f"p{next(_counter)}.yaml", text)
    c = sbx("check", path)
    r = sbx("run", "--profile", path, "--", "/bin/true")
    for p in (c, r):
        assert b"internal error" not in p.stderr and b"Traceback" not in p.stderr, p.stderr
    if c.returncode == 0:
        assert r.returncode == 0, r.stderr
    else:
        assert c.returncode == 125 and b"fix:" in c.stderr, c.stderr


OPTION_VALUES = {
    "--time": st.one_of(NUMBERS, st.sampled_from(NASTY), st.text(max_size=12), st.floats().map(str)),
    "--wall-time": st.one_of(NUMBERS, st.sampled_from(NASTY), st.text(max_size=12)),
    "--memory": st.one_of(NUMBERS, st.sampled_from(NASTY), st.text(max_size=12), st.integers(-1, 2**70).map(str)),
    "--processes": st.one_of(NUMBERS, st.sampled_from(NASTY), st.text(max_size=8), st.integers(-1, 2**40).map(str)),
    "--open-files": st.one_of(NUMBERS, st.sampled_from(NASTY), st.integers(-1, 2**40).map(str)),
    "--bind": st.one_of(st.sampled_from(NASTY + ["/usr:/x", "/usr:/x:rw", "/usr::ro", ":", "/nonexistent",
                                                 "/usr:/proc/x", "/usr:/", "a:b:c:d"]), st.text(max_size=20)),
    "--env": st.one_of(st.sampled_from(["A=1", "=1", "A", "A=", "A=\0", "\0=1", "PATH=", "é=é"]), st.text(max_size=12)),
    "--cwd": st.one_of(st.sampled_from(NASTY), st.text(max_size=20)),
}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(options=st.lists(st.sampled_from(sorted(OPTION_VALUES)).flatmap(
    lambda o: st.tuples(st.just(o), OPTION_VALUES[o])), min_size=1, max_size=3))
@example(options=[("--processes", "²")])
@example(options=[("--memory", "１２M")])
@example(options=[("--time", "1e999")])
@example(options=[("--wall-time", "600h")])
@example(options=[("--memory", "8388608T")])
@example(options=[("--memory", "1e999")])
@example(options=[("--bind", "\udcff")])           # a non-UTF-8 path in the error message
def test_cli_option_values_give_ok_or_a_clear_error(workdir, capsys, options):
    argv = ["run", "--profile", "shell", "--explain"]
    for option, value in options:
        argv += [option, value]
    rc = cli.main(argv + ["--", "true"])
    out, err = capsys.readouterr()
    assert "internal error" not in err, err
    if rc != 0:
        assert rc == 125 and err.startswith("sandbox: error: ") and "fix:" in err and len(err) < 1500, err


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(limits=st.dictionaries(st.sampled_from(sorted(schema.SCHEMA["limits"])),
                              SCALARS | st.integers(-10**400, 10**400) | st.floats(), min_size=1, max_size=3))
@example(limits={"cpus": 10**400})
@example(limits={"open_files": "9" * 30})
def test_api_limit_values_give_a_plan_or_a_clear_error(workdir, limits):
    """sandbox.prepare(limits=...) takes Python values a YAML file cannot hold (10**400)."""
    from sandbox import runner
    try:
        runner.prepare("shell", ["true"], limits=limits).encode("-")
    except SandboxError as e:
        _clear(e)
