"""The Python API, called the way a judge or a web service calls it: in-process, from threads."""
import json
import sys


def api(user, code):
    """Run Python code using the sandbox API as the test user; it prints one JSON line."""
    r = user.run([sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout.decode().splitlines()[-1])


def test_run_captures_output_and_feeds_stdin(user, sbx):
    script = sbx.script("echo.py", "import sys\nprint(sys.stdin.read().upper(), end='')\nprint('err', file=sys.stderr)\n")
    out = api(user, f"""
import json, sandbox
r = sandbox.run("py311", script={script!r}, stdin=b"abc\\n", limits={{"cpu_time": "1s"}})
print(json.dumps({{"status": r.status, "stdout": r.stdout.decode(), "stderr": r.stderr.decode(),
                  "cpu": r.limits["cpu_time"]["value"], "keys": sorted(r.to_dict())}}))
""")
    assert out["status"] == "OK" and out["stdout"] == "ABC\n" and out["stderr"] == "err\n"
    assert out["cpu"] == 1.0
    assert {"status", "cpu_time_s", "memory_peak_bytes", "degraded", "limits"} <= set(out["keys"])


def test_concurrent_runs_from_threads(user):
    """Eight threads, each running sandboxes while the others do too."""
    out = api(user, """
import json, threading, sandbox
results = {}
def work(i):
    r = sandbox.run("shell", ["sh", "-c", f"echo {i}; exit {i}"])
    results[i] = (r.status, r.exit_code, r.stdout.decode())
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(results))
""")
    for i in range(8):
        status, code, text = out[str(i)]
        assert code == i and text == f"{i}\n" and status == ("OK" if i == 0 else "RE")


def test_bad_input_raises_sandbox_errors_with_where_and_fix(user):
    out = api(user, """
import json, sandbox
try:
    sandbox.run("py31", ["true"])
except sandbox.ProfileError as e:
    print(json.dumps({"where": e.where, "what": e.what, "fix": e.fix, "code": e.exit_code}))
""")
    assert out["where"] == "--profile" and "py311" in out["fix"] and out["code"] == 125


def test_unknown_limit_key_in_the_api_is_a_profile_error(user):
    out = api(user, """
import json, sandbox
try:
    sandbox.run("shell", ["true"], limits={"memroy": "1G"})
except sandbox.ProfileError as e:
    print(json.dumps({"where": e.where, "what": e.what, "fix": e.fix, "code": e.exit_code}))
""")
    assert out["where"] == "limits.memroy" and out["what"] == "unknown key 'memroy'"
    assert out["fix"] == "did you mean 'memory'?" and out["code"] == 125


def test_setup_failure_is_a_result_with_status_xx(user):
    out = api(user, """
import json, sandbox
r = sandbox.run("shell", ["/no/such/program"])
print(json.dumps({"status": r.status, "message": r.message, "exit": r.exit_status}))
""")
    assert out["status"] == "XX" and out["exit"] == 127 and "step 'exec' failed" in out["message"]


def test_prepared_plan_runs_many_times(user):
    """A judge prepares once and runs many test cases."""
    out = api(user, """
import json, sandbox
plan = sandbox.prepare("shell", ["cat"])
print(json.dumps([sandbox.execute(plan, stdin=s.encode()).stdout.decode() for s in ("a", "b", "c")]))
""")
    assert out == ["a", "b", "c"]
