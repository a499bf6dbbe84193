"""Bad profiles get a clear error (file, key path, fix), exit 125, and nothing runs."""
import os
import sys

import pytest

from conftest import no_traceback

CASES = {
    "unknown_key": ("limits: {memroy: 1G}\n", ["bad.yaml: limits.memroy", "unknown key 'memroy'", "did you mean 'memory'?"]),
    "unknown_top_key": ("netwrok: none\n", ["bad.yaml: netwrok", "unknown key 'netwrok'", "did you mean 'network'?"]),
    "wrong_type_string": ("hostname: [a, b]\n", ["bad.yaml: hostname", "expected a string, got list"]),
    "wrong_type_count": ("limits: {processes: many}\n", ["bad.yaml: limits.processes", "expected a whole number"]),
    "wrong_type_mapping": ("limits: 5\n", ["bad.yaml: limits", "expected a mapping"]),
    "bad_size": ("limits: {memory: 12XB}\n", ["bad.yaml: limits.memory", "'12XB' is not a size", "64MiB"]),
    "bad_duration": ("limits: {cpu_time: soon}\n", ["bad.yaml: limits.cpu_time", "'soon' is not a duration", "500ms"]),
    "missing_extends_name": ("extends: pyton3\n", ["bad.yaml: extends", "no built-in profile named 'pyton3'", "did you mean 'python3'?"]),
    "missing_extends_path": ("extends: ./nowhere.yaml\n", ["bad.yaml: extends", "nowhere.yaml does not exist"]),
    "relative_cwd": ("cwd: box\n", ["bad.yaml: cwd", "'box' is a relative path", "/box"]),
    "relative_bind_src": ("binds: [{src: data, dst: /data}]\n", ["bad.yaml: binds[0].src", "relative path"]),
    "relative_tmpfs": ("tmpfs: {scratch: 1M}\n", ["bad.yaml: tmpfs.scratch", "relative path"]),
    "bind_over_root": ("binds: ['/usr:/']\n", ["bad.yaml: binds[0].dst", "cannot mount over /"]),
    "bind_source_missing": ("binds: [/nonexistent/sandbox-test-dir]\n", ["binds[0]", "bind source /nonexistent/sandbox-test-dir does not exist", "optional: true"]),
    "bind_into_proc": ("binds: ['/usr/share:/proc/x']\n", ["binds[0]", "cannot bind onto /proc/x"]),
    "mode_unquoted": ("tmpfs: {/scratch: {size: 1M, mode: 0755}}\n", ["bad.yaml: tmpfs./scratch.mode", "quote it"]),
    "bad_network": ("network: wifi\n", ["bad.yaml: network", "'wifi' is not one of none, host"]),
    "bad_uid": ("user: {uid: -5}\n", ["bad.yaml: user.uid", "not a user/group id"]),
    "yaml_syntax": ("limits:\n  memory: [1M\n", ["bad.yaml:4:", "YAML syntax error", "at line 3, column 11"]),
    "not_a_mapping": ("- a\n- b\n", ["bad.yaml", "must be a mapping"]),
}


def _profile(sbx, body, extends="shell"):
    text = (f"extends: {extends}\n" if extends and not body.startswith(("extends", "-")) else "") + body
    return sbx.script("bad.yaml", text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_profile_is_refused_with_file_key_and_fix(sbx, case):
    body, expected = CASES[case]
    path = _profile(sbx, body)
    out = os.path.join(sbx.box, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    r = sbx("run", "--profile", path, "--bind", f"{out}:/out:rw", "--", "touch", "/out/marker")
    text = no_traceback(r)
    assert r.returncode == 125, text
    for piece in expected:
        assert piece in text, (piece, text)
    assert "fix:" in text
    assert not os.path.exists(os.path.join(out, "marker")), "the program ran despite a bad profile"
    # `sandbox check` reports the same error
    c = sbx("check", path)
    assert c.returncode == 125 and expected[0].encode() in c.stderr, c.stderr


def test_extends_cycle(sbx):
    sbx.script("a.yaml", "extends: ./b.yaml\n")
    sbx.script("b.yaml", "extends: ./a.yaml\n")
    r = sbx("run", "--profile", os.path.join(sbx.box, "a.yaml"), "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125
    assert "extends forms a cycle: a.yaml -> b.yaml -> a.yaml" in text and "fix:" in text


def test_interpreter_missing_on_host(sbx):
    path = sbx.script("bad.yaml", "extends: python3\nscript: {interpreter: [python2.7-not-here, -u]}\n")
    script = sbx.script("s.py", "print(1)\n")
    r = sbx("run", "--profile", path, script)
    text = no_traceback(r)
    assert r.returncode == 125
    assert "bad.yaml: script.interpreter" in text
    assert "interpreter python2.7-not-here is not present on this host" in text
    assert "apt install" in text
    c = sbx("check", path)
    assert c.returncode == 125 and b"python2.7-not-here" in c.stderr


def test_errors_point_at_the_file_that_set_the_key(sbx):
    """A bind source that is missing is reported against the parent file that set it."""
    sbx.script("parent.yaml", "extends: shell\nbinds: [/nonexistent/from-parent]\n")
    child = sbx.script("child.yaml", "extends: ./parent.yaml\nhostname: child\n")
    r = sbx("run", "--profile", child, "--", "true")
    assert r.returncode == 125
    assert b"parent.yaml: binds[0]" in r.stderr


def test_extends_merges_mappings_and_replaces_lists(sbx):
    sbx.script("parent.yaml", "extends: shell\nenv: {A: '1', B: '2'}\nlimits: {cpu_time: 3s}\n")
    child = sbx.script("child.yaml", "extends: ./parent.yaml\nenv: {B: null, C: '3'}\nlimits: {memory: 32M}\n")
    r = sbx("run", "--profile", child, "--explain", "--", "true")
    text = r.stdout.decode()
    assert "A=1" in text and "C=3" in text and "B=2" not in text
    assert "cpu_time: 3s" in text and "memory: 32M" in text


def test_edited_profile_is_reloaded(sbx):
    path = sbx.script("p.yaml", "extends: shell\nhostname: first\n")
    assert sbx("run", "--profile", path, "--", "hostname").stdout == b"first\n"
    st = os.stat(path)
    sbx.script("p.yaml", "extends: shell\nhostname: second\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sbx("run", "--profile", path, "--", "hostname").stdout == b"second\n"


def test_a_cached_profile_does_not_import_yaml(user, sbx):
    """The hot path: once a profile is cached, a run never imports PyYAML."""
    code = ("import sys, sandbox.runner as r; r.prepare('py311', ['true']); "
            "print('yaml' in sys.modules)")
    user.run([sys.executable, "-c", code])              # warms the cache
    r = user.run([sys.executable, "-c", code])
    assert r.stdout == b"False\n", r.stderr
