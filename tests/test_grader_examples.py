"""grader-examples/: every submission gets the verdict its expected.yaml says, judged by
grader-examples/judge.py as the unprivileged user."""
import json
import os
import shutil
import sys
import tempfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "grader-examples")


def _cases():
    out = []
    for problem in sorted(os.listdir(os.path.join(EXAMPLES, "submissions"))):
        with open(os.path.join(EXAMPLES, "submissions", problem, "expected.yaml")) as f:
            for sub, verdict in yaml.safe_load(f).items():
                out.append((problem, sub, verdict))
    return out


@pytest.fixture(scope="module")
def examples(user):
    """A copy the test user can read (the checkout may be under /root)."""
    d = tempfile.mkdtemp(prefix="sandbox-test-grader-")
    shutil.copytree(EXAMPLES, os.path.join(d, "g"))
    for root, _, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    yield os.path.join(d, "g")
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("problem,submission,expected", _cases(), ids=lambda x: str(x))
def test_submission_gets_its_verdict(user, examples, box, problem, submission, expected):
    expected, *details = expected.split()          # "RE SIGABRT": the verdict, then what its details name
    summary_file = os.path.join(box, "summary.json")
    r = user.run([sys.executable, os.path.join(examples, "judge.py"), os.path.join(examples, "problems", problem),
                  os.path.join(examples, "submissions", problem, submission), "--json", summary_file], timeout=300)
    out = r.stdout.decode() + r.stderr.decode()
    assert "Traceback" not in out, out
    with open(summary_file) as f:
        summary = json.load(f)
    assert summary["verdict"] == expected, out
    assert r.returncode == (0 if expected == "AC" else 1)
    if expected != "CE":
        assert summary["tests"] and all(t["time_s"] >= 0 and t["memory_bytes"] > 0 for t in summary["tests"])
        assert f"verdict: {expected}" in out and "time" in out and "memory" in out
    failing = next((t for t in summary["tests"] if t["verdict"] != "AC"), None)
    for word in details:
        assert word in failing["message"], failing
