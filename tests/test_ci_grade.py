"""sandbox grade: Classroom's tests in sandboxes, points nobody's output can forge."""
import base64
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile

import pytest

from conftest import SANDBOX, chown_tree, pong_server


def no_traceback(r):
    """The grader's own stderr has no traceback (the programs' output, on stdout, may)."""
    err = r.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    return r.stdout.decode(errors="replace") + err

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "grader-examples", "classroom")


@pytest.fixture
def classroom(user, box):
    """The examples, copied where the test user can read them."""
    dest = os.path.join(box, "classroom")
    shutil.copytree(EXAMPLES, dest)
    chown_tree(user, dest)
    return dest


def grade(user, box, repo, *args, env=None):
    out = os.path.join(box, "github_output")
    open(out, "w").close()
    chown_tree(user, out)
    r = user.run([SANDBOX, "grade", repo, *args], env=dict(env or {}, GITHUB_OUTPUT=out), timeout=300)
    with open(out) as f:
        outputs = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line and "<<" not in line)
    return r, outputs


with open(os.path.join(EXAMPLES, "expected.json")) as f:
    EXPECTED = json.load(f)


@pytest.mark.parametrize("solution", sorted(EXPECTED))
def test_examples_get_their_points(user, box, classroom, solution):
    want = EXPECTED[solution]
    report = os.path.join(box, "grade.json")
    junit = os.path.join(box, "grade.xml")
    r, outputs = grade(user, box, os.path.join(classroom, "solutions", solution), "--file",
                       os.path.join(classroom, "assignment", ".github", "classroom", "autograding.json"),
                       "--json", report, "--junit", junit)
    out = no_traceback(r)
    assert r.returncode == want["exit"], out
    with open(report) as f:
        data = json.load(f)
    assert {t["name"]: t["status"] for t in data["tests"]} == want["tests"]
    assert data["points"] == want["points"] and data["max_score"] == want["max_points"]
    assert outputs["points"] == str(want["points"]) and outputs["max-points"] == str(want["max_points"])
    result = json.loads(base64.b64decode(outputs["result"]))
    assert result["version"] == 1 and sum(t["score"] for t in result["tests"]) == want["points"]
    assert f"\nPoints {want['points']}/{want['max_points']}\n" in out
    assert f'::notice title=Autograding report::{{"totalPoints": {want["points"]}, "maxPoints": 10}}' in out
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    assert {n for n, s in want["tests"].items() if s == "pass"} == \
        {n for n, c in cases.items() if not list(c.iter("failure")) and not list(c.iter("error"))}


def test_forged_points_and_workflow_commands_have_no_effect(user, box, classroom):
    """The forger prints `Points 10/10`, a fake `Autograding report` notice, ::set-output,
    ::add-mask::, ::error:: and its own stop-commands: it still gets its real 2 points, and
    every line of the log that GitHub would read as a command is ours."""
    r, outputs = grade(user, box, os.path.join(classroom, "solutions", "forger"), "--file",
                       os.path.join(classroom, "assignment", ".github", "classroom", "autograding.json"))
    out = no_traceback(r)
    assert outputs["points"] == "2"
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("Points")] == ["Points 2/10"]
    commands = [line for line in lines if line.startswith("::")]
    stops = [c for c in commands if c.startswith("::stop-commands::")]
    tokens = [c[len("::stop-commands::"):] for c in stops]
    assert len(tokens) == 4 and all(len(t) == 32 for t in tokens) and len(set(tokens)) == 4
    assert all(f"::{t}::" in commands for t in tokens)
    ours = set(stops) | {f"::{t}::" for t in tokens} | {
        "::notice title=Autograding complete::Points 2/10",
        '::notice title=Autograding report::{"totalPoints": 2, "maxPoints": 10}'}
    assert set(commands) == ours, set(commands) - ours
    # and the program's lines are there, indented, between a stop and its resume
    start = lines.index(stops[0])
    assert lines[lines.index(f"::{tokens[0]}::", start) - 1] == "    | ::guess::"
    assert "    | ::set-output name=points::10" in lines


def make_wheel(directory):
    """A minimal wheel (no network needed to install it)."""
    path = os.path.join(directory, "mypkg-1.0-py3-none-any.whl")
    files = {"mypkg/__init__.py": "VALUE = 42\n",
             "mypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n",
             "mypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n"}
    import hashlib
    record = []
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(text)}")
        z.writestr("mypkg-1.0.dist-info/RECORD", "\n".join(record + ["mypkg-1.0.dist-info/RECORD,,"]) + "\n")
    return os.path.basename(path)


def assignment(user, box, tests, files=None):
    repo = os.path.join(box, "repo")
    os.makedirs(os.path.join(repo, ".github", "classroom"))
    with open(os.path.join(repo, ".github", "classroom", "autograding.json"), "w") as f:
        json.dump({"tests": tests}, f)
    for name, text in (files or {}).items():
        with open(os.path.join(repo, name), "w") as f:
            f.write(text)
    return repo


def test_sudo_pip_setup_installs_for_the_later_runs(user, box):
    """`sudo -H pip3 install` works (sudo runs the command as is, pip installs into the
    grading's own HOME), and what setup installed is there for this run and the next test."""
    repo = assignment(user, box, [
        {"name": "installs", "setup": "sudo -H pip3 install --no-index ./WHEEL", "run":
         "python3 -c 'import mypkg; print(mypkg.VALUE)'", "output": "42", "comparison": "exact", "points": 1},
        {"name": "still there", "run": "python3 -c 'import mypkg; print(mypkg.VALUE)'; ls", "output": "42",
         "comparison": "included", "points": 1}])
    wheel = make_wheel(repo)
    with open(os.path.join(repo, ".github", "classroom", "autograding.json")) as f:
        text = f.read().replace("WHEEL", wheel)
    with open(os.path.join(repo, ".github", "classroom", "autograding.json"), "w") as f:
        f.write(text)
    chown_tree(user, repo)
    r, outputs = grade(user, box, repo)
    assert r.returncode == 0, no_traceback(r)
    assert outputs["points"] == "2"
    assert sorted(os.listdir(repo)) == [".github", wheel]     # the checkout itself was not written


def test_setup_network_only_with_the_option_and_never_for_runs(user, box):
    with pong_server(user) as port:
        fetch = f"python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', {port})).recv(4))\""
        repo = assignment(user, box, [{"name": "fetch", "setup": fetch, "run": fetch, "output": "pong",
                                       "points": 1}])
        chown_tree(user, repo)
        r, outputs = grade(user, box, repo)
        out = no_traceback(r)
        assert r.returncode == 1 and outputs["points"] == "0"
        assert "setup failed" in out and "--setup-network" in out
        r, outputs = grade(user, box, repo, "--setup-network")
        out = no_traceback(r)
        assert r.returncode == 1 and outputs["points"] == "0"
        assert "    | b'pong'" in out and "ConnectionRefusedError" in out   # setup reached it, the run did not


def test_workflow_grader_steps_are_read_like_autograding_json(user, box, classroom):
    workflow = os.path.join(box, "classroom.yml")
    with open(workflow, "w") as f:
        f.write("""\
name: Autograding Tests
on: [push]
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: greets
        uses: classroom-resources/autograding-io-grader@v1
        with:
          test-name: greets
          command: python3 hello.py
          expected-output: Hello, World!
          comparison-method: contains
          timeout: 1
          max-score: 2
      - id: unit
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: unit tests
          command: python3 -m unittest -q test_add
          timeout: 0.05
          max-score: 3
      - uses: classroom-resources/autograding-grading-reporter@v1
        env:
          GREETS_RESULTS: "${{steps.greets.outputs.result}}"
""")
    chown_tree(user, workflow)
    r, outputs = grade(user, box, os.path.join(classroom, "solutions", "wrong"), "--workflow", workflow)
    assert r.returncode == 1, no_traceback(r)
    assert (outputs["points"], outputs["max-points"]) == ("2", "5")


@pytest.mark.parametrize("tests, what", [
    ([{"name": "a", "run": "true", "pionts": 1}],
     "tests[0].pionts: unknown key 'pionts'\n  fix: did you mean 'points'?"),
    ([{"name": "a", "run": "true", "comparison": "exactly"}], "tests[0].comparison: 'exactly' is not a comparison"),
    ([{"name": "a"}], "tests[0].run: missing or empty 'run'"),
    ([{"name": "a", "run": "true", "timeout": "soon"}], "tests[0].timeout: timeout 'soon' is not a number"),
])
def test_bad_autograding_json_is_refused_with_where_and_fix(user, box, tests, what):
    repo = assignment(user, box, tests)
    chown_tree(user, repo)
    r, outputs = grade(user, box, repo)
    err = no_traceback(r)
    assert r.returncode == 125 and what in err, err
    assert "autograding.json" in err and outputs == {}


def test_missing_file_and_bad_option(user, box):
    r, _ = grade(user, box, box)
    assert r.returncode == 125 and "autograding.json: cannot read it" in no_traceback(r)
    r, _ = grade(user, box, box, "--junti", "x")
    assert r.returncode == 125 and "did you mean --junit" in no_traceback(r)
    r, _ = grade(user, box, box, "--limit", "memroy=1G")
    assert r.returncode == 125 and "--limit: unknown limit 'memroy'\n  fix: did you mean 'memory'?" in no_traceback(r)
    r, _ = grade(user, box, box, "--limit", "memory=lots")
    assert r.returncode == 125 and "--limit: " in no_traceback(r) and "lots" in r.stderr.decode()


def test_a_test_name_cannot_start_a_command_line(user, box):
    """autograding.json is in the student's repository: a name with a newline and a command."""
    repo = assignment(user, box, [{"name": "x\n::set-output name=points::10\n::add-mask::x", "run": "false",
                                   "points": 1},
                                  {"name": "::error::table row", "run": "true", "points": 1}])
    chown_tree(user, repo)
    r, outputs = grade(user, box, repo)
    out = no_traceback(r)
    assert outputs["points"] == "1"
    commands = [line for line in out.splitlines() if line.startswith("::")]
    assert all(c.startswith(("::stop-commands::", "::notice title=Autograding")) or re.fullmatch("::[0-9a-f]{32}::", c)
               for c in commands), commands
