"""Profile values and CLI options out of range, of the wrong type or not plain ASCII get a clear
error at `sandbox check` / option parsing time, never an internal error or a failure at run time.
In-process (cli.main), except where a real run must show that what check accepts runs."""
import os
import sys

import pytest

from conftest import SANDBOX
from sandbox import cli, launch
from sandbox.errors import shorten


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _check(tmp_path, capsys, body, name="p.yaml"):
    path = tmp_path / name
    path.write_text("extends: shell\n" + body)
    rc = cli.main(["check", str(path)])
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err, err
    return rc, out + err


PROFILE_CASES = {   # issue 16 items 1, 6, 7, 9, 10, 11: (body, where, words)
    "cpu_time_inf": ("limits: {cpu_time: .inf}\n", "limits.cpu_time", "largest duration accepted, 500h"),
    "wall_time_huge": ("limits: {wall_time: 1.0e+30}\n", "limits.wall_time", "500h"),
    "memory_2_63": ("limits: {memory: 9223372036854775808}\n", "limits.memory", "4194304T"),
    "memory_T_overflow": ("limits: {memory: 8388608T}\n", "limits.memory", "4194304T"),
    "tmpfs_unlimited": ("tmpfs: {/tmp: unlimited}\n", "tmpfs./tmp.size", "a tmpfs needs a size"),
    "tmpfs_zero": ("tmpfs: {/tmp: 0}\n", "tmpfs./tmp.size", "a tmpfs needs a size"),
    "shm_unlimited": ("shm_size: unlimited\n", "shm_size", "a tmpfs needs a size"),
    "rootfs_size_null": ("rootfs: {size: null}\n", "rootfs.size", "a tmpfs needs a size"),
    "hostname_65": ("hostname: " + "h" * 65 + "\n", "hostname", "longer than 64 bytes"),
    "hostname_surrogate": ('hostname: "\\ud800"\n', "hostname", "lone surrogate"),
    "hostname_control": ('hostname: "a\\tb"\n', "hostname", "control character"),
    "open_files_3": ("limits: {open_files: 3}\n", "limits.open_files", "below the minimum 4"),
    "processes_superscript": ("limits: {processes: '²'}\n", "limits.processes", "expected a whole number"),
    "processes_above_pid_max": ("limits: {processes: 4194304}\n", "limits.processes", "above the maximum 4194303"),
    "size_fullwidth": ("limits: {memory: '１２M'}\n", "limits.memory", "is not a size"),
    "duration_arabic_indic": ("limits: {cpu_time: '٣'}\n", "limits.cpu_time", "is not a duration"),
    "mode_arabic_indic": ("tmpfs: {/t: {size: 1M, mode: '٧٥٥'}}\n", "tmpfs./t.mode", "not an octal mode"),
    "cpus_true": ("limits: {cpus: true}\n", "limits.cpus", "not a number of CPUs"),
    "cpus_inf": ("limits: {cpus: .inf}\n", "limits.cpus", "not a number of CPUs"),
    "inodes_huge": ("tmpfs: {/t: {size: 1M, inodes: 18014398509481984}}\n", "tmpfs./t.inodes", "maximum"),
    "cpuset_junk": ("cpuset: junk\n", "cpuset", "not a list of CPUs"),
    "cpuset_backwards": ("cpuset: 3-1\n", "cpuset", "not a list of CPUs"),
    "cgroup_parent_outside": ("cgroup_parent: /etc\n", "cgroup_parent", "not a cgroup directory"),
    "cgroup_parent_dotdot": ("cgroup_parent: /sys/fs/cgroup/../../etc\n", "cgroup_parent", "not a cgroup directory"),
    "nul_in_bind": ('binds: ["/usr\\0/x"]\n', "binds[0].src", "NUL"),
    "nul_in_image": ('rootfs: {image: "x\\0y"}\n', "rootfs.image", "NUL"),
    "nul_in_cgroup_parent": ('cgroup_parent: "/sys/fs/cgroup/a\\0"\n', "cgroup_parent", "NUL"),
    "path_too_long": ("cwd: /" + "a" * 300 + "\n", "cwd", "longer than the kernel takes"),
    "huge_string_in_message": ("network: '" + "x" * 100000 + "'\n", "network", "…"),
    "binary_tag": ("description: !!binary aGk=\n", "description", "expected a string, got bytes"),
    "set_tag": ("hostname: !!set {a}\n", "hostname", "expected a string, got set"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_bad_value_is_refused_by_check(tmp_path, capsys, case):
    body, where, words = PROFILE_CASES[case]
    rc, text = _check(tmp_path, capsys, body)
    assert rc == 125, text
    assert f"p.yaml: {where}:" in text and words in text and "fix:" in text, text
    assert len(text) < 1000


def test_many_binds_are_refused_by_check_not_by_the_launcher(tmp_path, capsys):
    """launcher.c holds at most MAX_SLOTS sources; 300 binds failed only at run time."""
    body = "binds: [" + ", ".join(f"{{src: /usr, dst: /b{i}}}" for i in range(launch.MAX_SLOTS + 1)) + "]\n"
    rc, text = _check(tmp_path, capsys, body)
    assert rc == 125 and "are more than the 256 the sandbox can hold open" in text, text


def test_too_many_plan_parts_are_refused_by_check(tmp_path, capsys):
    body = "env:\n" + "".join(f"  V{i}: x\n" for i in range(launch.MAX_TOKENS))
    rc, text = _check(tmp_path, capsys, body)
    assert rc == 125 and "more than the 65536 parts the launcher reads" in text, text


def test_a_limit_above_the_callers_hard_limit_is_refused_by_check(tmp_path, capsys):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")      # pragma: no cover (Linux caps it at nr_open)
    rc, text = _check(tmp_path, capsys, f"limits: {{open_files: {hard + 1}}}\n")
    assert rc == 125 and "p.yaml: limits.open_files" in text and f"own hard limit {hard}" in text, text


def test_values_at_the_documented_bounds_are_accepted(tmp_path, capsys):
    rc, text = _check(tmp_path, capsys, "limits: {cpu_time: 500h, wall_time: 500h, memory: 4194304T, "
                                        "open_files: 4, processes: 16, cpus: 0.01}\n"
                                        "hostname: " + "h" * 64 + "\ncpuset: '0-3,5'\n"
                                        "cgroup_parent: judge.slice/x\ntmpfs: {/t: {size: 4K, inodes: 4294967295}}\n")
    assert rc == 0, text


def test_what_check_accepts_at_the_bounds_also_runs(sbx):
    """The minimum open_files and a 64-byte hostname: accepted by check, and a real run is OK."""
    path = sbx.script("p.yaml", "extends: shell\nhostname: " + "h" * 64 + "\nlimits: {open_files: 4, "
                      "wall_time: 500h, memory: 4194304T}\n")
    assert sbx("check", path).returncode == 0
    r = sbx("run", "--profile", path, "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    r = sbx("run", "--profile", path, "--open-files", "3", "--", "/bin/true")
    assert r.returncode == 125 and b"--open-files: 3 is below the minimum 4" in r.stderr


OPTION_CASES = {   # option, value, words
    "time_1e999": ("--time", "1e999", "is not a duration"),
    "wall_600h": ("--wall-time", "600h", "500h"),
    "memory_1e999": ("--memory", "1e999", "is not a size"),
    "memory_T_overflow": ("--memory", "8388608T", "4194304T"),
    "processes_superscript": ("--processes", "²", "expected a whole number"),
    "memory_fullwidth": ("--memory", "１２M", "is not a size"),
    "open_files_3": ("--open-files", "3", "below the minimum 4"),
    "keep_changes_empty": ("--keep-changes", "", "needs a path"),
    "report_empty": ("--report", "", "needs a path"),
    "env_nul": ("--env", "A\0=1", "NUL"),
    "bind_nul": ("--bind", "/usr\0", "NUL"),
    "cwd_relative": ("--cwd", "box", "relative path"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_value_is_a_clear_error(capsys, case):
    option, value, words = OPTION_CASES[case]
    assert cli.main(["run", "--profile", "shell", "--explain", option, value, "--", "true"]) == 125
    err = capsys.readouterr().err
    assert f"sandbox: error: {option}" in err and words in err and "fix:" in err, err


def test_keep_changes_naming_a_file_is_a_clear_error(tmp_path):
    from sandbox import rootfs
    from sandbox.errors import UsageError
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError) as e:
        rootfs._check_keep(str(f))
    assert e.value.where == "--keep-changes" and "Not a directory" in e.value.what


def test_explain_prints_non_utf8_arguments_escaped(user):
    """A strict UTF-8 stdout and an argument that is not UTF-8: escaped, exit 0."""
    r = user.run([sys.executable, "-c", "import sys, sandbox.cli as c; sys.exit(c.main(sys.argv[1:]))",
                  "run", "--profile", "shell", "--explain", "--", os.fsdecode(b"caf\xe9")],
                 env={"PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0, r.stderr
    assert b"argv: caf\\xe9" in r.stdout


def test_shorten_bounds_any_value():
    assert shorten("x" * 10**6, 20) == "'xxxxxxxxxxxxxxxxxx…"
    nested = [[list(range(1000))] * 1000] * 1000
    assert len(shorten(nested, 60)) <= 60
    assert shorten(5, 60) == "5"


HOT_RUN = """
import sys
# any later import of these raises: the run must not need one (regular expressions, PyYAML, and
# enum with socket and selectors, which only a run that keeps its working directory needs)
for name in ("re", "yaml", "enum", "socket", "selectors"):
    sys.modules[name] = None
import sandbox.cli as c
sys.exit(c.main(["run", "--profile", "py311", "--time", "1.5s", "--memory", "64M", "--processes", "8",
                 "--open-files", "64", "--wall-time", "500ms", "--", "/bin/true"]))
"""


def test_a_cached_run_with_limit_options_imports_no_re_yaml_or_enum(user):
    """Units parsing is on the hot path for CLI options: ASCII checks by hand, no regular expressions."""
    for _ in range(2):      # caches the profile, then the BPF (its cache key differs once the profile is cached)
        user.run([SANDBOX, "run", "--profile", "py311", "--", "/bin/true"], check=True)
    r = user.run([sys.executable, "-c", HOT_RUN])
    assert r.returncode == 0, r.stderr


def test_exactly_max_slots_bind_sources_run(sbx, tmp_path):
    """The bind bound is the launcher's, not a stricter one: 256 held sources run, 257 are refused."""
    def profile(n):
        return "extends: shell\nbinds: [" + ", ".join(f"{{src: /usr/share, dst: /b{i}}}" for i in range(n)) + "]\n"
    path = tmp_path / "probe.yaml"
    path.write_text(profile(1))
    from sandbox import runner
    sources = next(s for s in runner.prepare(str(path), ["true"]).steps if s.name == "mount_namespace").params["sources"]
    n = launch.MAX_SLOTS - (len(sources) - 1)
    ok = sbx.script("ok.yaml", profile(n))
    r = sbx("run", "--profile", ok, "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    over = sbx.script("over.yaml", profile(n + 1))
    c = sbx("check", over)
    assert c.returncode == 125 and b"more than the 256" in c.stderr, c.stderr
