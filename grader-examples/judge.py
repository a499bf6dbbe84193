#!/usr/bin/env python3
"""A small judge built on the sandbox's Python API.

    python judge.py PROBLEM_DIR SUBMISSION [--lang c|cpp|py] [--json SUMMARY.json]

Compiles the submission once (C, C++ or Python 3.11, by extension unless --lang),
runs it on every test of the problem in its own sandbox, checks the output, and
prints a verdict table (AC WA TLE MLE RE OLE CE SYS, and XX when the judge
itself failed) with the CPU time and peak memory of each test, then the overall
verdict.  Exit status: 0 when accepted, 1 otherwise, 2 on a usage error.

A problem directory holds problem.yaml (time_limit, wall_time_limit,
memory_limit, and either checker: tokens | float EPS, or interactor: FILE) and
tests/NAME.in with tests/NAME.ans (no .ans for interactive problems: the .in
goes to the interactor as /box/secret).
"""
import argparse
import json
import os
import sys

import yaml

from sandbox import judge
from sandbox.errors import SandboxError
from sandbox.units import parse_duration, parse_size

EXTENSIONS = {".c": "c", ".cpp": "cpp", ".cc": "cpp", ".py": "py"}
SANDBOX_TO_VERDICT = {"TLE": "TLE", "MLE": "MLE", "OLE": "OLE", "SYS": "SYS", "RE": "RE", "SG": "RE", "XX": "XX"}


def check_tokens(out, ans):
    return out.split() == ans.split()


def check_float(out, ans, eps):
    got, want = out.split(), ans.split()
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        try:
            a, b = float(g), float(w)
        except ValueError:
            if g != w:
                return False
            continue
        if abs(a - b) > eps and abs(a - b) > eps * abs(b):
            return False
    return True


def load_problem(directory):
    with open(os.path.join(directory, "problem.yaml")) as f:
        spec = yaml.safe_load(f)
    tests_dir = os.path.join(directory, "tests")
    names = sorted({f.rsplit(".", 1)[0] for f in os.listdir(tests_dir) if f.endswith(".in")},
                   key=lambda n: (len(n), n))
    spec["tests"] = [(n, os.path.join(tests_dir, n + ".in"), os.path.join(tests_dir, n + ".ans")) for n in names]
    spec["limits"] = {"cpu_time": parse_duration(spec.get("time_limit", "1s")),
                      "wall_time": parse_duration(spec.get("wall_time_limit", "3s")),
                      "memory": parse_size(spec.get("memory_limit", "256M"))}
    spec["dir"] = directory
    return spec


def checker_for(spec):
    kind = str(spec.get("checker", "tokens")).split()
    if kind[0] == "float":
        eps = float(kind[1]) if len(kind) > 1 else 1e-6
        return lambda out, ans: check_float(out, ans, eps)
    return check_tokens


def judge_one(spec, source, lang):
    summary = {"problem": spec.get("name"), "submission": os.path.basename(source), "language": lang, "tests": []}
    art, compiled = judge.compile(lang, source)
    summary["compile"] = {"status": compiled.status, "cpu_time_s": compiled.cpu_time_s,
                          "message": (compiled.stderr or b"").decode(errors="replace")[-2000:]}
    if art is None:
        summary["verdict"] = "CE" if compiled.status in ("RE", "OK") else SANDBOX_TO_VERDICT.get(compiled.status, "XX")
        return summary
    with art:
        check = checker_for(spec)
        for name, inp, ans in spec["tests"]:
            if spec.get("interactor"):
                interactor = os.path.join(spec["dir"], spec["interactor"])
                sol, it, verdict = judge.interact(
                    art, ["python3.11", "-I", "/box/interactor.py"],
                    interactor_files={"/box/interactor.py": interactor, "/box/secret": inp},
                    solution_limits=spec["limits"],
                    interactor_limits={"wall_time": parse_duration(spec.get("interactor_wall_time_limit", "10s"))})
                r, detail = sol, (it.stderr or b"").decode(errors="replace").strip()
            else:
                r = art.run(stdin=inp, limits=spec["limits"])
                detail = r.message
                if r.status == "OK":
                    with open(ans) as f:
                        verdict = "AC" if check(r.stdout.decode(errors="replace"), f.read()) else "WA"
                else:
                    verdict = SANDBOX_TO_VERDICT.get(r.status, "XX")
            summary["tests"].append({"test": name, "verdict": verdict, "time_s": r.cpu_time_s,
                                     "wall_s": r.wall_time_s, "memory_bytes": r.memory_peak_bytes,
                                     "sandbox_status": r.status, "message": detail,
                                     "syscall": r.syscall["name"] if r.syscall else None})
    summary["verdict"] = next((t["verdict"] for t in summary["tests"] if t["verdict"] != "AC"), "AC")
    return summary


def print_table(summary, out=sys.stdout):
    out.write(f"{summary['submission']} ({summary['language']}) on {summary['problem']}\n")
    if summary["verdict"] == "CE" or not summary["tests"]:
        out.write(f"  compile: {summary['compile']['status']}\n{summary['compile']['message']}\n")
    else:
        out.write(f"  {'test':<6}{'verdict':<9}{'time':>9}{'memory':>11}  details\n")
        for t in summary["tests"]:
            mem = f"{t['memory_bytes'] / 2**20:.1f}M"
            note = f"{t['syscall']} " if t["syscall"] else ""
            out.write(f"  {t['test']:<6}{t['verdict']:<9}{t['time_s']:>8.3f}s{mem:>11}  {note}{t['message'][:70]}\n")
    out.write(f"verdict: {summary['verdict']}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problem")
    ap.add_argument("submission")
    ap.add_argument("--lang", choices=sorted(judge.LANGUAGES))
    ap.add_argument("--json", help="write the summary as JSON here")
    args = ap.parse_args()
    lang = args.lang or EXTENSIONS.get(os.path.splitext(args.submission)[1])
    if lang is None:
        ap.error(f"cannot tell the language of {args.submission}: use --lang")
    try:
        summary = judge_one(load_problem(args.problem), args.submission, lang)
    except SandboxError as e:
        print(f"judge: {e}", file=sys.stderr)
        return 2
    print_table(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0 if summary["verdict"] == "AC" else 1


if __name__ == "__main__":
    sys.exit(main())
