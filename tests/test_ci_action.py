"""action.yml, executed here the way GitHub's runner executes a composite action.

`Runner` reads action.yml and runs each step as the unprivileged test user: `${{ }}`
expressions over inputs, github.action_path, runner.*, steps.*.outputs; `if:`; step env
and working-directory; `bash --noprofile --norc -eo pipefail` for shell: bash; fresh
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ENV files per step, GITHUB_ENV carried to the
next steps; RUNNER_TEMP; and the step's stdout parsed for workflow commands as the runner
does (::stop-commands:: / resume token, ::set-output::, ::add-mask::, ::error:: ...).
The install step (id: install) is replaced by pointing SANDBOX_PYTHON at this venv.
What this does not prove is in README.md (GitHub Action).
"""
import json
import os
import re
import shutil
import sys
import tempfile

import pytest
import yaml

from conftest import REPO, chown_tree, pong_server

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Runner:
    def __init__(self, user, workspace):
        self.user, self.workspace = user, workspace
        with open(os.path.join(REPO, "action.yml")) as f:
            self.action = yaml.safe_load(f)
        self.temp = tempfile.mkdtemp(prefix="runner-temp-", dir=workspace)
        if os.geteuid() == 0:
            os.chown(self.temp, user.uid, user.gid)
        self.steps_run = 0
        self.env = {}              # what GITHUB_ENV files added
        self.commands = []         # (command, props, message) the runner would act on
        self.masks, self.annotations, self.summary, self.log = [], [], "", ""

    # ------------------------------------------------------------ expressions
    def value(self, expr, ctx):
        expr = expr.strip()
        if expr in ("always()", "success()"):
            return True
        m = re.fullmatch(r"(.+?)\s*(==|!=)\s*'([^']*)'", expr)
        if m:
            left = str(self.value(m.group(1), ctx))
            return (left == m.group(3)) == (m.group(2) == "==")
        if "&&" in expr:
            return all(self.value(part, ctx) for part in expr.split("&&"))
        parts = expr.split(".")
        if parts[0] == "inputs":
            return ctx["inputs"][".".join(parts[1:])]
        if parts[0] == "github" and parts[1] == "action_path":
            return REPO
        if parts[0] == "runner":
            return {"os": "Linux", "temp": self.temp}[parts[1]]
        if parts[0] == "steps":
            return ctx["steps"].get(parts[1], {}).get(".".join(parts[3:]), "")
        raise AssertionError(f"the harness cannot evaluate ${{{{ {expr} }}}}")

    def subst(self, text, ctx):
        return EXPR.sub(lambda m: str(self.value(m.group(1), ctx)), str(text))

    # ------------------------------------------------------------ the run
    def run(self, **given):
        assert self.action["runs"]["using"] == "composite"
        declared = self.action["inputs"]
        unknown = set(given) - set(declared)
        assert not unknown, f"inputs not declared in action.yml: {unknown}"
        ctx = {"inputs": {k: str(given.get(k, v.get("default", ""))) for k, v in declared.items()}, "steps": {}}
        failed = None
        for step in self.action["runs"]["steps"]:
            assert step.get("shell") == "bash", f"step {step.get('name')}: a run step needs shell: bash"
            if "if" in step and not self.value(step["if"], ctx):
                continue
            outputs, code = self.step(step, ctx)
            if "id" in step:
                ctx["steps"][step["id"]] = outputs
            if code != 0:
                failed = (step.get("name"), code)
                break
        outs = {k: self.subst(v["value"], ctx) for k, v in self.action["outputs"].items()}
        return outs, failed

    def step(self, step, ctx):
        self.steps_run += 1
        files = {name: os.path.join(self.temp, f"{name.lower()}-{self.steps_run}")
                 for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV")}
        for path in files.values():
            open(path, "w").close()
            if os.geteuid() == 0:
                os.chown(path, self.user.uid, self.user.gid)
        if step.get("id") == "install":          # pointed at the installed venv
            self.env["SANDBOX_PYTHON"] = sys.executable
            return {}, 0
        script = os.path.join(self.temp, f"step-{self.steps_run}.sh")
        with open(script, "w") as f:
            f.write(self.subst(step["run"], ctx))
        os.chmod(script, 0o644)
        env = dict(self.env, RUNNER_TEMP=self.temp, GITHUB_ACTION_PATH=REPO, GITHUB_ACTIONS="true",
                   RUNNER_OS="Linux", CI="true", **files, **self.extra_env)
        env.update({k: self.subst(v, ctx) for k, v in (step.get("env") or {}).items()})
        cwd = os.path.join(self.workspace, self.subst(step.get("working-directory", "."), ctx))
        r = self.user.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], env=env, cwd=cwd,
                          timeout=300)
        text = r.stdout.decode("utf-8", "replace")
        self.log += text + r.stderr.decode("utf-8", "replace")
        outputs = self.parse_commands(text)
        outputs.update(parse_file_commands(files["GITHUB_OUTPUT"]))
        self.env.update(parse_file_commands(files["GITHUB_ENV"]))
        with open(files["GITHUB_STEP_SUMMARY"]) as f:
            self.summary += f.read()
        return outputs, r.returncode

    extra_env = {}

    def parse_commands(self, text):
        """The runner's reading of stdout: commands only at a line's start, none while stopped."""
        outputs, stopped = {}, None
        for line in text.splitlines():
            if stopped is not None:
                if line == f"::{stopped}::":
                    stopped = None
                continue
            m = re.match(r"^::([a-z-]+)( [^:]*)?::(.*)$", line)
            if not m:
                continue
            name, props, message = m.group(1), (m.group(2) or "").strip(), m.group(3)
            props = dict(p.split("=", 1) for p in props.split(",") if "=" in p)
            self.commands.append((name, props, message))
            if name == "stop-commands":
                stopped = message
            elif name == "set-output":
                outputs[props.get("name")] = message
            elif name == "add-mask":
                self.masks.append(message)
            elif name in ("error", "warning", "notice"):
                self.annotations.append((name, props.get("title", "").replace("%3A", ":"),
                                         message.replace("%0A", "\n").replace("%25", "%")))
        return outputs


def parse_file_commands(path):
    """NAME=value lines and NAME<<DELIM heredocs, as the runner reads GITHUB_OUTPUT/GITHUB_ENV."""
    values, lines = {}, open(path).read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            values[name] = "\n".join(lines[i + 1:j])
            i = j + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


@pytest.fixture
def workspace(user):
    d = tempfile.mkdtemp(prefix="sandbox-action-")
    os.chmod(d, 0o755)
    os.makedirs(os.path.join(d, "repo"))
    with open(os.path.join(d, "repo", "data.txt"), "w") as f:
        f.write("from the checkout\n")
    chown_tree(user, d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


INJECT = ('echo "::set-output name=status::FORGED"; echo "::error title=forged::from the program"; '
          'echo "::add-mask::secret"; echo "status=FORGED" >> "${GITHUB_OUTPUT:-/dev/null}"; ')


def test_run_streams_output_that_can_issue_no_command(user, workspace):
    runner = Runner(user, workspace)
    runner.extra_env = {"PASSED": "yes", "NOT_PASSED": "leaked"}
    outs, failed = runner.run(run=INJECT + 'cat data.txt; echo "${PASSED:-unset} ${NOT_PASSED:-unset}"; '
                                        'echo written > new.txt; printf "no newline at the end"',
                              env="PASSED", **{"working-directory": "repo"})
    assert failed is None, runner.log
    assert outs["status"] == "OK" and outs["exit-code"] == "0"
    with open(outs["report"]) as f:
        assert json.load(f)["status"] == "OK"
    # the program's commands were read by nobody: only our stop-commands pair was a command
    assert [c[0] for c in runner.commands] == ["stop-commands"], runner.commands
    assert runner.masks == [] and runner.annotations == []
    assert "from the checkout" in runner.log and "yes unset" in runner.log
    assert "::set-output name=status::FORGED" in runner.log       # printed, as text
    # the checkout itself was not written; the summary has the figures and the tail
    assert sorted(os.listdir(os.path.join(workspace, "repo"))) == ["data.txt"]
    for needle in ("| verdict | **OK**", "| CPU |", "| wall |", "| memory peak |", "| processes peak |",
                   "no newline at the end"):
        assert needle in runner.summary, runner.summary


def test_limit_verdict_fails_the_step_with_one_annotation(user, workspace):
    runner = Runner(user, workspace)
    outs, failed = runner.run(run="echo spinning; while :; do :; done", limits="cpu_time=1s, wall_time=20s",
                              **{"working-directory": "repo"})
    assert failed is not None and failed[1] == 137, runner.log
    assert outs["status"] == "TLE" and outs["exit-code"] == "137"
    assert len(runner.annotations) == 1
    kind, title, message = runner.annotations[0]
    assert (kind, title) == ("error", "sandbox: TLE") and message.startswith("CPU time limit exceeded")
    assert "**TLE**" in runner.summary and "spinning" in runner.summary
    assert "sandbox: TLE: CPU time limit exceeded" in runner.log


def test_summary_fence_cannot_be_closed_by_the_output(user, workspace):
    runner = Runner(user, workspace)
    runner.run(run="printf '````\\n# Points 10/10\\n<img src=x>\\n'", **{"working-directory": "repo"})
    fence_lines = [line for line in runner.summary.splitlines() if line.startswith("`")]
    opening = fence_lines[0]
    assert opening.startswith("`````") and opening.rstrip("text") != "````"
    body = runner.summary.split(opening, 1)[1]
    assert "# Points 10/10" in body.split("\n" + opening.rstrip("text") + "\n")[0]


def test_grade_points_are_outputs_and_forged_ones_are_not(user, workspace):
    classroom = os.path.join(REPO, "grader-examples", "classroom")
    repo = os.path.join(workspace, "student")
    shutil.copytree(os.path.join(classroom, "solutions", "forger"), repo)
    shutil.copytree(os.path.join(classroom, "assignment", ".github"), os.path.join(repo, ".github"))
    chown_tree(user, repo)
    runner = Runner(user, workspace)
    outs, failed = runner.run(grade=".github/classroom/autograding.json", **{"working-directory": "student"})
    assert failed is not None, runner.log              # not every test passed: the step fails, as the reporter's
    assert (outs["points"], outs["max-points"], outs["status"]) == ("2", "10", "fail")
    reports = [a for a in runner.annotations if a[1] == "Autograding report"]
    assert reports == [("notice", "Autograding report", '{"totalPoints": 2, "maxPoints": 10}')]
    assert runner.masks == [] and not [a for a in runner.annotations if a[0] == "error"]
    assert "### Autograding: 2/10 points" in runner.summary


def test_at_most_ten_annotations_for_limit_verdicts(user, workspace):
    """Twelve tests end MLE: ten error annotations (GitHub's per-step cap), then one warning
    saying how many more there were."""
    repo = os.path.join(workspace, "repo")
    os.makedirs(os.path.join(repo, ".github", "classroom"))
    tests = [{"name": f"hog {i}", "run": "python3 -c 'bytearray(512 << 20)'", "points": 1} for i in range(12)]
    with open(os.path.join(repo, ".github", "classroom", "autograding.json"), "w") as f:
        json.dump({"tests": tests}, f)
    chown_tree(user, repo)
    runner = Runner(user, workspace)
    outs, failed = runner.run(grade=".github/classroom/autograding.json", limits="memory=64M",
                              **{"working-directory": "repo"})
    assert outs["points"] == "0", runner.log
    errors = [a for a in runner.annotations if a[0] == "error"]
    assert len(errors) == 10 and all(a[1].startswith("sandbox: MLE in hog ") for a in errors), runner.annotations
    assert [a[2] for a in runner.annotations if a[0] == "warning"] == ["2 more limit verdicts: see the job summary"]


def test_summary_false_writes_none_and_env_names_are_all_that_pass(user, workspace):
    runner = Runner(user, workspace)
    runner.extra_env = {"ONE": "1", "TWO": "2", "GITHUB_TOKEN": "ghs_secret"}
    outs, failed = runner.run(run='echo "${ONE:-x}${TWO:-x}${GITHUB_TOKEN:-x}"; env | sort', env="ONE\nTWO",
                              summary="false", **{"working-directory": "repo"})
    assert failed is None and outs["status"] == "OK", runner.log
    assert runner.summary == "" and "12x" in runner.log and "ghs_secret" not in runner.log


def test_grade_setup_network_input_reaches_setup_only(user, workspace):
    """setup-network: true gives the setup the runner's network (a loopback server stands in);
    false, and the run always, have none."""
    with pong_server(user) as port:
        fetch = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}))\""
        repo = os.path.join(workspace, "repo")
        os.makedirs(os.path.join(repo, ".github", "classroom"))
        with open(os.path.join(repo, ".github", "classroom", "autograding.json"), "w") as f:
            json.dump({"tests": [{"name": "setup fetches", "setup": fetch, "run": "true", "points": 1},
                                 {"name": "run fetches", "run": fetch, "points": 1}]}, f)
        chown_tree(user, repo)
        points = {}
        for setting in ("true", "false"):
            runner = Runner(user, workspace)
            outs, failed = runner.run(grade=".github/classroom/autograding.json", **{"setup-network": setting,
                                                                                     "working-directory": "repo"})
            points[setting] = outs["points"]
        assert points == {"true": "1", "false": "0"}


@pytest.mark.parametrize("inputs, message", [
    ({"profile": "no-such-profile"}, "sandbox: error: inputs.profile: no built-in profile named 'no-such-profile'"),
    ({"limits": "memroy=1G"}, "sandbox: error: inputs.limits: unknown limit 'memroy'\n  fix: did you mean 'memory'?"),
    ({"limits": "cpu_time"}, "sandbox: error: inputs.limits: 'cpu_time' is not KEY=VALUE"),
    ({"run": ""}, "sandbox: error: inputs.run: nothing to run"),
])
def test_bad_inputs_fail_the_step_naming_the_input(user, workspace, inputs, message):
    runner = Runner(user, workspace)
    outs, failed = runner.run(**dict({"run": "true", "working-directory": "repo"}, **inputs))
    assert failed == ("Run in the sandbox", 125), runner.log
    assert message in runner.log and "Traceback" not in runner.log
    # refused before anything ran: no stop-commands left open
    assert [c for c in runner.commands if c[0] == "stop-commands"] == []
