"""What `sandbox grade` publishes, all from the outcomes it computed (never from output):

- a table for people;
- the Classroom reporter's format: `Points X/Y`, the two notice annotations
  (`Autograding complete` / `Autograding report` {"totalPoints","maxPoints"}, as
  classroom-resources/autograding-grading-reporter emits them), and the grader actions'
  base64 `result` ({"version": 1, "status", "max_score", "tests": [...]});
- step outputs (points, max-points, result) in $GITHUB_OUTPUT when it is set;
- --junit, --json and --summary (Markdown) files.
"""
import base64
import json

from sandbox.errors import UsageError

from . import workflow


def _number(x):
    return int(x) if float(x).is_integer() else round(x, 3)


def classroom_result(outcomes):
    statuses = {o["status"] for o in outcomes}
    status = "error" if "error" in statuses else "fail" if "fail" in statuses else "pass"
    tests = [{k: o.get(k) for k in ("name", "status", "score", "message", "test_code", "filename", "line_no",
                                    "execution_time")} for o in outcomes]
    return {"version": 1, "status": status, "max_score": _number(sum(o["max_score"] for o in outcomes)),
            "tests": tests}


def table(outcomes):
    rows = [("test", "status", "points", "time", "sandbox")]
    for o in outcomes:
        rows.append((o["name"], o["status"], f"{_number(o['score'])}/{_number(o['max_score'])}",
                     f"{o.get('wall_time_s', 0) or 0:.2f}s", o.get("verdict", "-")))
    widths = [min(40, max(len(str(r[i])) for r in rows)) for i in range(len(rows[0]))]
    # indented: a test's name (autograding.json is the student's file) never starts a line
    return "".join("  " + "  ".join(str(c)[:40].ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                   for r in rows)


def markdown(outcomes, points, total):
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
    lines = [f"### Autograding: {_number(points)}/{_number(total)} points", "",
             "| test | status | points | time | sandbox | message |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {cell(o['name'])} | {o['status']} | {_number(o['score'])}/{_number(o['max_score'])} | "
                     f"{o.get('wall_time_s', 0) or 0:.2f} s | {o.get('verdict', '-')} | {cell(o.get('message', ''))} |")
    return "\n".join(lines) + "\n"


def junit(outcomes, path):
    from xml.sax.saxutils import quoteattr, escape
    failures = sum(o["status"] == "fail" for o in outcomes)
    errors = sum(o["status"] == "error" for o in outcomes)
    cases = []
    for o in outcomes:
        inner = ""
        if o["status"] != "pass":
            tag = "failure" if o["status"] == "fail" else "error"
            inner = f"<{tag} message={quoteattr(o.get('message') or '')}>{escape(o.get('message') or '')}</{tag}>"
        props = "".join(f"<property name={quoteattr(k)} value={quoteattr(str(o.get(k)))}/>"
                        for k in ("score", "max_score", "verdict", "cpu_time_s", "memory_peak_bytes") if k in o)
        cases.append(f"<testcase classname=\"autograding\" name={quoteattr(o['name'])} "
                     f"time=\"{o.get('wall_time_s') or 0:.3f}\"><properties>{props}</properties>{inner}</testcase>")
    xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="autograding" '
           f'tests="{len(outcomes)}" failures="{failures}" errors="{errors}">{"".join(cases)}</testsuite>'
           f"</testsuites>\n")
    _write(path, xml, "--junit")


def _write(path, text, option):
    try:
        with open(path, "a" if option == "--summary" else "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}", option, "choose a writable path") from None


def publish(outcomes, opts, write):
    points = sum(o["score"] for o in outcomes)
    total = sum(o["max_score"] for o in outcomes)
    result = classroom_result(outcomes)
    encoded = base64.b64encode(json.dumps(result).encode()).decode()
    write("\n" + table(outcomes))
    write(f"Points {_number(points)}/{_number(total)}\n")
    write(workflow.command("notice", f"Points {_number(points)}/{_number(total)}", title="Autograding complete"))
    write(workflow.command("notice", json.dumps({"totalPoints": _number(points), "maxPoints": _number(total)}),
                           title="Autograding report"))
    write(f"Autograding result (base64): {encoded}\n")
    workflow.set_outputs({"points": _number(points), "max-points": _number(total), "result": encoded,
                          "status": result["status"]})
    if opts.get("json"):
        _write(opts["json"], json.dumps(dict(result, points=_number(points), tests=outcomes), indent=2) + "\n",
               "--json")
    if opts.get("junit"):
        junit(outcomes, opts["junit"])
    if opts.get("summary"):
        _write(opts["summary"], markdown(outcomes, points, total), "--summary")
    return 0 if result["status"] == "pass" else 1
