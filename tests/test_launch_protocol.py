"""The launcher protocol is written twice, in sandbox/launch.py and in
launcher/launcher.c: these tests hold the two together.  The op vocabulary
comes from the launcher itself (`sandbox-launch --ops` prints its table); the
descriptors, bounds and records from launcher.c's source."""
import inspect
import os
import re
import subprocess

import pytest

from sandbox import launch
from sandbox.stdio import Sink
from sandbox.supervise import supervise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "sandbox")
# A value for each kind of constructor parameter; any other is a number or a word.
SAMPLES = {"argv": ["/bin/true"], "env": [], "mode": 0o755, "bpf": bytes(8), "ro": True}


def _c_source():
    with open(os.path.join(REPO, "launcher", "launcher.c")) as f:
        return f.read()


def _c_ops():
    """{name: (nargs, variadic)} from the launcher's own table."""
    out = subprocess.run([launch.launcher_path(), "--ops"], capture_output=True, check=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        name, nargs = line.split()
        table[name] = (int(nargs.rstrip("+")), nargs.endswith("+"))
    return table


def _call(constructor, extra=False):
    """The op a constructor makes from sample arguments; `extra`: one more variadic item."""
    args = []
    for p in inspect.signature(constructor).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            args += ["x"] if extra else []
        elif p.name in ("argv", "env") and extra:
            args.append(SAMPLES[p.name] + ["X=1"])
        else:
            args.append(SAMPLES.get(p.name, "1"))
    return constructor(*args)


def test_every_op_of_the_launcher_has_a_python_constructor_and_no_other():
    assert sorted(launch.OPS) == sorted(_c_ops())


def test_each_constructor_makes_as_many_arguments_as_the_launcher_takes():
    for name, (nargs, variadic) in _c_ops().items():
        constructor = launch.OPS[name]
        op = _call(constructor)
        assert op[0] == name and all(isinstance(a, str) for a in op), op
        assert len(op) - 1 == nargs, f"{name}: the launcher takes {nargs}, {constructor.__name__} makes {op}"
        more = _call(constructor, extra=True)
        assert (len(more) > len(op)) == variadic, f"{name}: variadic in the launcher: {variadic}, in Python: {more}"


def test_no_op_is_dead():
    """Every constructor is used by some module of the package (the `mkdir` op went
    unused for months: an op nobody sends is code nobody tests)."""
    sources = ""
    for d, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py") and f != "launch.py":
                with open(os.path.join(d, f)) as fh:
                    sources += fh.read()
    unused = [f.__name__ for f in launch.OPS.values() if f"launch.{f.__name__}(" not in sources]
    assert unused == []


def test_descriptors_bounds_and_header_agree_with_launcher_c():
    src = _c_source()
    defines = dict(re.findall(r"^#define (\w+) (\d+)", src, re.M))
    for name in ("PLAN_FD", "ERR_FD", "STATUS_FD", "NOTIFY_FD", "WORKDIR_FD", "GATE_FD", "MAX_TOKENS", "MAX_SLOTS"):
        assert int(defines[name]) == getattr(launch, name), name
    assert re.search(r'strcmp\(tok\[0\], "(\w+)"\)', src).group(1).encode() == launch.MAGIC


def test_every_status_record_and_descriptor_is_documented_in_the_header():
    src = _c_source()
    header = src[:src.index("*/")]
    written = set(re.findall(r'status(?:_sync)?\("([A-Z]) ', src))
    assert {"D", "S", "X", "L", "I", "V", "Y", "T"} <= written       # the scan itself finds them
    for record in written | {"E"}:
        assert re.search(rf"^ \*  +{record} <", header, re.M), f"record {record} is not in launcher.c's header"
    for fd in ("PLAN_FD", "ERR_FD", "STATUS_FD", "NOTIFY_FD", "WORKDIR_FD", "GATE_FD"):
        assert re.search(rf"^ \*   {getattr(launch, fd)}      {fd}", header, re.M), fd


def test_encode_substitutes_the_per_run_values_and_refuses_a_nul():
    ops = [launch.cgroup(launch.RUN_CGROUP), launch.outmap("write", f"0 {launch.HOST_ID} 1", f"0 {launch.HOST_ID} 1")]
    assert launch.encode(ops, "/sys/fs/cgroup/x/run-1", 60001).split(b"\0") == [
        b"SBX1", b"cgroup", b"1", b"/sys/fs/cgroup/x/run-1", b"outmap", b"3", b"write", b"0 60001 1", b"0 60001 1", b""]
    from sandbox.errors import UsageError
    with pytest.raises(UsageError, match="contains a NUL byte"):
        launch.encode([launch.chdir("/a\0b")])


def _launch(ops):
    """The launcher's setup error for a hand-made plan (it fails at its first op:
    nothing is ever cloned)."""
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        launched = launch.spawn(launch.encode(ops), null)
    finally:
        os.close(null)
    limits = {"cpu_time": None, "memory": None, "output": None, "wall_time": 10}
    return supervise(launched, limits, Sink(capture=True), Sink(capture=True)).setup_error


@pytest.mark.parametrize("op, message", [
    (("ppid", "1", "2"), "op ppid takes 1 argument, the plan gives 2"),
    (("private", "x"), "op private takes 0 arguments, the plan gives 1"),
    (("bind", "0", "/x"), "op bind takes 3 arguments, the plan gives 2"),
    (("exec", "1"), "op exec takes at least 2 arguments, the plan gives 1"),
    (("mkdir", "/x", "755"), "unknown op 'mkdir'"),          # dead, and deleted
])
def test_a_wrong_op_fails_with_a_record_that_names_it(op, message):
    index, errno_, text = _launch([op, launch.fork()])
    assert (index, errno_) == (0, 22) and text.startswith(message), text
    assert "(launcher and package versions differ?)" in text
