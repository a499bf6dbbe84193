"""A root caller (a judge service under systemd, a container's default user): the program never
runs as the host's uid 0.  Each run claims an unprivileged host id of its own (hostids.py).

These tests call `sandbox` as root on purpose (every other test drops to the unprivileged test
user); CI runs the suite as root, so they run there."""
import json
import os
import subprocess
import tempfile

import pytest

from conftest import SANDBOX, no_traceback

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a root caller's path: needs the suite to run as root "
                                                          "(.ci/run does)")


def _run(*args, env=None, timeout=120):
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "r.json")
        r = subprocess.run([SANDBOX, "run", "--report", report, *args], capture_output=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        no_traceback(r)
        data = json.load(open(report)) if os.path.exists(report) else None
    return r, data


def _outside_uid(uid_map_text):
    inside, outside, count = uid_map_text.split()
    return int(outside)


def test_the_program_runs_as_an_unprivileged_host_id_not_root():
    r, rep = _run("--profile", "shell", "--", "/bin/sh", "-c", "cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    outside = _outside_uid(r.stdout.decode())
    assert outside != 0 and rep["host_ids"] == {"uid": outside, "gid": outside, "claimed": True}, rep["host_ids"]
    assert "root_caller" not in rep["degraded"]
    # the host agrees: no process of that id is left, and the claim was released
    assert subprocess.run(["pgrep", "-u", str(outside)], capture_output=True).returncode == 1


def test_two_concurrent_runs_get_different_ids():
    procs = [subprocess.Popen([SANDBOX, "run", "--profile", "shell", "--", "/bin/sh", "-c",
                               "cat /proc/self/uid_map; read _ < /dev/stdin"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    try:
        # Each has printed its map while all three are still running (each waits on its stdin).
        ids = [_outside_uid(p.stdout.readline().decode()) for p in procs]
    finally:
        for p in procs:
            p.communicate(b"go\n", timeout=60)
    assert len(set(ids)) == 3 and 0 not in ids, ids


def test_the_process_limit_holds_for_a_root_caller():
    """The kernel does not apply RLIMIT_NPROC to uid 0: it does to the run's own id."""
    r, rep = _run("--profile", "shell", "--processes", "4", "--wall-time", "20s", "--", "/bin/sh", "-c",
                  "for i in $(seq 30); do sleep 3 & done; wait")
    assert rep["processes_peak"] <= 4, rep
    assert rep["status"] == "RE" and "processes limit 4" in rep["message"], rep


def test_root_owned_host_files_stay_out_of_reach():
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        public = os.path.join(d, "public")
        secret = os.path.join(d, "secret")
        for path, mode in ((public, 0o644), (secret, 0o600)):
            with open(path, "w") as f:
                f.write("root's\n")
            os.chmod(path, mode)
        script = ("echo pwned > /rw/public; echo new > /rw/new; echo pwned > /ro/public; cat /rw/secret; "
                  "echo done")
        r, rep = _run("--profile", "shell", "--bind", f"{d}:/rw:rw", "--bind", f"{d}:/ro", "--",
                      "/bin/sh", "-c", script)
        err = r.stderr.decode()
        assert open(public).read() == "root's\n" and sorted(os.listdir(d)) == ["public", "secret"], err
        assert err.count("Permission denied") == 3 and "Read-only file system" in err, err
        assert b"root's" not in r.stdout


def test_files_written_to_rw_binds_belong_to_the_runs_id():
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o1777)          # a drop directory the run's id may write (README: reading results back)
        r, rep = _run("--profile", "shell", "--bind", f"{d}:/out:rw", "--", "/bin/sh", "-c", "echo 42 > /out/result")
        assert r.returncode == 0, r.stderr
        st = os.stat(os.path.join(d, "result"))
        assert st.st_uid == rep["host_ids"]["uid"] != 0 and st.st_gid == rep["host_ids"]["gid"]


def test_the_api_and_files_in_and_out_work_for_a_root_caller():
    import sandbox
    r = sandbox.run("py311", ["python3.11", "-c", "open('out.txt','w').write(open('in.txt').read().upper())"],
                    files_in={"/box/in.txt": b"hello"}, files_out=["out.txt"])
    assert r.status == "OK", (r.message, r.stderr)
    assert r.files == {"out.txt": b"HELLO"} and r.host_ids["claimed"] and r.host_ids["uid"] != 0


def test_an_exhausted_or_bad_id_range_is_a_clear_error():
    r, _ = _run("--profile", "shell", "--", "/bin/true", env={"SANDBOX_HOST_IDS": "nonsense"})
    assert r.returncode == 125 and b"SANDBOX_HOST_IDS" in r.stderr and b"fix:" in r.stderr, r.stderr
    holder = subprocess.Popen([SANDBOX, "run", "--profile", "shell", "--", "/bin/sh", "-c", "echo up; read _"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "SANDBOX_HOST_IDS": "61234-61234"})
    try:
        assert holder.stdout.readline() == b"up\n"
        r, _ = _run("--profile", "shell", "--", "/bin/true", env={"SANDBOX_HOST_IDS": "61234-61234"})
        assert r.returncode == 125 and b"in use" in r.stderr and b"fix:" in r.stderr, r.stderr
    finally:
        holder.communicate(b"\n", timeout=60)
    # released with the run: the id is free again
    r, rep = _run("--profile", "shell", "--", "/bin/true", env={"SANDBOX_HOST_IDS": "61234-61234"})
    assert r.returncode == 0 and rep["host_ids"]["uid"] == 61234


def test_explain_shows_the_claimed_id_and_the_step_that_takes_it():
    r = subprocess.run([SANDBOX, "run", "--profile", "shell", "--explain", "--", "/bin/true"], capture_output=True)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "unprivileged host id claimed per run" in out and "sandbox_ids" in out
    assert out.index("mount_namespace") < out.index("sandbox_ids") < out.index("root_tmpfs")


def test_an_image_root_works_for_a_root_caller(tmp_path):
    """Both overlay backends: kernel overlayfs and fuse-overlayfs (whose daemon takes the run's id too)."""
    import imagekit
    os.chmod(tmp_path, 0o755)
    env = {"SANDBOX_STORE": str(tmp_path / "store")}
    tar = str(tmp_path / "img.tar")
    imagekit.docker_save(tar, [imagekit.busybox_layer()])
    r = subprocess.run([SANDBOX, "image", "import", "tiny", tar], capture_output=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    for backend in ("kernel", "fuse"):
        profile = tmp_path / f"p-{backend}.yaml"
        profile.write_text(f"extends: shell\nrootfs: {{image: tiny, overlay: {backend}, binds: []}}\n")
        r, rep = _run("--profile", str(profile), "--", "/bin/sh", "-c", "echo x > /made && cat /made /proc/self/uid_map",
                      env=env)
        assert r.returncode == 0, (backend, r.stderr)
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "x" and _outside_uid(lines[1]) != 0 and rep["rootfs"]["backend"].startswith(backend), (backend, lines)


def test_kept_changes_of_a_root_callers_image_run(tmp_path):
    """The kept layer belongs to the run's id; the image's files (root's on the host) are nobody's
    inside, so the program writes where the image lets anyone write, and in its own new paths."""
    import imagekit
    os.chmod(tmp_path, 0o755)
    env = {"SANDBOX_STORE": str(tmp_path / "store")}
    imagekit.docker_save(str(tmp_path / "img.tar"), [imagekit.busybox_layer()])
    assert subprocess.run([SANDBOX, "image", "import", "tiny", str(tmp_path / "img.tar")], capture_output=True,
                          env={**os.environ, **env}).returncode == 0
    for backend in ("kernel", "fuse"):
        profile = tmp_path / f"p-{backend}.yaml"
        profile.write_text(f"extends: shell\nrootfs: {{image: tiny, overlay: {backend}, binds: []}}\n")
        keep = tmp_path / f"keep-{backend}"
        r, rep = _run("--profile", str(profile), "--keep-changes", str(keep), "--", "/bin/sh", "-c",
                      "mkdir /data && echo kept > /data/new && ! echo x 2>/dev/null > /etc/new", env=env)
        assert r.returncode == 0, (backend, r.stderr)
        d = subprocess.run([SANDBOX, "diff", str(keep)], capture_output=True, env={**os.environ, **env})
        assert d.returncode == 0 and b"A /data/new" in d.stdout, (backend, d)
        assert (keep / "upper" / "data" / "new").stat().st_uid == rep["host_ids"]["uid"] != 0
        # The image's own files are root's on the host: inside they belong to nobody (README).
