"""GitHub Classroom's autograding tests: read them, compare output the way Classroom does.

Two sources, one Test list:
- `.github/classroom/autograding.json` (education/autograding): {"tests": [{name, setup,
  run, input, output, comparison: exact|included|regex, timeout (minutes), points}]};
- a workflow using the 2024 grader actions (classroom-resources/autograding-command-grader
  and -io-grader): each step's `with:` inputs (test-name, setup-command, command, input,
  expected-output, comparison-method, timeout, max-score).

Comparison (education/autograding src/runner.ts): CRLF becomes LF and both sides are
trimmed; `exact` is equality, `included` (the io-grader's code says `contains`) is a
substring test, `regex` a search (Python's `re`, which agrees with JavaScript's RegExp on
the common syntax).  With no expected output, the exit status alone decides.
"""
import json

from sandbox.errors import UsageError, did_you_mean

COMPARISONS = ("exact", "included", "contains", "regex")
KEYS = ("name", "setup", "run", "input", "output", "comparison", "timeout", "points")
DEFAULT_TIMEOUT_MIN = 10
GRADER_ACTIONS = {"autograding-command-grader": "command", "autograding-io-grader": "io"}


class Test:
    __slots__ = ("name", "setup", "run", "input", "output", "comparison", "timeout_s", "points", "where")

    def __init__(self, name, run, *, setup="", input="", output="", comparison="included", timeout_min=None,
                 points=0, where=""):
        # one line: the name is printed at the start of our lines, and the file is the student's
        self.name = " ".join(str(name).split())
        self.run, self.setup, self.input, self.output = run, setup or "", input or "", output or ""
        self.comparison = "included" if comparison == "contains" else comparison
        self.timeout_s = float(timeout_min if timeout_min is not None else DEFAULT_TIMEOUT_MIN) * 60
        self.points, self.where = points, where


def _fail(where, what, fix):
    raise UsageError(what, where, fix)


def _number(value, where, what):
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            _fail(where, f"{what} {value!r} is not a number", f"write the {what} as a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        _fail(where, f"{what} {value!r} is not a non-negative number", f"write the {what} as a number")
    return int(value) if float(value).is_integer() else value


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        _fail(path, f"cannot read it: {e.strerror}", "give the path of autograding.json with --file, or run "
                                                    "sandbox grade in the repository's root")
    except ValueError as e:
        _fail(path, f"not valid JSON: {e}", "fix the JSON syntax")
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        _fail(path, "no \"tests\" list", 'write {"tests": [{"name": ..., "run": ..., "points": ...}]}')
    tests = []
    for i, t in enumerate(data["tests"]):
        where = f"{path}: tests[{i}]"
        if not isinstance(t, dict):
            _fail(where, "a test must be an object", 'write {"name": ..., "run": ...}')
        for key in t:
            if key not in KEYS:
                _fail(f"{where}.{key}", f"unknown key {key!r}", did_you_mean(key, KEYS, f"keys: {', '.join(KEYS)}"))
        for key in ("name", "run"):
            if not isinstance(t.get(key), str) or not t[key].strip():
                _fail(f"{where}.{key}", f"missing or empty {key!r}", f"give the test a {key}")
        comparison = t.get("comparison", "included")
        if comparison not in COMPARISONS:
            _fail(f"{where}.comparison", f"{comparison!r} is not a comparison",
                  did_you_mean(comparison, COMPARISONS, "use exact, included or regex"))
        for key in ("setup", "input", "output"):
            if t.get(key) is not None and not isinstance(t[key], str):
                _fail(f"{where}.{key}", f"expected a string, got {type(t[key]).__name__}", "quote the value")
        tests.append(Test(t["name"], t["run"], setup=t.get("setup"), input=t.get("input"), output=t.get("output"),
                          comparison=comparison,
                          timeout_min=_number(t.get("timeout", DEFAULT_TIMEOUT_MIN), f"{where}.timeout", "timeout"),
                          points=_number(t.get("points", 0), f"{where}.points", "points"), where=where))
    return tests


def load_workflow(path):
    """The grader actions' inputs from a workflow file (every job, in order)."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        _fail(path, f"cannot read it: {e.strerror}", "give the workflow file with --workflow")
    except yaml.YAMLError as e:
        _fail(path, f"not valid YAML: {e}", "fix the YAML syntax")
    tests = []
    for job_name, job in ((data or {}).get("jobs") or {}).items():
        for i, step in enumerate((job or {}).get("steps") or []):
            uses = str((step or {}).get("uses", ""))
            kind = next((k for a, k in GRADER_ACTIONS.items() if f"/{a}@" in uses or uses.endswith(f"/{a}")), None)
            if kind is None:
                continue
            w = step.get("with") or {}
            where = f"{path}: jobs.{job_name}.steps[{i}].with"
            if not w.get("command"):
                _fail(f"{where}.command", "the grader step has no command", "add command: ...")
            tests.append(Test(str(w.get("test-name") or step.get("name") or f"step {i}"), str(w["command"]),
                              setup=str(w.get("setup-command") or ""),
                              input=str(w.get("input") or "").strip() if kind == "io" else "",
                              output=str(w.get("expected-output") or "") if kind == "io" else "",
                              comparison=str(w.get("comparison-method") or "included") if kind == "io" else "exact",
                              timeout_min=_number(w.get("timeout", DEFAULT_TIMEOUT_MIN), f"{where}.timeout",
                                                  "timeout"),
                              points=_number(w.get("max-score", 0), f"{where}.max-score", "max-score"), where=where))
            if tests[-1].comparison not in COMPARISONS:
                _fail(f"{where}.comparison-method", f"{tests[-1].comparison!r} is not a comparison method",
                      "use exact, contains or regex")
    if not tests:
        _fail(path, "no step uses autograding-command-grader or autograding-io-grader",
              "point --workflow at the Classroom workflow, or use --file autograding.json")
    return tests


def normalise(text):
    return text.replace("\r\n", "\n").strip()


def compare(test, stdout):
    """(passed, message) for a run's output, as Classroom compares."""
    if not test.output:
        return True, ""
    expected, actual = normalise(test.output), normalise(stdout)
    if test.comparison == "exact":
        ok = actual == expected
    elif test.comparison == "regex":
        import re
        try:
            ok = re.search(expected, actual) is not None
        except re.error as e:
            return False, f"the expected output is not a valid regex ({e}): fix {test.where}.output"
    else:
        ok = expected in actual
    if ok:
        return True, ""
    how = {"exact": "is not exactly the expected output", "regex": "does not match the expected pattern",
           "included": "does not include the expected output"}
    return False, f"the output {how[test.comparison]}"
