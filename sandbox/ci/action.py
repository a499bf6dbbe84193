"""The GitHub Action's step (action.yml): `python -m sandbox.ci.action`.

Inputs arrive as INPUT_* environment variables that action.yml sets from `${{ inputs.* }}`
(never pasted into the script: a value with quotes or `$(...)` stays a value).  The
command runs with `sh -c` in a copy of the working directory bound read-write at its own
path (the checkout is never written), with nothing of the runner's environment but the
names in `env`.  Its output is streamed between `::stop-commands::TOKEN` and `::TOKEN::`
so it can issue no workflow command; then come the step outputs, the job summary (the
verdict, the figures and the output's tail) and at most 10 annotations for limit verdicts.
With `grade`, `sandbox grade` runs instead and its points become outputs too.
"""
import os
import secrets
import sys
import tempfile
import threading

from sandbox.errors import EXIT_SANDBOX, SandboxError, UsageError

from . import workflow

# the verdicts that get an annotation: the limits, and XX (the sandbox could not be built here,
# e.g. user namespaces restricted: its message says which setting to change)
LIMIT_STATUSES = ("TLE", "MLE", "OLE", "SYS", "XX")
MAX_ANNOTATIONS = 10          # GitHub shows 10 errors per step; the rest are dropped silently
TAIL_BYTES = 8192


def _words(value):
    return [w for w in value.replace(",", " ").split() if w]


def inputs():
    get = lambda name, default="": os.environ.get(f"INPUT_{name.upper().replace('-', '_')}", default)  # noqa: E731
    from .grade import check_limit
    limits = {}
    for item in _words(get("limits")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"{item!r} is not KEY=VALUE", "inputs.limits", "write e.g. limits: cpu_time=60s memory=1G")
        check_limit(key, value, "inputs.limits")
        limits[key] = value
    profile = get("profile") or "classroom"
    import sandbox
    try:                           # refused before anything is printed or run, naming the input
        sandbox.load_profile(profile)
    except sandbox.SandboxError as e:
        raise UsageError(e.what, "inputs.profile", e.fix) from None
    return {"run": get("run"), "profile": profile, "limits": limits,
            "workdir": os.path.abspath(get("working-directory") or "."), "env": _words(get("env")),
            "grade": get("grade"), "summary": _true(get("summary", "true")),
            "setup_network": _true(get("setup-network", "false"))}


def _true(value):
    return value.strip().lower() not in ("false", "0", "no", "")


class Tail:
    """Relays the program's output to ours while keeping its last bytes for the summary."""

    def __init__(self, read_fd):
        self.fd, self.data, self.last = read_fd, bytearray(), b"\n"
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        out = sys.stdout.buffer
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            self.last = chunk[-1:]
            self.data += chunk
            del self.data[:-TAIL_BYTES]
        os.close(self.fd)

    def join(self):
        self.thread.join()
        return bytes(self.data).decode("utf-8", "replace")


def run_command(opts, write):
    import sandbox
    from .grade import copy_repository
    from sandbox.units import parse_size
    if not opts["run"].strip():
        raise UsageError("nothing to run", "inputs.run", "give the command to run (or grade: an autograding.json)")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/box", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "CI": "true"}
    env.update({name: os.environ[name] for name in opts["env"] if name in os.environ})
    scratch = tempfile.mkdtemp(prefix="sandbox-action-")
    try:
        copy = os.path.join(scratch, "work")
        copy_repository(opts["workdir"], copy, parse_size("4G"))
        read_fd, write_fd = os.pipe()
        token = secrets.token_hex(16)
        write(f"::stop-commands::{token}\n")
        tail = Tail(read_fd)
        try:
            result = sandbox.run(opts["profile"], ["/bin/sh", "-c", opts["run"]], stdout=write_fd, stderr=write_fd,
                                 binds=[{"src": copy, "dst": opts["workdir"], "rw": True}], cwd=opts["workdir"],
                                 env=env, limits=opts["limits"])
        finally:
            os.close(write_fd)
            text = tail.join()
            # a resume token not at the start of a line would not be read: end the program's last line first
            write(("" if tail.last == b"\n" else "\n") + f"::{token}::\n")
    finally:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
    return result, text


def summary_markdown(result, text):
    fence = "`" * max(3, _longest_run(text, "`") + 1)     # the tail cannot close our fence
    rows = [("verdict", f"**{result.status}**: {result.message}"), ("exit code", result.exit_code),
            ("CPU", f"{result.cpu_time_s:.3f} s"), ("wall", f"{result.wall_time_s:.3f} s"),
            ("memory peak", f"{result.memory_peak_bytes / (1 << 20):.1f} MiB"),
            ("processes peak", result.processes_peak), ("profile", result.profile)]
    lines = ["### sandbox", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
    lines += ["", f"Output (last {TAIL_BYTES} bytes):" if len(text.encode()) >= TAIL_BYTES else "Output:", "",
              fence + "text", text.rstrip("\n"), fence, ""]
    return "\n".join(lines)


def _cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _longest_run(text, char):
    best = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        best = max(best, run)
    return best


def annotations(items, write):
    """At most MAX_ANNOTATIONS error annotations, one per limit verdict."""
    for title, message in items[:MAX_ANNOTATIONS]:
        write(workflow.command("error", message, title=title))
    if len(items) > MAX_ANNOTATIONS:
        write(workflow.command("warning", f"{len(items) - MAX_ANNOTATIONS} more limit verdicts: see the job summary",
                               title="sandbox"))


def _append_summary(text):
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def main(write=None):
    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    opts = inputs()
    temp = os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()
    report = os.path.join(temp, f"sandbox-report-{secrets.token_hex(4)}.json")
    if opts["grade"]:
        return grade(opts, report, write)
    result, text = run_command(opts, write)
    with open(report, "w", encoding="utf-8") as f:
        f.write(result.to_json())
    workflow.set_outputs({"status": result.status, "exit-code": result.exit_status, "report": report})
    if opts["summary"]:
        _append_summary(summary_markdown(result, text))
    if result.status not in ("OK", "RE"):        # ours, after the resume: as the CLI's verdict line
        print(f"sandbox: {result.status}: {result.message}", file=sys.stderr)
    if result.status in LIMIT_STATUSES:
        annotations([(f"sandbox: {result.status}", result.message)], write)
    return result.exit_status


def grade(opts, report, write):
    import json
    from . import grade as grade_mod
    argv = [opts["workdir"], "--file", os.path.join(opts["workdir"], opts["grade"]), "--json", report,
            "--profile", opts["profile"]] + [f"--limit={k}={v}" for k, v in opts["limits"].items()]
    if opts["summary"] and os.environ.get("GITHUB_STEP_SUMMARY"):
        argv += ["--summary", os.environ["GITHUB_STEP_SUMMARY"]]
    if opts["setup_network"]:
        argv.append("--setup-network")
    code = grade_mod.main(argv, write)
    with open(report, encoding="utf-8") as f:
        data = json.load(f)
    workflow.set_outputs({"exit-code": code, "report": report})     # grade wrote status and the points
    limited = [(f"sandbox: {t['verdict']} in {t['name']}", t["message"]) for t in data["tests"]
               if t.get("verdict") in LIMIT_STATUSES]
    annotations(limited, write)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code or EXIT_SANDBOX)
