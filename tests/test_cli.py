"""The command line: running scripts and programs, exit codes, I/O options, profiles commands."""
import os

from conftest import SANDBOX, no_traceback, write

STEP_ORDER = ["cgroup", "user_namespace", "mount_namespace", "root_tmpfs", "binds", "tmpfs", "inner_binds", "proc", "dev",
              "pivot_root", "uts_ipc_net", "fork", "rlimits", "drop_privileges", "setsid", "close_fds",
              "die_with_parent", "seccomp", "exec"]


def test_hello_script_prints_and_exits_zero(sbx):
    script = sbx.script("hello.py", "import sys\nprint('hello', sys.argv[1:], sys.flags.isolated)\n")
    r = sbx("run", "--profile", "py311", script, "a", "b c")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello ['a', 'b c'] 1\n"
    assert r.stderr == b""


def test_program_mode_runs_argv_verbatim(sbx):
    r = sbx("run", "--profile", "shell", "--", "/bin/sh", "-c", 'printf "%s|" "$0" "$@"', "zero", "one", "two words")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"zero|one|two words|"


def test_exit_code_is_the_programs(sbx):
    r, rep = sbx.run("run", "--profile", "shell", "--", "sh", "-c", "exit 42")
    assert r.returncode == 42
    assert rep["status"] == "RE" and rep["exit_code"] == 42 and rep["signal"] is None


def test_signal_gives_128_plus_n(sbx):
    r, rep = sbx.run("run", "--profile", "shell", "--", "sh", "-c", "kill -SEGV $$")
    assert r.returncode == 128 + 11
    assert rep["status"] == "SG" and rep["signal"] == 11 and rep["signal_name"] == "SIGSEGV"
    assert b"SG: killed by signal 11" in r.stderr


def test_program_not_found_is_127(sbx):
    r, rep = sbx.run("run", "--profile", "shell", "--", "no-such-program")
    assert r.returncode == 127
    assert rep["status"] == "XX"
    assert b"step 'exec' failed" in r.stderr and b"ENOENT" in r.stderr
    no_traceback(r)


def test_script_not_found_is_127(sbx):
    r = sbx("run", "--profile", "py311", os.path.join(sbx.box, "missing.py"))
    assert r.returncode == 127
    assert b"missing.py does not exist" in r.stderr
    no_traceback(r)


def test_not_executable_is_126(sbx):
    binary = sbx.script("prog", "not really a program\n", mode=0o644)
    r, rep = sbx.run("run", "--profile", "native", binary)
    assert r.returncode == 126, r.stderr
    assert rep["status"] == "XX" and b"EACCES" in r.stderr


def test_stdin_stdout_stderr_files(sbx):
    src = write(os.path.join(sbx.box, "in.txt"), "line1\nline2\n", owner=sbx.user)
    out, err = os.path.join(sbx.box, "out.txt"), os.path.join(sbx.box, "err.txt")
    r = sbx("run", "--profile", "shell", "--stdin", src, "--stdout", out, "--stderr", err,
            "--", "sh", "-c", "tr a-z A-Z; echo oops >&2")
    assert r.returncode == 0, r.stderr
    assert open(out).read() == "LINE1\nLINE2\n"
    assert open(err).read() == "oops\n"
    assert r.stdout == b""


def test_stdin_missing_file_is_an_error(sbx):
    r = sbx("run", "--profile", "shell", "--stdin", "/nonexistent/in", "--", "cat")
    assert r.returncode == 125          # the sandbox could not do what was asked; 127 would blame the program
    assert b"--stdin" in r.stderr and b"fix:" in r.stderr
    no_traceback(r)


def test_environment_is_clean_and_env_option_adds(sbx):
    r = sbx("run", "--profile", "shell", "--env", "GREETING=hi there", "--env", "FROM_CALLER",
            "--", "sh", "-c", "env | sort", env={"SECRET_TOKEN": "s3cr3t", "FROM_CALLER": "yes"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert "GREETING=hi there" in lines
    assert "FROM_CALLER=yes" in lines
    assert not any(line.startswith("SECRET_TOKEN") for line in lines)
    assert "HOME=/box" in lines and any(line.startswith("PATH=") for line in lines)


def test_cwd_option(sbx):
    r = sbx("run", "--profile", "shell", "--cwd", "/tmp", "--", "pwd")
    assert r.stdout == b"/tmp\n"


def test_explain_prints_steps_in_order_and_runs_nothing(sbx):
    marker = os.path.join(sbx.box, "marker")
    r = sbx("run", "--profile", "shell", "--explain", "--bind", f"{sbx.box}:/out:rw", "--", "touch", "/out/marker")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    names = [line.split()[1] for line in text.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert names == STEP_ORDER
    assert "/out: " + sbx.box + " (rw,nosuid,nodev)" in text
    assert "argv: touch, /out/marker" in text
    assert not os.path.exists(marker)


def test_limits_on_the_command_line_override_the_profile(sbx):
    r = sbx("run", "--profile", "py311", "--time", "500ms", "--memory", "64MiB", "--wall-time", "1m",
            "--processes", "3", "--output-limit", "1K", "--explain", "--", "true")
    text = r.stdout.decode()
    for line in ("cpu_time: 0.5s", "memory: 64M", "wall_time: 60s", "processes: 3", "output: 1K"):
        assert line in text, text


def test_bad_option_values_are_clear_errors(sbx):
    cases = [(["--memory", "64Q"], b"--memory", b"not a size"),
             (["--time", "fast"], b"--time", b"not a duration"),
             (["--processes", "0"], b"--processes", b"below the minimum"),
             (["--bogus"], b"unknown option --bogus", b"fix:"),
             (["--memroy", "1M"], b"unknown option --memroy", b"did you mean --memory?"),
             (["--bind", "relative/nowhere"], b"--bind", b"does not exist")]
    for extra, where, what in cases:
        r = sbx("run", "--profile", "shell", *extra, "--", "true")
        assert r.returncode == 125, (extra, r.stderr)
        assert where in r.stderr and what in r.stderr, (extra, r.stderr)
        no_traceback(r)


def test_usage_errors(sbx):
    for args, what in ((["run", "--", "true"], b"no profile given"),
                       (["run", "--profile", "shell"], b"nothing to run"),
                       (["frobnicate"], b"unknown command"),
                       (["rm-changes"], b"rm-changes takes one directory"),
                       (["rm-changes", "a", "b"], b"rm-changes takes one directory"),
                       (["run", "--profile", "nosuch", "--", "true"], b"no built-in profile named 'nosuch'")):
        r = sbx(*args)
        assert r.returncode == 125, (args, r.stderr)
        assert what in r.stderr
        no_traceback(r)


def test_profiles_lists_builtins_with_descriptions(sbx):
    r = sbx("profiles")
    assert r.returncode == 0
    lines = {line.split()[0]: line for line in r.stdout.decode().splitlines()}
    assert {"py311", "python3", "shell", "native"} <= set(lines)
    assert "CPython 3.11" in lines["py311"]


def test_profiles_show_resolves_extends(sbx):
    r = sbx("profiles", "show", "py311")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "py311.yaml <- python3.yaml <- native.yaml" in text
    assert "python3.11" in text            # from py311
    assert "/usr" in text                  # rootfs from native
    assert "cpu_time: 2.0" in text         # py311 overrides native's 10s


def test_check_accepts_a_good_profile(sbx):
    path = sbx.script("ok.yaml", "extends: py311\nlimits: {cpu_time: 1s}\n")
    r = sbx("check", path)
    assert r.returncode == 0, r.stderr
    assert b"ok (ok.yaml <- py311.yaml <- python3.yaml <- native.yaml)" in r.stdout


def test_help_and_version(sbx):
    r = sbx("--help")
    assert r.returncode == 0 and b"usage: sandbox run" in r.stdout
    r = sbx("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"sandbox ")


def test_a_reader_that_goes_away_is_no_internal_error(user):
    """`sandbox profiles | head -1`: the pipe closes under us; we stop quietly, as a shell tool does.
    Here the reader is gone before we write a byte (its end closed), so every write fails."""
    import subprocess
    for argv in (["profiles"], ["run", "--profile", "py311", "--explain", "--", "/bin/true"]):
        r, w = os.pipe()
        os.close(r)
        p = user.popen([SANDBOX, *argv], stdout=w, stderr=subprocess.PIPE)
        os.close(w)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 128 + 13 and b"internal error" not in err and b"Traceback" not in err, (argv, err)
