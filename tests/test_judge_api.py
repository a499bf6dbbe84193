"""The judge API in-process: compile once and run many, files in and out with per-file
errors, interactive pairs that cannot deadlock, a clear error for a missing compiler."""
import json
import sys


def api(user, code, timeout=180):
    r = user.run([sys.executable, "-c", code], timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout.decode().splitlines()[-1])


def test_compile_once_run_many(user):
    out = api(user, """
import json
from sandbox import judge
art, res = judge.compile("c", b'#include <stdio.h>\\nint main(){int a,b;scanf("%d %d",&a,&b);printf("%d\\\\n",a*b);}')
outs = [art.run(stdin=s).stdout.decode() for s in (b"2 3", b"4 5", b"6 7")]
print(json.dumps({"compile": res.status, "outs": outs, "plans": len(art._plans)}))
art.close()
""")
    assert out == {"compile": "OK", "outs": ["6\n", "20\n", "42\n"], "plans": 1}


def test_compile_error_gives_no_artifact_and_the_messages(user):
    out = api(user, """
import json
from sandbox import judge
art, res = judge.compile("cpp", b"int main() { return 0 }")
print(json.dumps({"art": art is None, "status": res.status, "err": res.stderr.decode()}))
""")
    assert out["art"] and out["status"] == "RE" and "expected" in out["err"]


def test_files_in_and_out_with_per_file_errors(user):
    out = api(user, """
import json, sandbox
r = sandbox.run("shell", ["sh", "-c",
    "cat /box/in.txt > /box/copy.txt; ln -s /etc/passwd /box/link; mkdir /box/dir; head -c 3000 /dev/zero > /box/big"],
    files_in={"/box/in.txt": b"hello"},
    files_out=["/box/copy.txt", "/box/link", "/box/dir", "/box/big", "/box/missing", "/etc/passwd"],
    files_out_max=1000)
print(json.dumps({"status": r.status, "files": {k: v.decode() for k, v in r.files.items()},
                  "errors": {e["name"]: e["error"] for e in r.file_errors}}))
""")
    assert out["status"] == "OK"
    assert out["files"] == {"/box/copy.txt": "hello"}
    errors = out["errors"]
    assert "symlink is never followed" in errors["/box/link"]
    assert errors["/box/dir"] == "not a regular file"
    assert "more than the cap of 1000" in errors["/box/big"]
    assert errors["/box/missing"] == "the run did not leave this file"
    assert "only files under the working directory" in errors["/etc/passwd"]


def test_interactive_pair_with_full_pipes_does_not_deadlock(user):
    """Both sides write megabytes and never read: the judge returns at the solution's
    wall limit with TLE, and the interactor's report is there too."""
    out = api(user, """
import json
from sandbox import judge
art, _ = judge.compile("py", b"import sys\\nsys.stdout.write('x' * (8 << 20)); sys.stdout.flush()\\ninput()")
sol, it, verdict = judge.interact(art, ["python3", "-c", "import sys; sys.stdout.write('y' * (8 << 20)); input()"],
                                  solution_limits={"wall_time": "2s", "output": "64M"},
                                  interactor_limits={"wall_time": "10s", "output": "64M"})
print(json.dumps({"verdict": verdict, "sol": sol.status, "limit": sol.limit_hit, "it": it.status,
                  "it_message": it.message, "it_limit": it.limit_hit}))
art.close()
""")
    assert out["verdict"] == "TLE" and out["sol"] == "TLE" and out["limit"] == "wall_time", out
    # the judge stopped the interactor right after the solution's end, not at its own (longer) wall limit
    assert out["it_message"] == "stopped by the caller (cancelled)" and out["it_limit"] is None, out


def test_missing_compiler_names_the_package(user, sbx):
    profile = sbx.script("cc.yaml", "extends: c-compile\nscript: {interpreter: [gcc-99, -o, main, '{script}']}\n")
    out = api(user, f"""
import json
from sandbox import judge, SandboxError
lang = judge.Language("c99", {profile!r}, "c-run", "main.c", "main", ["/box/main"])
try:
    judge.compile(lang, b"int main(){{}}")
except SandboxError as e:
    print(json.dumps({{"what": e.what, "where": e.where, "fix": e.fix}}))
""")
    assert "interpreter gcc-99 is not present on this host" in out["what"]
    assert out["where"] == "cc.yaml: script.interpreter" and "apt install gcc-99" in out["fix"]


def test_a_bad_interactor_profile_leaks_no_descriptor(tmp_path, monkeypatch):
    """Bug 6: the interactor's profile is loaded before the pairs' pipes exist; an error
    there leaves every descriptor as it was (in-process: nothing is run)."""
    import os
    import pytest
    from sandbox import ProfileError, judge
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad = tmp_path / "interactor.yaml"
    bad.write_text("extends: py311\nhostnme: x\n")
    art = judge.Artifact(judge.language("py"), b"print(1)\n")
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        with pytest.raises(ProfileError, match="hostnme"):
            judge.interact(art, ["python3", "-c", "pass"], interactor_profile=str(bad))
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        art.close()
