"""`user: {map: subordinate}`: inside 0 is the caller and 1-65535 its /etc/subuid and /etc/subgid
ranges (mapped by newuidmap/newgidmap), so software that needs several users works; uid 0
inside keeps only the file-ownership capabilities, over its own namespace.

The test user has the range 100000-165535 (.ci/run adds it, for mmdebstrap too)."""
import os

from conftest import SANDBOX, no_traceback


def _profile(sbx, extra=""):
    return sbx.script("sub.yaml", f"extends: shell\nuser: {{map: subordinate, uid: 0, gid: 0}}\n{extra}")


def _range(user):
    with open("/etc/subuid") as f:
        for line in f:
            name, start, count = line.strip().split(":")
            if name == user.name:
                return int(start), int(count)
    raise AssertionError(f"{user.name} has no line in /etc/subuid: .ci/run adds one")


def test_several_ids_are_mapped_and_uid_0_can_chown(sbx, user):
    start, _ = _range(user)
    r, rep = sbx.run("run", "--profile", _profile(sbx), "--", "/bin/sh", "-c",
                     "cat /proc/self/uid_map; touch /tmp/f && chown 1234:1234 /tmp/f && stat -c '%u %g' /tmp/f")
    assert rep["status"] == "OK", (r.stderr, rep)
    lines = [line.split() for line in r.stdout.decode().splitlines()]
    assert lines[0] == ["0", str(user.uid), "1"] and lines[1] == ["1", str(start), "65535"], lines
    assert lines[2] == ["1234", "1234"]


def test_files_of_another_inside_user_belong_to_a_subordinate_id_outside(sbx, user, box):
    start, _ = _range(user)
    os.chmod(box, 0o777)
    r, rep = sbx.run("run", "--profile", _profile(sbx), "--bind", f"{box}:/out:rw", "--", "/bin/sh", "-c",
                     "echo mine > /out/mine && echo theirs > /out/theirs && chown 1000:1000 /out/theirs")
    assert rep["status"] == "OK", (r.stderr, rep)
    assert os.stat(os.path.join(box, "mine")).st_uid == user.uid           # uid 0 inside is the caller
    assert os.stat(os.path.join(box, "theirs")).st_uid == start + 999       # uid 1000 inside: the range's 1000th


def test_uid_0_keeps_only_the_ownership_capabilities_and_another_uid_none(sbx):
    code = ("import os\n"
            "def eff(): return [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
            "print(eff(), flush=True)\n"
            "try:\n    os.mkdir('/tmp/m'); os.system('mount -t tmpfs none /tmp/m 2>/dev/null || echo no-mount')\n"
            "except OSError as e: print(e)\n"
            "os.setgid(1000); os.setuid(1000)\n"
            "print(eff(), os.getuid())\n")
    r, rep = sbx.run("run", "--profile", _profile(sbx, "seccomp: none\n"), "--", "python3", "-c", code)
    assert rep["status"] == "OK", (r.stderr, rep)
    lines = r.stdout.decode().split()
    assert lines[0] == "00000000000000ff", lines        # chown ... setuid, nothing more
    assert "no-mount" in lines                          # no CAP_SYS_ADMIN
    assert lines[-2:] == ["0000000000000000", "1000"], lines   # a change of uid drops them, as setuid programs expect


def test_a_profile_uid_inside_the_range_runs_without_capabilities(sbx, user):
    start, _ = _range(user)
    p = sbx.script("sub1000.yaml", "extends: shell\nuser: {map: subordinate}\n")    # shell's uid 1000
    r, rep = sbx.run("run", "--profile", p, "--", "/bin/sh", "-c",
                     "id -u; grep CapEff /proc/self/status; awk '{print $2}' /proc/self/uid_map | tail -1")
    assert rep["status"] == "OK", (r.stderr, rep)
    out = r.stdout.decode().split()
    assert out[0] == "1000" and out[2] == "0000000000000000" and out[3] == str(start), out


def test_without_a_range_the_error_says_which_line_to_add(sbx, user):
    """uid 0 of a user namespace of the test's own is `root`, which has no range in /etc/subuid."""
    p = _profile(sbx)
    r = user.run(["unshare", "--user", "--map-root-user", SANDBOX, "run", "--profile", p, "--", "/bin/true"])
    err = no_traceback(r)
    assert r.returncode == 125, err
    assert "user.map" in err and "no subordinate range in /etc/subuid" in err and "usermod --add-subuids" in err, err


def test_explain_shows_the_maps_and_the_kept_capabilities(sbx, user):
    start, _ = _range(user)
    r = sbx("run", "--profile", _profile(sbx), "--explain", "--", "/bin/true")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert f"uid map: 0 {user.uid} 1 1 {start} 65535" in out and "capabilities kept by uid 0: 0xff" in out, out
    assert out.index("user_namespace") < out.index("sandbox_ids") < out.index("root_tmpfs")
    # and check agrees: the same plan
    r = sbx("check", _profile(sbx))
    assert r.returncode == 0, r.stderr


def test_an_image_root_with_subordinate_ids_lets_root_inside_own_its_files(sbx, user, box):
    """The image's files (unpacked as the caller) are root's inside: root may change them (in the
    throw-away layer) and give them to other users, with both overlay backends."""
    import imagekit
    tar = os.path.join(box, "img.tar")
    imagekit.docker_save(tar, [imagekit.busybox_layer()])
    os.chmod(tar, 0o644)
    env = {"SANDBOX_STORE": os.path.join(box, "store")}
    r = sbx("image", "import", "tiny", tar, env=env)
    assert r.returncode == 0, r.stderr
    for backend in ("kernel", "fuse"):
        p = sbx.script(f"img-{backend}.yaml", "extends: shell\nuser: {map: subordinate, uid: 0, gid: 0}\n"
                                              f"rootfs: {{image: tiny, binds: [], overlay: {backend}}}\n")
        r, rep = sbx.run("run", "--profile", p, "--", "/bin/sh", "-c",
                         "echo x > /etc/new && chown 1234:1234 /etc/new && stat -c '%u %g' /etc/new /etc/motd", env=env)
        assert rep["status"] == "OK", (backend, r.stderr, rep)
        assert r.stdout.decode().split("\n")[:2] == ["1234 1234", "0 0"], (backend, r.stdout)
