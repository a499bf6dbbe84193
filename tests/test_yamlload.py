"""Every way a YAML file can fail to load is one clear error naming the file and line,
found fast and bounded in size (sandbox/yamlload.py), in-process."""
import time

import pytest

from sandbox import cli, yamlload
from sandbox.errors import ProfileError

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))     # `check` caches what it loads


BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '0'] * 9)}]\n" for i in range(9))

CASES = {   # name: (text, line, words in the message)
    "alias_bomb": ("description: x\n" + BOMB, 6, ["aliases repeat more than 10000 nodes"]),
    "recursive_alias": ("a: &a [1, *a]\n", 1, ["inside the collection it names"]),
    "control_char": ("hostname: a\x07b\n", 1, ["U+0007 is not allowed"]),
    "nul": ("description: x\nhostname: a\x00b\n", 2, ["U+0000 is not allowed"]),
    "ufffe": ("hostname: a\ufffeb\n", 1, ["U+FFFE is not allowed"]),
    "bad_timestamp_tag": ("hostname: !!timestamp 2001-13-45\n", 1, ["is not a valid timestamp"]),
    "empty_int_tag": ("limits: {processes: !!int ''}\n", 1, ["is not a valid int"]),
    "bad_float_tag": ("limits: {cpus: !!float z}\n", 1, ["is not a valid float"]),
    "code_point_too_big": ('hostname: "\\U00110000"\n', 1, ["cannot read the YAML", "chr()"]),
    "4301_digits": ("limits: {processes: " + "9" * 4301 + "}\n", 1, ["a number of 4301 characters"]),
    "4000_hex_digits": ("limits: {processes: 0x" + "f" * 4000 + "}\n", 1, ["a number of 4002 characters"]),
    "base60_int": ("limits: {processes: " + ":".join(["1"] + ["30"] * 3000) + "}\n", 1, ["characters"]),
    "500_nested": ("binds: " + "[" * 500 + "]" * 500 + "\n", 1, ["nest more than 64 deep"]),
    "duplicate_key": ("hostname: a\nnetwork: none\nhostname: b\n", 3, ["duplicate key 'hostname'", "first at line 1"]),
    "duplicate_nested_key": ("limits:\n  memory: 1M\n  memory: 2M\n", 3, ["duplicate key 'memory'", "line 2"]),
    "python_tag": ("hostname: !!python/object/apply:os.system [true]\n", 1, ["could not determine a constructor"]),
    "two_documents": ("hostname: a\n---\nhostname: b\n", 2, ["expected a single document"]),
    "not_utf8": (b"description: caf\xe9\n", 1, ["byte 0xe9 is not UTF-8"]),
    "syntax": ("limits:\n  memory: [1M\n", 3, ["YAML syntax error", "at line 2, column 11"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_yaml_failure_is_a_clear_error_with_file_and_line(tmp_path, case):
    text, line, words = CASES[case]
    path = tmp_path / "p.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    with pytest.raises(ProfileError) as e:
        yamlload.load(str(path))
    assert e.value.where in (f"{path}:{line}", *(f"{path}:{line}:{c}" for c in range(1, 80))), e.value.where
    for w in words:
        assert w in e.value.what, e.value.what
    assert e.value.fix and len(str(e.value)) < 500


def test_alias_bomb_is_refused_in_time_proportional_to_its_size(tmp_path):
    """The 790-byte class of issue 16: refusing it costs about what parsing a small file does."""
    small, bomb = tmp_path / "small.yaml", tmp_path / "bomb.yaml"
    small.write_text("description: x\n" + "".join(f"k{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8]\n" for i in range(9)))
    bomb.write_text("description: x\n" + BOMB)

    def cpu(path, expect_error):
        t = time.process_time()
        for _ in range(5):
            try:
                yamlload.load(str(path))
                assert not expect_error
            except ProfileError:
                assert expect_error
        return time.process_time() - t
    assert cpu(bomb, True) < 5 * cpu(small, False) + 0.05


def test_aliases_within_the_bound_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a: &base {x: 1, y: 2}\nb: {<<: *base, y: 3}\nc: [*base, *base]\n")
    assert yamlload.load(str(path)) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3},
                                        "c": [{"x": 1, "y": 2}, {"x": 1, "y": 2}]}


def test_implicit_timestamps_are_strings(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("hostname: 2001-12-14\nother: 2001-13-45\n")
    assert yamlload.load(str(path)) == {"hostname": "2001-12-14", "other": "2001-13-45"}


def test_oversized_profile_is_refused_before_it_is_read(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    with open(path, "w") as f:
        f.write("extends: shell\nenv:\n")
        f.write("".join(f"  V{i}: '{'x' * 60}'\n" for i in range(yamlload.MAX_FILE_BYTES // 70 + 10)))
    small = tmp_path / "small.yaml"
    small.write_text("extends: shell\nenv:\n" + "".join(f"  V{i}: '{'x' * 60}'\n" for i in range(150)))
    assert cli.main(["check", str(small)]) == 0      # imports and caches warm (without .pyc files they cost most)
    capsys.readouterr()
    t = time.process_time()
    assert cli.main(["check", str(path)]) == 125
    spent = time.process_time() - t
    err = capsys.readouterr().err
    assert f"big.yaml: the profile is {path.stat().st_size} bytes; at most 1048576 are read" in err and "fix:" in err
    # not parsed: refusing it costs less than checking a profile a hundredth of its size
    fresh = tmp_path / "fresh.yaml"                          # not in the cache: parsed, as the big one would be
    fresh.write_text(small.read_text())
    t = time.process_time()
    assert cli.main(["check", str(fresh)]) == 0
    assert spent < time.process_time() - t


def test_a_seccomp_policy_gets_the_same_loader(tmp_path, capsys):
    """Policies are read by the same loader: a duplicate key in `when:` is refused with both lines."""
    (tmp_path / "pol.yaml").write_text("extends: default\nrules:\n  - syscall: socket\n    action: kill\n"
                                       "    when:\n      arg0: AF_INET\n      arg0: AF_INET6\n")
    (tmp_path / "p.yaml").write_text("extends: shell\nseccomp: ./pol.yaml\n")
    assert cli.main(["check", str(tmp_path / "p.yaml")]) == 125
    err = capsys.readouterr().err
    assert f"{tmp_path / 'pol.yaml'}:7:" in err and "duplicate key 'arg0' (first at line 6" in err, err
