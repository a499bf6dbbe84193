"""Guest side of the cgroup tests: run as root inside the vmlane guest.

    vm_guest.py SANDBOX USER  ->  one JSON object on stdout: scenario -> facts

Each scenario runs `sandbox run` as USER (unprivileged) in a fresh cgroup
"scope" delegated to USER the way systemd's Delegate=yes does it (directory
and cgroup.procs, cgroup.threads, cgroup.subtree_control chowned; the parent
has the controllers enabled), and records the JSON report plus what the guest
root can observe from outside (leftover processes, leftover cgroups).  The host
side (test_cgroup.py) asserts on the facts.
"""
import json
import os
import pwd
import signal
import subprocess
import sys
import time

CG = "/sys/fs/cgroup"
SLICE = f"{CG}/lane.slice"
SANDBOX, USER = sys.argv[1], sys.argv[2]
PW = pwd.getpwnam(USER)
SCRATCH = "/var/tmp/lane"
_scopes = iter(range(1, 1000))


def write(path, value):
    with open(path, "w") as f:
        f.write(value)


def read(path):
    with open(path) as f:
        return f.read()


def setup():
    write(f"{CG}/cgroup.subtree_control", "+memory +pids +cpu +cpuset")
    os.makedirs(SLICE, exist_ok=True)
    write(f"{SLICE}/cgroup.subtree_control", "+memory +pids +cpu +cpuset")
    os.makedirs(SCRATCH, mode=0o755, exist_ok=True)
    os.chown(SCRATCH, PW.pw_uid, PW.pw_gid)


def scope():
    """A fresh cgroup delegated to USER, as `systemd-run --user --scope -p Delegate=yes` makes."""
    path = f"{SLICE}/scope-{next(_scopes)}"
    os.mkdir(path)
    for name in ("", "/cgroup.procs", "/cgroup.threads", "/cgroup.subtree_control"):
        os.chown(path + name, PW.pw_uid, PW.pw_gid)
    return path


def as_user(argv, cgroup, **kw):
    """Start argv as USER with no capabilities, placed in `cgroup` (None: stay in the root cgroup)."""
    def child():
        if cgroup:
            write(f"{cgroup}/cgroup.procs", "0")
        os.setgroups([])
        os.setgid(PW.pw_gid)
        os.setuid(PW.pw_uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": SCRATCH, "LANG": "C.UTF-8"}
    return subprocess.Popen(argv, preexec_fn=child, env=env, cwd=SCRATCH, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


# Runs argv with clone3 answering ENOSYS (a seccomp filter, inherited by the launcher): what a
# kernel before 5.7, or a container runtime's seccomp profile, answers.
NO_CLONE3 = r"""
import ctypes, os, struct, sys
def insn(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
bpf = (insn(0x20, 4) + insn(0x15, 0xC000003E, 0, 3) + insn(0x20, 0) + insn(0x15, 435, 0, 1)
       + insn(0x06, 0x00050000 | 38) + insn(0x06, 0x7FFF0000))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.byref(Fprog(len(bpf) // 8, bpf)), 0, 0) == 0
os.execv(sys.argv[1], sys.argv[1:])
"""
WITHOUT_CLONE3 = ["/usr/bin/python3", "-c", NO_CLONE3]


def sandbox(args, cgroup, timeout=120, as_root=False, wrap=()):
    """`sandbox run ARGS` as USER in `cgroup` (or as root where it is: a service with a
    cgroup_parent), under `wrap` (argv before the command): (exit status, report or None,
    stdout, stderr)."""
    report = f"{SCRATCH}/report-{time.monotonic_ns()}.json"
    # progress on stderr: if the guest hangs, the host's failure message shows where
    sys.stderr.write(f"[{time.monotonic():.1f}] sandbox run {' '.join(args)[:160]!r}\n")
    sys.stderr.flush()
    argv = list(wrap) + [SANDBOX, "run", "--report", report] + args
    p = subprocess.Popen(argv, cwd=SCRATCH, stdout=subprocess.PIPE, stderr=subprocess.PIPE) if as_root \
        else as_user(argv, cgroup)
    out, err = p.communicate(timeout=timeout)
    rep = json.loads(read(report)) if os.path.exists(report) else None
    return {"rc": p.returncode, "report": rep, "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace")}


def attacked_init(args, attack, cgroup):
    """`sandbox run ARGS` as USER whose program prints 'ready' and waits for a line on stdin;
    meanwhile ATTACK (python code, init's pid in argv[1]) runs as USER outside the sandbox."""
    report = f"{SCRATCH}/report-{time.monotonic_ns()}.json"
    sys.stderr.write(f"[{time.monotonic():.1f}] attacked sandbox run {' '.join(args)[:120]!r}\n")
    p = as_user([SANDBOX, "run", "--report", report] + args, cgroup, stdin=subprocess.PIPE)
    ready = p.stdout.readline()
    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
        launcher = [int(c) for c in f.read().split()
                    if read(f"/proc/{c}/comm").strip() == "sandbox-launch"][0]
    with open(f"/proc/{launcher}/task/{launcher}/children") as f:
        init = int(f.read().split()[0])
    a = as_user(["/usr/bin/python3", "-c", attack, str(init)], None)
    a_out, a_err = a.communicate(timeout=120)
    out, err = p.communicate(b"go\n", timeout=120)
    rep = json.loads(read(report)) if os.path.exists(report) else None
    return {"rc": p.returncode, "report": rep, "stdout": (ready + out).decode(errors="replace"),
            "stderr": err.decode(errors="replace"), "attack_rc": a.returncode,
            "attack_stderr": a_err.decode(errors="replace")}


def user_processes():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid == PW.pw_uid:
                    out.append(read(f"/proc/{p}/cmdline").replace("\0", " ").strip())
            except OSError:
                pass
    return out


def runs_in(cgroup):
    return sorted(n for n in os.listdir(cgroup) if n.startswith("run-"))


def pid_depths_in_runs(cgroup, p):
    """While `p` runs: how deep in pid namespaces each process found in a run cgroup under
    `cgroup` is (its NSpid entries): 1 is a host process (the launcher, a FUSE daemon), 2 one
    of the sandbox."""
    depths = set()
    while p.poll() is None:
        for run in runs_in(cgroup):
            try:
                pids = read(f"{cgroup}/{run}/cgroup.procs").split()
            except OSError:
                continue
            for pid in pids:
                try:
                    depths.update(len(line.split()) - 1 for line in read(f"/proc/{pid}/status").splitlines()
                                  if line.startswith("NSpid:"))
                except OSError:
                    pass
        time.sleep(0.05)
    return sorted(depths)


# Python under TCG runs some 20 times slower than on the host: allocate with one C-level fill,
# and give the runs CPU time to spare, so that memory, not time, is what they meet.
PY = ["--profile", "py311", "--time", "30", "--wall-time", "120"]
TOUCH_200M = "b = b'x' * (200 << 20)\nprint('survived')"


def scenarios():
    facts = {}

    d = scope()
    facts["memory_bomb"] = sandbox(PY + ["--memory", "64M", "--", "python3", "-c", TOUCH_200M], d)
    facts["memory_bomb"]["runs_left"] = runs_in(d)

    d = scope()
    facts["fork_bomb"] = sandbox(["--profile", "shell", "--processes", "20", "--wall-time", "4", "--", "sh", "-c",
                                  "b() { b | b & }; b; sleep 2"], d)      # sandbox()'s timeout catches a hang
    # later runs in the same scope start in its supervisor leaf: the scope itself has
    # controllers enabled for its children now, so it may hold no process
    facts["after_fork_bomb"] = sandbox(["--profile", "shell", "--", "echo", "responsive"], f"{d}/supervisor")

    d = scope()
    # The orphan tells its grandparent once it has burned 0.6 s of its own CPU and burns on;
    # the grandparent then ends the run: 0.6 s of CPU on a guest of any speed.
    burner = ("import os, time\n"
              "r, w = os.pipe()\n"
              "if os.fork() == 0:\n"
              "    if os.fork() == 0:\n"                     # an orphan, reparented to the sandbox's init
              "        while time.process_time() < 0.6: pass\n"
              "        os.write(w, b'x')\n"
              "        while True: pass\n"
              "    os._exit(0)\n"
              "os.read(r, 1)\n")
    facts["orphan_burner"] = sandbox(PY + ["--", "python3", "-c", burner], d)
    facts["orphan_burner"]["user_processes_after"] = user_processes()
    facts["orphan_burner"]["runs_left"] = runs_in(d)

    d = scope()
    tmp_profile = f"{SCRATCH}/bigtmp.yaml"
    write(tmp_profile, "extends: shell\ntmpfs: {/tmp: {size: 512M}}\n")
    os.chmod(tmp_profile, 0o644)
    facts["tmpfs_charged"] = sandbox(["--profile", tmp_profile, "--memory", "64M", "--file-size", "unlimited", "--",
                                      "sh", "-c", "head -c 300000000 /dev/zero > /tmp/big; echo wrote"], d)

    d = scope()
    facts["first_of_two"] = sandbox(PY + ["--memory", "512M", "--", "python3", "-c", "b = b'x' * (150 << 20)"], d)
    facts["second_of_two"] = sandbox(PY + ["--memory", "512M", "--", "python3", "-c", "pass"], f"{d}/supervisor")

    d = scope()
    probe = ("cat /proc/self/cgroup; ls /sys/fs/cgroup 2>&1; "
             "mount -t cgroup2 none /tmp 2>&1; echo max > /sys/fs/cgroup/memory.max 2>&1; true")
    facts["cannot_touch_cgroup"] = sandbox(["--profile", "shell", "--seccomp", "none", "--memory", "64M",
                                            "--", "sh", "-c", probe], d)

    d = scope()
    facts["cpu_limit"] = sandbox(["--profile", "py311", "--time", "0.5", "--", "python3", "-c", "while True: pass"], d)

    d = scope()
    rate_profile = f"{SCRATCH}/rate.yaml"
    write(rate_profile, "extends: py311\ncpuset: '0'\nlimits: {cpus: 0.25, cpu_time: 30s, wall_time: 60s}\n")
    os.chmod(rate_profile, 0o644)
    spin = "import os, time\nprint(len(os.sched_getaffinity(0)))\nt = time.time()\nwhile time.time() - t < 3: pass"
    facts["cpu_rate"] = sandbox(["--profile", rate_profile, "--", "python3", "-c", spin], d)

    # issue 9: where the cgroup, not init's samples, gives the answer
    d = scope()
    sysv = ("import ctypes, time\nlibc = ctypes.CDLL(None)\nlibc.shmat.restype = ctypes.c_void_p\n"
            "for i in range(8):\n    sid = libc.shmget(0, 64 << 20, 0o1600)\n    if sid < 0: break\n"
            "    a = libc.shmat(sid, None, 0)\n    ctypes.memset(a, 1, 64 << 20)\n    libc.shmdt(ctypes.c_void_p(a))\n"
            "print('held', flush=True)\ntime.sleep(2)\nprint('survived')")
    facts["sysv_shm"] = sandbox(PY + ["--memory", "128M", "--", "python3", "-c", sysv], d)

    d = scope()
    shared = ("import ctypes, mmap, os, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
              "        m = mmap.mmap(-1, 200 << 20)\n        b = ctypes.c_char.from_buffer(m)\n"
              "        ctypes.memset(ctypes.addressof(b), 1, 200 << 20)\n        del b\n        time.sleep(2)\n"
              "        os._exit(0)\n    kids.append(pid)\nfor pid in kids: os.waitpid(pid, 0)\nprint('survived')")
    facts["shared_anon"] = sandbox(PY + ["--memory", "256M", "--", "python3", "-c", shared], d)

    d = scope()
    autoreap = ("import os, signal, time\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nfor _ in range(4):\n"
                "    if os.fork() == 0:\n        t = time.process_time()\n"
                "        while time.process_time() - t < 0.6: pass\n        os._exit(0)\n"
                "    try: os.wait()\n    except ChildProcessError: pass\nprint('done')")
    facts["autoreaped"] = sandbox(["--profile", "py311", "--time", "1", "--wall-time", "120", "--", "python3", "-c",
                                   autoreap], d)

    # init's lowered RLIMIT_CPU and a SIGCHLD flood, from a process of the program's uid outside the
    # sandbox (from inside, the seccomp base layer kills both calls first)
    d = scope()
    facts["init_rlimit_flood"] = attacked_init(
        PY + ["--", "python3", "-c", "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n"
                                       "t = time.process_time()\nwhile time.process_time() - t < 1.5: pass\n"
                                       "print('done')"],
        "import ctypes, os, signal, sys, time\nlibc = ctypes.CDLL(None)\ninit = int(sys.argv[1])\n"
        "class R(ctypes.Structure): _fields_ = [('c', ctypes.c_uint64), ('m', ctypes.c_uint64)]\n"
        "assert libc.prlimit(init, 0, ctypes.byref(R(1, 1)), None) == 0\nt = time.process_time()\n"
        "while time.process_time() - t < 1.5:\n    for _ in range(100): os.kill(init, signal.SIGCHLD)\n", d)

    # the runner is SIGKILLed: its cgroup stays until the next start in the same subtree removes it
    d = scope()
    p = as_user([SANDBOX, "run", "--profile", "shell", "--", "sleep", "60"], d)
    deadline = time.monotonic() + 60
    while not runs_in(d) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.5)
    fact = {"runs_after_kill": runs_in(d), "sleep_left": [c for c in user_processes() if c.startswith("sleep 60")]}
    fact["next"] = sandbox(["--profile", "shell", "--", "true"], f"{d}/supervisor")
    fact["runs_after_next_start"] = runs_in(d)
    facts["runner_killed"] = fact

    # doctor in a delegated scope: it must see the delegation and the controllers
    d = scope()
    p = as_user([SANDBOX, "doctor", "--json"], d)
    out, err = p.communicate(timeout=120)
    facts["doctor_delegated"] = {"rc": p.returncode, "stdout": out.decode(errors="replace"),
                                 "stderr": err.decode(errors="replace")}

    # a service running as root with a cgroup_parent it owns: runs get unprivileged host ids
    parent = f"{SLICE}/root-service"
    os.makedirs(parent, exist_ok=True)
    root_profile = f"{SCRATCH}/root-service.yaml"
    write(root_profile, f"extends: shell\ncgroup_parent: {parent}\n")
    os.chmod(root_profile, 0o644)
    facts["root_caller_pids"] = sandbox(["--profile", root_profile, "--processes", "4", "--wall-time", "20", "--",
                                         "sh", "-c", "for i in $(seq 30); do sleep 3 & done; wait"], None,
                                        as_root=True)
    facts["root_caller_memory"] = sandbox(["--profile", root_profile, "--memory", "64M", "--time", "30",
                                                    "--wall-time", "120", "--", "sh", "-c",
                                                    "head -c 200000000 /dev/zero | tail > /dev/null"], None,
                                          as_root=True)
    facts["root_caller_memory"]["runs_left"] = runs_in(parent)

    # issue 15 bug 9: without clone3 init moves itself into the run's cgroup; the launcher stays out
    d = scope()
    report = f"{SCRATCH}/report-no-clone3.json"
    p = as_user(WITHOUT_CLONE3 + [SANDBOX, "run", "--report", report, "--profile", "shell", "--wall-time", "60",
                                  "--", "sh", "-c", "cat /proc/self/cgroup; sleep 3"], d)
    depths = pid_depths_in_runs(d, p)
    out, err = p.communicate(timeout=120)
    facts["no_clone3"] = {"rc": p.returncode, "report": json.loads(read(report)) if os.path.exists(report) else None,
                          "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
                          "pid_depths": depths, "runs_left": runs_in(d)}
    d = scope()
    facts["no_clone3_memory_bomb"] = sandbox(PY + ["--memory", "64M", "--", "python3", "-c", TOUCH_200M], d,
                                             wrap=WITHOUT_CLONE3)

    # no delegation: the root cgroup is not the user's
    facts["no_delegation"] = sandbox(["--profile", "shell", "--require-cgroup", "--", "true"], None)
    facts["no_delegation_degraded"] = sandbox(["--profile", "shell", "--", "true"], None)
    return facts


def main():
    setup()
    facts = scenarios()
    facts["kernel"] = os.uname().release
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
