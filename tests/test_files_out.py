"""files_out's working directory is a tmpfs of the run: capped like the profile's tmpfs there,
read back through a directory descriptor, and gone afterwards, whatever the program did to it."""
import glob
import json
import os
import sys

MiB = 1 << 20


def api(user, code, timeout=180):
    r = user.run([sys.executable, "-c", code], timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout.decode().splitlines()[-1])


def leftovers(marker):
    """Files named `marker` in host working directories (the old design's, on /dev/shm); we are
    root, so mode-000 directories are searched too, and other runs' directories do not count."""
    found = []
    for top in glob.glob("/dev/shm/sandbox-work-*") + glob.glob("/tmp/sandbox-work-*"):
        for dirpath, dirnames, filenames in os.walk(top):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if marker in n]
    return found


RUN = """
import json, sandbox
r = sandbox.run("shell", ["sh", "-c", {script!r}], files_in={{"/box/in.txt": b"hello"}},
                files_out={names!r}, limits={{"file_size": "1G"}})
print(json.dumps({{"status": r.status, "message": r.message, "stdout": r.stdout.decode(),
                  "files": {{k: len(v) for k, v in r.files.items()}},
                  "errors": {{e["name"]: e["error"] for e in r.file_errors}}}}))
"""


def run(user, script, names):
    return api(user, RUN.format(script=script, names=names))


def test_the_working_directory_is_capped_like_the_profiles_tmpfs(user):
    """160 MiB written where the profile's /box is 64M: the write fails inside, the verdict is the
    program's, and the file read back is what the tmpfs held."""
    out = run(user, "head -c 167772160 /dev/zero > /box/big-6c1d; echo rc=$?; cat /box/in.txt", ["/box/big-6c1d"])
    assert out["status"] == "OK" and out["stdout"].startswith("rc=1\n"), out    # ENOSPC for head
    assert out["stdout"].endswith("hello"), out                                 # files_in was copied in
    assert 60 * MiB < out["files"]["/box/big-6c1d"] <= 64 * MiB, out
    assert leftovers("big-6c1d") == []


def test_a_mode_000_subdirectory_leaves_nothing_behind(user):
    out = run(user, "mkdir -p /box/d/e && echo x > /box/d/e/f-93a7 && chmod 000 /box/d/e /box/d", ["/box/d/e/f-93a7"])
    assert out["status"] == "OK", out
    assert "not a directory of the run" in out["errors"]["/box/d/e/f-93a7"], out
    assert leftovers("f-93a7") == []


def test_chmod_000_of_the_working_directory_gives_per_file_errors(user):
    out = run(user, "echo x > /box/a; chmod 000 /box", ["/box/a", "/box/b"])
    assert out["status"] == "OK" and out["files"] == {}, out
    assert "Permission denied" in out["errors"]["/box/a"], out
    assert "Permission denied" in out["errors"]["/box/b"], out


def test_files_in_the_working_directory_are_writable_copies(user):
    """The program may rewrite its input in place (a bind would be read-only), and the read-back
    sees what it wrote."""
    out = run(user, "echo changed > /box/in.txt", ["/box/in.txt"])
    assert out["status"] == "OK" and out["files"] == {"/box/in.txt": len("changed\n")}, out


def test_a_working_directory_not_in_the_profile_gets_a_capped_tmpfs(user):
    out = api(user, """
import json, sandbox
r = sandbox.run("shell", ["sh", "-c", "echo hi > /work/o; head -c 100000000 /dev/zero > /work/big; echo $?"],
                cwd="/work", files_out=["/work/o"], limits={"file_size": "1G"})
print(json.dumps({"status": r.status, "stdout": r.stdout.decode(), "files": {k: v.decode() for k, v in r.files.items()}}))
""")
    assert out == {"status": "OK", "stdout": "1\n", "files": {"/work/o": "hi\n"}}, out
