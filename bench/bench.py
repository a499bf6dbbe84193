#!/usr/bin/env python3
"""Start-up cost of `sandbox run` against bubblewrap and no sandbox, side by side.

Every command is run N times, round-robin (so a slow moment of the machine hits
all of them alike), each as a fresh process, timed from spawn to reap.  Medians
and ratios are printed.  Run it as an unprivileged user, or as root with
--user NAME: it then becomes NAME itself, once, before anything runs (a setpriv in front
of every command would add its own start-up to bubblewrap's run too, and flatter the ratios).

    python3 bench/bench.py [--runs 200] [--user sandbox-test] [--sandbox PATH] [--json FILE]

Rows:
  /bin/true and python3 -c pass, each (a) directly, (b) under bubblewrap with a judge
  setup, (c) under `sandbox run`;
  and, to read the ratios: the Python interpreter alone (what any Python CLI pays
  before its first line runs), and sandbox.execute of a prepared plan in a warm process
  (the launcher and supervision alone: what no front end of `sandbox run` can go below).
"""
import argparse
import io
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

BWRAP_JUDGE = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
               "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--new-session", "--cap-drop", "ALL"]


NO_BPF_CACHE = {"SANDBOX_NO_BPF_CACHE": "1", "SANDBOX_NO_PLAN_CACHE": "1"}   # a kept plan holds its filter


def busybox_image(sandbox, env):
    """A one-layer busybox image in a temporary store, imported as the bench user.
    Returns (store, profile for the kernel backend, profile for fuse or None)."""
    tmp = tempfile.mkdtemp(prefix="sandbox-bench-")
    os.chmod(tmp, 0o755)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar, open("/bin/busybox", "rb") as bb:
        data = bb.read()
        for d in ("bin", "tmp", "box", "proc", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("true", "sh"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    with open(f"{tmp}/bb.tar", "wb") as f:
        f.write(buf.getvalue())
    profiles = []
    for backend in ("kernel", "fuse"):
        with open(f"{tmp}/{backend}.yaml", "w") as f:
            json.dump({"extends": "native", "rootfs": {"image": "bench-bb", "binds": [], "overlay": backend},
                       "env": {"PATH": "/bin"}}, f)
        profiles.append(f"{tmp}/{backend}.yaml")
    for path in os.listdir(tmp):
        os.chmod(f"{tmp}/{path}", 0o644)
    store_env = dict(env, SANDBOX_STORE=f"{tmp}/store")
    subprocess.run([sandbox, "image", "import", "bench-bb", f"{tmp}/bb.tar"], env=store_env, check=True,
                   capture_output=True)
    fuse_ok = os.access("/dev/fuse", os.R_OK | os.W_OK)
    return tmp, f"{tmp}/store", profiles[0], profiles[1] if fuse_ok and shutil.which("fuse-overlayfs") else None


def commands(sandbox, python, image=None):
    """(name, argv, extra environment)"""
    sbx = [sandbox, "run", "--profile", "native", "--"]
    extra = []
    if image:
        _, store, kernel, fuse = image
        # plans built every run in all three: a plan with an image root is never kept (plancache.py)
        extra.append(("root: host binds", sbx + ["/bin/true"], {"SANDBOX_NO_PLAN_CACHE": "1"}))
        extra.append(("root: image, kernel overlayfs", [sandbox, "run", "--profile", kernel, "--", "/bin/true"],
                      {"SANDBOX_STORE": store}))
        if fuse:
            extra.append(("root: image, fuse-overlayfs", [sandbox, "run", "--profile", fuse, "--", "/bin/true"],
                          {"SANDBOX_STORE": store}))
    return extra + [
        ("true: direct", ["/bin/true"], {}),
        ("true: bwrap", BWRAP_JUDGE + ["/bin/true"], {}),
        ("true: sandbox run", sbx + ["/bin/true"], {}),
        ("python3 -c pass: direct", ["/usr/bin/python3", "-c", "pass"], {}),
        ("python3 -c pass: bwrap", BWRAP_JUDGE + ["/usr/bin/python3", "-c", "pass"], {}),
        ("python3 -c pass: sandbox run", sbx + ["/usr/bin/python3", "-c", "pass"], {}),
        ("true: sandbox run, plan built every run", sbx + ["/bin/true"], {"SANDBOX_NO_PLAN_CACHE": "1"}),
        ("seccomp: none", [sandbox, "run", "--profile", "native", "--seccomp", "none", "--", "/bin/true"], {}),
        ("seccomp: default, BPF cached", sbx + ["/bin/true"], {}),
        ("seccomp: default, compiled every run", sbx + ["/bin/true"], NO_BPF_CACHE),
        ("floor: /usr/bin/python3 -I -S -c pass", ["/usr/bin/python3", "-I", "-S", "-c", "pass"], {}),
        ("floor: sandbox's python -c pass", [python, "-c", "pass"], {}),
    ]


def interpreter(script):
    """The Python that runs `script` (its #! line: a venv's python, whose site-packages and .pth
    files are part of the floor), else the python3 beside it."""
    with open(script, "rb") as f:
        first = f.readline()
    if first.startswith(b"#!"):
        argv = first[2:].decode().split()
        if argv and os.path.basename(argv[0]).startswith("python"):
            return argv[0]
    return os.path.join(os.path.dirname(os.path.realpath(script)), "python3")


WARM_NAME = "warm: sandbox.execute"
# In the sandbox's own interpreter: one plan prepared, then executed once per line read;
# each line answered with the seconds execute() took and the run's status.
WARM_API = """
import sys, time
import sandbox
plan = sandbox.prepare("native", ["/bin/true"])
for line in sys.stdin:
    t = time.perf_counter()
    result = sandbox.execute(plan)
    print(time.perf_counter() - t, 0 if result.status == "OK" else 1, flush=True)
"""


def spawn(name, argv, env, actions, warm):
    """(exit status, seconds) of one run: a fresh process from spawn to reap, or one
    execute() in the warm process."""
    if name == WARM_NAME:
        warm.stdin.write("\n")
        seconds, status = warm.stdout.readline().split()
        return int(status), float(seconds)
    t = time.perf_counter()
    _, status = os.waitpid(os.posix_spawn(argv[0], argv, env, file_actions=actions), 0)
    return status, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--user", help="as root: become this user before anything runs (needed then)")
    ap.add_argument("--sandbox", default=shutil.which("sandbox") or os.path.join(os.path.dirname(sys.executable), "sandbox"))
    ap.add_argument("--json", help="also write the medians here")
    args = ap.parse_args()

    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/tmp")}
    if os.geteuid() == 0:
        if not args.user:
            sys.exit("bench: run as an unprivileged user, or as root with --user NAME")
        pw = pwd.getpwnam(args.user)
        os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
        env["HOME"] = pw.pw_dir if os.path.isdir(pw.pw_dir) else "/tmp"
    if not os.access(".", os.R_OK | os.X_OK):
        os.chdir("/tmp")            # (root's /root, once we are the user)
    if not shutil.which("bwrap"):
        sys.exit("bench: bubblewrap is needed for the comparison (apt install bubblewrap)")
    python = interpreter(args.sandbox)
    image = busybox_image(args.sandbox, env)
    cmds = [(name, [shutil.which(argv[0]) or argv[0]] + argv[1:], dict(env, **extra))
            for name, argv, extra in commands(args.sandbox, python, image)]
    warm = subprocess.Popen([python, "-c", WARM_API], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    cmds.append((WARM_NAME, None, None))
    times = {name: [] for name, _, _ in cmds}
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    for name, argv, cmd_env in cmds:              # warm-up: page cache, the profile and BPF caches
        for _ in range(6):
            status = spawn(name, argv, cmd_env, actions, warm)[0]
        if status != 0:
            sys.exit(f"bench: {name} fails: {' '.join(argv or ['sandbox.execute'])} (status {status})")
    for _ in range(args.runs):
        for name, argv, cmd_env in cmds:
            times[name].append(spawn(name, argv, cmd_env, actions, warm)[1])
    warm.stdin.close()
    warm.wait()
    med = {name: statistics.median(v) * 1000 for name, v in times.items()}
    print(f"{args.runs} runs each, round-robin, medians in ms, as {pwd.getpwuid(os.getuid()).pw_name}:\n")
    print(f"{'workload':<16}{'direct':>10}{'bwrap':>10}{'sandbox':>10}{'sandbox/bwrap':>16}{'sandbox-bwrap':>16}")
    for workload in ("true", "python3 -c pass"):
        d, b, s = (med[f"{workload}: {k}"] for k in ("direct", "bwrap", "sandbox run"))
        print(f"{workload:<16}{d:>10.2f}{b:>10.2f}{s:>10.2f}{s / b:>15.2f}x{s - b:>13.2f} ms")
    print("\nseccomp (sandbox run /bin/true):")
    base = med["seccomp: none"]
    for name in ("seccomp: none", "seccomp: default, BPF cached"):
        print(f"  {name[9:]:<28}{med[name]:8.2f} ms  {med[name] - base:+7.2f} ms")
    built = med["true: sandbox run, plan built every run"]      # compiling happens where a plan is built
    name = "seccomp: default, compiled every run"
    print(f"  {name[9:]:<28}{med[name]:8.2f} ms  {med[name] - built:+7.2f} ms (against a plan built every run)")
    print("\nroot filesystem (sandbox run /bin/true, plans built every run: an image root's is never kept):")
    base = med["root: host binds"]
    for name in [n for n in med if n.startswith("root: ")]:
        print(f"  {name[6:]:<28}{med[name]:8.2f} ms  {med[name] - base:+7.2f} ms")
    shutil.rmtree(image[0], ignore_errors=True)
    floor = med["floor: sandbox's python -c pass"]
    print("\nthe interpreter alone (any Python CLI pays this before its first line):")
    print(f"  /usr/bin/python3 -I -S -c pass  {med['floor: /usr/bin/python3 -I -S -c pass']:7.2f} ms "
          f"= {med['floor: /usr/bin/python3 -I -S -c pass'] / med['true: bwrap']:.2f}x bwrap")
    print(f"  sandbox's python -c pass        {floor:7.2f} ms = {floor / med['true: bwrap']:.2f}x bwrap")
    warm = med[WARM_NAME]
    print(f"  sandbox.execute, prepared plan, warm process {warm:7.2f} ms = {warm / med['true: bwrap']:.2f}x bwrap "
          "(the launcher and supervision alone)")
    for name, label in (("true: sandbox run", "plan kept from an earlier run"),
                        ("true: sandbox run, plan built every run", "plan built every run (SANDBOX_NO_PLAN_CACHE=1)")):
        own = med[name] - floor
        print(f"  sandbox run /bin/true above that floor, {label}: {own:.2f} ms "
              f"({own / med['true: bwrap']:.2f}x bwrap; {own - warm:.2f} ms more than the warm execute)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "median_ms": med}, f, indent=2)


if __name__ == "__main__":
    main()
