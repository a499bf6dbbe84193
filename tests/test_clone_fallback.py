"""Without clone3 (kernels before 5.7, or a container's seccomp profile that
answers ENOSYS for it) init is cloned with clone and must move itself into the
run's cgroup: the launcher, and the FUSE daemon it starts, stay out of it and
do not count against the run's limits.

Here cgroup v2 has no controllers and host cgroups are not ours to touch, so
the run's "cgroup" is a directory with a cgroup.procs file, and the test (root)
watches with fanotify which process writes it.  clone3 is made to fail with
ENOSYS by a seccomp filter on the runner, inherited by the launcher: what a
kernel without it answers.  The real cgroup is the QEMU lane's
(tests/test_cgroup.py: test_without_clone3_only_inits_tree_is_in_the_run_cgroup)."""
import ctypes
import json
import os
import struct
import sys

import pytest

RUN = r"""
import ctypes, json, os, struct, sys
from sandbox import launch, runner
from sandbox.stdio import Sink
from sandbox.supervise import supervise

def insn(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
bpf = (insn(LD_ABS, 4) + insn(JEQ, 0xC000003E, 0, 3) + insn(LD_ABS, 0) + insn(JEQ, 435, 0, 1)
       + insn(RET, 0x00050000 | 38) + insn(RET, 0x7FFF0000))      # clone3 -> ENOSYS, the rest allowed
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0                              # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(Fprog(len(bpf) // 8, bpf)), 0, 0) == 0   # PR_SET_SECCOMP, FILTER
assert libc.syscall(435, None, 0) == -1 and ctypes.get_errno() == 38  # clone3: ENOSYS now

plan = runner.prepare("shell", ["/bin/sh", "-c", "readlink /proc/self/ns/cgroup"])
ops = [launch.cgroup(sys.argv[1])] + [o for s in plan.steps for o in s.ops]
null = os.open("/dev/null", os.O_RDONLY)
launched = launch.spawn(launch.encode(ops), null)
out = Sink(capture=True)
o = supervise(launched, plan.limits, out, Sink(capture=True))
print(json.dumps({"launcher": launched.pid, "init": o.init_pid, "error": o.setup_error, "wstatus": o.wstatus,
                  "inside": bytes(out.captured).decode().strip(), "outside": os.readlink("/proc/self/ns/cgroup")}))
"""


def _fanotify_writers(fan):
    """Pids that closed the watched file after writing it."""
    pids, buf = [], b""
    try:
        buf = os.read(fan, 65536)
    except BlockingIOError:
        pass
    while buf:
        event_len, _, _, _, _, fd, pid = struct.unpack_from("IBBHQii", buf)
        if fd >= 0:
            os.close(fd)
        pids.append(pid)
        buf = buf[event_len:]
    return pids


@pytest.mark.skipif(os.geteuid() != 0, reason="fanotify, which names the writer, needs root")
def test_without_clone3_init_moves_itself_and_the_launcher_stays_out(user, box):
    fake = os.path.join(box, "run-cgroup")
    os.mkdir(fake)
    procs = os.path.join(fake, "cgroup.procs")
    open(procs, "w").close()
    os.chown(fake, user.uid, user.gid)
    os.chown(procs, user.uid, user.gid)
    libc = ctypes.CDLL(None, use_errno=True)
    fan = libc.fanotify_init(0x2, os.O_RDONLY)         # FAN_CLASS_NOTIF | FAN_NONBLOCK
    assert fan >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.fanotify_mark(fan, 0x1, ctypes.c_uint64(0x8), -100, procs.encode()) == 0   # ADD, CLOSE_WRITE
        r = user.run([sys.executable, "-c", RUN, fake])
        assert r.returncode == 0, r.stderr.decode()
        got = json.loads(r.stdout)
        writers = _fanotify_writers(fan)
    finally:
        os.close(fan)
    assert got["error"] is None and got["wstatus"] == 0, got
    with open(procs) as f:
        assert f.read() == "0"                          # "the writer": a pid would be its own namespace's
    assert writers == [got["init"]], f"cgroup.procs written by {writers}, launcher {got['launcher']}, init {got['init']}"
    # and init made its cgroup namespace after the move: the program's is not the runner's
    assert got["inside"].startswith("cgroup:[") and got["inside"] != got["outside"], got
