"""`sandbox grade`: GitHub Classroom autograding, each command in its own sandbox.

As in Classroom, every test's setup and run execute with `sh -c` in the repository's
working directory, one after the other, and what one leaves there the next sees; here
that directory is a copy of the repository (the checkout itself is never written), bound
read-write at the repository's own path, and HOME is a directory kept for the whole
grading, so `pip install --user` in a setup serves the later runs.  `sudo` inside runs
its command as is (there is nothing to escalate to), so `sudo -H pip3 install X` works
when the setup has network (--setup-network) and says why when it does not.

Points are computed here, from exit status and output, and printed only after every
program has ended, with the program's own output indented inside a stop-commands block
(workflow.py): no output of a student can forge them.
"""
import os
import sys
import tempfile
import time

from sandbox.errors import EXIT_SANDBOX, SandboxError, UsageError

from . import box, classroom, report, workflow

STATE = "/run/sandbox-grade"                 # inside: bin/ (our sudo) and home/
SUDO = """#!/bin/sh
# sandbox grade: a sandbox has no privileges to gain; run the command as the sandbox's user
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g|-p|-C|-h|-U|-r|-t|-T) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "sudo (sandbox grade): nothing to run" >&2; exit 1; }
exec "$@"
"""
USAGE = """\
usage: sandbox grade [DIR] [--file autograding.json | --workflow WORKFLOW.yml] [options]

Run GitHub Classroom's autograding tests of the repository DIR (default: .), each setup and
run command in its own sandbox, and print the points (the Classroom reporter's format).

  --file FILE          autograding.json (default: DIR/.github/classroom/autograding.json)
  --workflow FILE      read the tests from a workflow's autograding-*-grader steps instead
  --profile P          sandbox profile (default: classroom)
  --setup-network      setup commands get the host's network (runs never do)
  --limit KEY=VALUE    override a limit of every run, e.g. memory=512M (repeatable)
  --junit FILE         write a JUnit XML report
  --json FILE          write the results as JSON (the Classroom result, decoded)
  --summary FILE       append a Markdown table (e.g. $GITHUB_STEP_SUMMARY)
  --max-copy SIZE      refuse repositories larger than this to copy (default 1G)
exit status: 0 every test passed; 1 some test failed; 125 the tests could not be read or run.
"""


def _parse(argv):
    opts = {"dir": None, "limits": {}, "setup_network": False, "profile": "classroom", "max_copy": "1G"}
    values = {"--file": "file", "--workflow": "workflow", "--profile": "profile", "--junit": "junit",
              "--json": "json", "--summary": "summary", "--max-copy": "max_copy"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            opts["help"] = True
        elif arg == "--setup-network":
            opts["setup_network"] = True
        elif name in values or name == "--limit":
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value", "sandbox grade", "see sandbox grade --help")
                i += 1
                value = argv[i]
            if name == "--limit":
                key, eq2, val = value.partition("=")
                if not eq2:
                    raise UsageError(f"{value!r} is not KEY=VALUE", "--limit", "write e.g. --limit memory=512M")
                check_limit(key, val)
                opts["limits"][key] = val
            else:
                opts[values[name]] = value
        elif arg.startswith("-"):
            from sandbox.errors import did_you_mean
            raise UsageError(f"unknown option {arg}", "sandbox grade",
                             did_you_mean(name, sorted(values) + ["--limit", "--setup-network"], "see sandbox grade "
                                          "--help", quote=False))
        elif opts["dir"] is None:
            opts["dir"] = arg
        else:
            raise UsageError(f"unexpected argument {arg!r}", "sandbox grade", "give one repository directory")
        i += 1
    return opts


def check_limit(key, value, where="--limit"):
    """Refused here, naming the option, rather than by the first run."""
    from sandbox import schema
    from sandbox.errors import ProfileError, did_you_mean
    checks = schema.SCHEMA["limits"]
    if key not in checks:
        raise UsageError(f"unknown limit {key!r}", where, did_you_mean(key, checks, f"limits: {', '.join(checks)}"))
    try:
        checks[key](value, f"{where} {key}")
    except ProfileError as e:
        raise UsageError(e.what, where, e.fix) from None


def copy_repository(src, dst, cap):
    """Copy regular files, directories and symlinks (as links) of the repository; FIFOs,
    sockets and devices are left out, and a tree over `cap` bytes is refused."""
    import shutil
    import stat
    total = 0
    for base, dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        target = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(target, exist_ok=True)
        for name in dirs[:]:
            if os.path.islink(os.path.join(base, name)):
                dirs.remove(name)
                os.symlink(os.readlink(os.path.join(base, name)), os.path.join(target, name))
        for name in files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), os.path.join(target, name))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > cap:
                    raise UsageError(f"the repository is larger than {cap} bytes", src,
                                     "raise --max-copy, or remove build artefacts from the repository")
                shutil.copy2(path, os.path.join(target, name), follow_symlinks=False)


class Grader:
    def __init__(self, opts, tests, repo, write):
        import shutil
        from sandbox.units import parse_size
        self.opts, self.tests, self.repo, self.write = opts, tests, repo, write
        self.scratch = tempfile.mkdtemp(prefix="sandbox-grade-")
        try:
            self.work = os.path.join(self.scratch, "work")
            copy_repository(repo, self.work, parse_size(opts["max_copy"]))
            for d in ("bin", "home"):
                os.mkdir(os.path.join(self.scratch, d))
            with open(os.path.join(self.scratch, "bin", "sudo"), "w") as f:
                f.write(SUDO)
            os.chmod(os.path.join(self.scratch, "bin", "sudo"), 0o755)
            self.profile = box.changed(opts["profile"])
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        self.binds = [{"src": self.work, "dst": repo, "rw": True},
                      {"src": os.path.join(self.scratch, "bin"), "dst": f"{STATE}/bin", "rw": False},
                      {"src": os.path.join(self.scratch, "home"), "dst": f"{STATE}/home", "rw": True}]
        home = f"{STATE}/home"
        self.env = {"PATH": f"{STATE}/bin:{home}/.local/bin:/usr/local/bin:/usr/bin:/bin", "HOME": home,
                    "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONUSERBASE": f"{home}/.local",
                    "PIP_USER": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    "PIP_NO_INPUT": "1", "FORCE_COLOR": "0", "CI": "true"}

    def close(self):
        import shutil
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _run(self, command, test, stdin=b"", network=False):
        import sandbox
        profile = box.changed(self.profile, network="host") if network else self.profile
        # Classroom's timeout is wall-clock time only; CPU is bounded by it (and by --limit)
        limits = {"wall_time": test.timeout_s, "cpu_time": "unlimited"}
        limits.update(self.opts["limits"])
        return sandbox.run(profile, ["/bin/sh", "-c", command], stdin=stdin, binds=self.binds, env=self.env,
                           cwd=self.repo, limits=limits)

    def grade(self, test):
        """One test: {name, status pass|fail|error, score, message, ...}, its output printed."""
        outcome = {"name": test.name, "max_score": test.points, "score": 0, "test_code": test.run,
                   "filename": "", "line_no": 0}
        started = time.monotonic()
        self.write(f"\n=== {test.name}\n")
        if test.setup:
            r = self._run(test.setup, test, network=self.opts["setup_network"])
            self._show("setup output", r)
            if r.status != "OK":
                return self._finish(outcome, started, r, "error", self._setup_failed(r))
        r = self._run(test.run, test, stdin=test.input.encode())
        self._show("output", r)
        return self._finish(outcome, started, r, *judge(test, r))

    def _finish(self, outcome, started, r, status, message):
        outcome.update(status=status, message=message, score=outcome["max_score"] if status == "pass" else 0,
                       verdict=r.status, cpu_time_s=r.cpu_time_s, wall_time_s=r.wall_time_s,
                       memory_peak_bytes=r.memory_peak_bytes, duration=round(time.monotonic() - started, 3),
                       execution_time=f"{time.monotonic() - started:.2f}s")
        # ours, after the program's output is closed and printed indented
        self.write(f"--- {outcome['name']}: {status}, {outcome['score']}/{outcome['max_score']} points"
                   f"{': ' + message if message else ''}\n")
        return outcome

    def _show(self, what, r):
        text = (r.stdout or b"").decode("utf-8", "replace") + (r.stderr or b"").decode("utf-8", "replace")
        if len(text) > 65536:
            text = "[... the first part is left out ...]\n" + text[-65536:]
        workflow.untrusted_block(f"--- {what} (the program's, not the grader's):", text, self.write)

    def _setup_failed(self, r):
        hint = ""
        if r.status == "RE" and not self.opts["setup_network"]:
            hint = "; setup commands run without network unless sandbox grade is given --setup-network"
        if r.exit_code == 127:
            hint = "; a command of the setup was not found on this machine (pip3 needs python3-pip)"
        return f"setup failed: {r.status}: {r.message}{hint}"


def judge(test, r):
    """pass/fail/error for a run, with Classroom's meanings: a timeout is an error."""
    if r.status == "TLE" and r.limit_hit == "wall_time":
        return "error", f"command timed out ({test.timeout_s / 60:g} min)"
    if r.status not in ("OK", "RE"):
        return "error", f"{r.status}: {r.message}"
    if r.exit_code != 0:
        return "fail", f"exited with status {r.exit_code}"
    passed, message = classroom.compare(test, (r.stdout or b"").decode("utf-8", "replace"))
    return ("pass" if passed else "fail"), message


def main(argv, write=None):
    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    opts = _parse(argv)
    if opts.get("help"):
        write(USAGE)
        return 0
    repo = os.path.abspath(opts["dir"] or ".")
    if not os.path.isdir(repo):
        raise UsageError(f"{repo} is not a directory", "sandbox grade", "give the repository's directory")
    if opts.get("workflow"):
        tests = classroom.load_workflow(opts["workflow"])
    else:
        tests = classroom.load_json(opts.get("file") or os.path.join(repo, ".github", "classroom", "autograding.json"))
    grader = Grader(opts, tests, repo, write)
    try:
        outcomes = [grader.grade(t) for t in tests]
    finally:
        grader.close()
    return report.publish(outcomes, opts, write)


if __name__ == "__main__":        # python -m sandbox.ci.grade, same as `sandbox grade`
    try:
        sys.exit(main(sys.argv[1:]))
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code or EXIT_SANDBOX)
