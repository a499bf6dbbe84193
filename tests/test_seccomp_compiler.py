"""The BPF the policy compiler generates (sandbox/bpf.py), run on a BPF interpreter written
here and compared with the rules read as plain first-match logic, on random rule lists and
random calls; and the policy schema fuzzed: every policy is OK or a clear error."""
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sandbox import bpf, seccomp, seccomp_policy
from sandbox.errors import SandboxError

X86_64, I386 = 0xC000003E, 0x40000003
M64 = (1 << 64) - 1


def run_bpf(program, nr, arch, args):
    """Classic BPF as the kernel runs it, for the instructions the compiler emits; checks
    that every jump lands inside the program (the kernel's verifier refuses anything else)."""
    assert len(program) % 8 == 0 and 0 < len(program) // 8 <= bpf.MAX_INSNS
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    data = struct.pack("<II", nr & 0xFFFFFFFF, arch) + struct.pack("<Q", 0) + struct.pack("<6Q", *args)
    pc, a = 0, 0
    while True:
        assert 0 <= pc < len(insns), "jump out of the program"
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            a = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x54:
            a &= k
            pc += 1
        elif code == 0x05:
            pc += 1 + k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: a & k != 0}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


def holds(comp, args):
    arg, op, x, y = comp
    v = args[arg]
    return {"masked_eq": lambda: v & x == y, "ne": lambda: v != x, "lt": lambda: v < x, "le": lambda: v <= x,
            "gt": lambda: v > x, "ge": lambda: v >= x}[op]()


def first_match(rules, default, nr, arch, args):
    if arch != X86_64 or nr >= 0x40000000:
        return bpf.RET_USER_NOTIF
    for rule_nr, ret, comps in rules:
        if rule_nr == nr and all(holds(c, args) for c in comps):
            return ret
    return default


INTERESTING = [0, 1, 2, 6, 0xFFFFFFFF, 1 << 32, (1 << 32) | 1, (1 << 32) | 6, M64, 0x8000000000000000, 17, 40]
values = st.one_of(st.sampled_from(INTERESTING), st.integers(0, M64))
nrs = st.sampled_from([0, 1, 2, 41, 46, 302, 435, 439])
rets = st.sampled_from([bpf.RET_ALLOW, bpf.RET_USER_NOTIF, bpf.RET_ERRNO | 1, bpf.RET_ERRNO | 38])
comparison = st.tuples(st.integers(0, 5), st.sampled_from(["masked_eq", "ne", "lt", "le", "gt", "ge"]), values, values)
rule = st.tuples(nrs, rets, st.lists(comparison, max_size=3))
# one equality or one bit on one word, few answers: the runs the compiler merges under one load
one_test = st.tuples(st.integers(0, 1), st.just("masked_eq"),
                     st.sampled_from([0xFFFFFFFF, 0xFFFFFFFF << 32, 1, 1 << 5, 1 << 40, 3]), values)
single_word = st.builds(lambda nr, ret, c: (nr, ret, [(c[0], c[1], c[2], c[3] if c[3] % 3 else c[3] & c[2])]),
                        st.sampled_from([1, 41]), st.sampled_from([bpf.RET_ALLOW, bpf.RET_ERRNO | 1]), one_test)
call = st.tuples(st.one_of(nrs, st.integers(0, 0xFFFFFFFF)), st.sampled_from([X86_64, X86_64, I386]),
                 st.lists(values, min_size=6, max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(rule, single_word, single_word), max_size=16), rets, st.lists(call, min_size=1, max_size=8))
def test_generated_bpf_is_first_match(rules, default, calls):
    program = bpf.assemble(rules, default, bpf.RET_USER_NOTIF)
    for nr, arch, args in calls:
        near = [[r[2][0][k] if r[2] else a for a in args] for r in rules[:3] for k in (2, 3)]    # the rules' values
        for probe in [args] + near:
            assert run_bpf(program, nr, arch, probe) == first_match(rules, default, nr, arch, probe)


def test_long_blocks_get_trampolines():
    """300 rules on one call and 200 calls: jumps far beyond BPF's 8-bit offsets still land right."""
    rules = [(1, bpf.RET_ERRNO | (i % 4000 + 1), [(0, "masked_eq", 0xFFFFFFFF, i), (1, "ge", i, 0)]) for i in range(300)]
    rules += [(nr, bpf.RET_ERRNO | nr, []) for nr in range(100, 300)]
    program = bpf.assemble(rules, bpf.RET_ALLOW, bpf.RET_USER_NOTIF)
    for i in (0, 1, 150, 299, 300):
        for second in (0, i, M64):
            args = [i, second, 0, 0, 0, 0]
            assert run_bpf(program, 1, X86_64, args) == first_match(rules, bpf.RET_ALLOW, 1, X86_64, args)
    for nr in (99, 100, 101, 199, 299, 300, 0x40000001):
        assert run_bpf(program, nr, X86_64, [0] * 6) == first_match(rules, bpf.RET_ALLOW, nr, X86_64, [0] * 6)


@pytest.mark.parametrize("policy", [None, "default", "judge-strict"])
def test_built_in_filters_put_the_launcher_and_the_base_layer_first(policy, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    resolved = seccomp_policy.resolve(policy)[0] if policy else None
    program = seccomp.compiled(resolved)[0]
    n = seccomp.BASE_NUMBERS
    notify, allow = bpf.RET_USER_NOTIF, bpf.RET_ALLOW
    assert run_bpf(program, n["prlimit64"], X86_64, [1, 0, 0, 0, 0, 0]) == notify
    assert run_bpf(program, n["prlimit64"], X86_64, [1 | 7 << 32, 0, 0, 0, 0, 0]) == notify
    assert run_bpf(program, n["sendmsg"], X86_64, [6, 0, 0, 0, 0, 0]) == allow
    assert run_bpf(program, n["write"], X86_64, [4, 0, 0, 0, 0, 0]) == allow
    assert run_bpf(program, 20, I386, [0] * 6) == notify
    if policy is None:
        assert run_bpf(program, n["prlimit64"], X86_64, [0, 7, 0, 0, 0, 0]) == allow
        assert run_bpf(program, 165, X86_64, [0] * 6) == allow                    # mount: no policy
        assert run_bpf(program, n["setpriority"], X86_64, [2, 0, 19, 0, 0, 0]) == bpf.RET_ERRNO | 1


def write(tmp_path, text, name="pol.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_policy_too_large_for_the_kernel_is_refused_before_a_run(tmp_path, monkeypatch):
    """Under the caps but over 4096 instructions: refused when the policy is resolved (sandbox check,
    prepare), with the number.  More than 4096 rules after expansion, or a file of 5,000 rules:
    refused by a cap, before any work (the file before it is parsed)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rules = "".join(f"  - {{syscall: ioctl, action: errno EPERM, when: {{arg1: {i}, arg2: {{ge: {i}}}}}}}\n"
                    for i in range(700))
    with pytest.raises(SandboxError) as e:
        seccomp_policy.resolve(write(tmp_path, "default_action: allow\nrules:\n" + rules))
    assert "BPF instructions; the kernel loads at most 4096" in str(e.value) and e.value.fix
    values = ", ".join(map(str, range(500)))
    rules = "".join(f"  - {{syscall: ioctl, action: errno EPERM, when: {{arg{i % 6}: {{in: [{values}]}}}}}}\n"
                    for i in range(10))
    with pytest.raises(SandboxError) as e:
        seccomp_policy.resolve(write(tmp_path, "default_action: allow\nrules:\n" + rules))
    assert "pol.yaml: rules: the policy expands to more than 4096 rules (at rules[8])" in str(e.value), e.value
    rules = "".join(f"  - {{syscall: ioctl, action: errno EPERM, when: {{arg1: {i}}}}}\n" for i in range(5000))
    with pytest.raises(SandboxError) as e:
        seccomp_policy.resolve(write(tmp_path, "default_action: allow\nrules:\n" + rules))
    assert "pol.yaml: the policy file is" in str(e.value) and e.value.fix


def test_large_valid_policies_compile_in_linear_time(tmp_path, monkeypatch):
    """Compile cost grows with the rules, not with their square (libseccomp took 20-31 s for 5,000):
    1,000 rules cost less than 30 times what 100 rules cost, measured in CPU time."""
    import time
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SANDBOX_NO_BPF_CACHE", "1")
    known = seccomp.known_syscalls()

    def cost(n):
        policy = {"name": "p", "default": ("allow",),
                  "rules": [("ioctl", ("errno", 1), ((1, "masked_eq", 0xFFFFFFFF, i),)) for i in range(n)]}
        start, rounds = time.process_time(), 0
        while time.process_time() - start < 0.2:
            seccomp._program(policy, known)
            rounds += 1
        return (time.process_time() - start) / rounds
    assert cost(1000) < 30 * cost(100)


# ------------------------------------------------------------------ the schema, fuzzed

NAMES = ["read", "write", "mount", "socket", "clone3", "prlimit64", "sendmsg", "mout", "", "arg0", "ｒｅａｄ"]
ACTIONS = ["allow", "kill", "log", "errno EPERM", "errno 13", "errno ٣", "errno 0", "errno 99999", "deny", "",
           "errno", "errno EPERM EACCES"]
scalars = st.one_of(st.integers(-2, 1 << 65), st.sampled_from(["AF_INET", "0x10", "٣", "１", "1e3", "-1", "x" * 300,
                                                               "99999999999999999999999"]),
                    st.booleans(), st.none(), st.floats(allow_nan=True))
conds = st.one_of(scalars, st.lists(scalars, max_size=5),
                  st.dictionaries(st.sampled_from(["eq", "ne", "lt", "in", "not_in", "any_bits", "masked", "equals"]),
                                  st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=2))
when = st.one_of(st.dictionaries(st.sampled_from(["arg0", "arg1", "arg5", "arg6", "arg１", "x", "ARG0"]), conds,
                                 max_size=3), scalars, st.lists(scalars, max_size=2))
rule_raw = st.one_of(
    st.fixed_dictionaries({"syscall": st.sampled_from(NAMES), "action": st.sampled_from(ACTIONS)},
                          optional={"when": when, "syscal": scalars}),
    st.fixed_dictionaries({"syscalls": st.one_of(st.lists(st.sampled_from(NAMES), max_size=4), scalars),
                           "action": st.one_of(st.sampled_from(ACTIONS), scalars)}, optional={"when": when}),
    scalars)
policy_raw = st.fixed_dictionaries({}, optional={
    "default_action": st.one_of(st.sampled_from(ACTIONS), scalars),
    "extends": st.sampled_from(["default", "judge-strict", "nope", "pol.yaml", "../x.yaml"]),
    "rules": st.one_of(st.lists(rule_raw, max_size=6), scalars),
    "remove": st.one_of(st.lists(st.sampled_from(NAMES), max_size=3), scalars),
    "rulez": scalars, "description": scalars})


def assert_clear(error):
    assert isinstance(error, SandboxError) and error.where and error.fix, repr(error)
    assert len(str(error)) < 1500, str(error)                  # no unbounded value in a message


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(policy_raw, st.sampled_from(["", "aliases", "duplicate"]))
def test_fuzzed_policies_are_ok_or_a_clear_error(tmp_path, monkeypatch, raw, mutation):
    import yaml
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = yaml.safe_dump(raw, allow_unicode=True)
    if mutation == "aliases":       # a billion laughs in the conditions
        text = ("a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\n"
                "default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg0: {in: *c}}}]\n")
    elif mutation == "duplicate":
        text = "default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg0: 1, arg0: 2}}]\n" + text
    path = write(tmp_path, text)
    try:
        policy, _ = seccomp_policy.resolve(path)
    except SandboxError as e:
        assert_clear(e)
    else:
        assert policy["default"][0] in ("allow", "kill", "log", "errno")


@pytest.fixture(scope="module")
def sample_policies():
    """A few mutated policies for real runs, drawn with a fixed seed."""
    import random
    import yaml
    rnd = random.Random(16)
    policies = [{"default_action": rnd.choice(ACTIONS[:5]),
                 "rules": [{"syscall": rnd.choice(NAMES), "action": rnd.choice(ACTIONS),
                            "when": {rnd.choice(["arg0", "arg1", "arg１"]): rnd.choice([0, 1, "AF_INET", "٣", [1, 2]])}}
                           for _ in range(rnd.randint(0, 3))]} for _ in range(6)]
    policies.append({"extends": "default", "rules": [{"syscall": "sendmsg", "action": "kill"}]})
    policies.append({"default_action": "log", "rules": [{"syscall": "mount", "action": "kill", "when": {"arg3": 0}}]})
    return [yaml.safe_dump(p, allow_unicode=True) for p in policies]


def test_fuzzed_policies_in_real_runs(sbx, sample_policies):
    """Through the CLI: a run (whatever its verdict) or exit 125 with a clear error, never an internal one."""
    from conftest import no_traceback
    outcomes = set()
    for i, text in enumerate(sample_policies):
        path = sbx.script(f"fuzz{i}.yaml", text)
        r, rep = sbx.run("run", "--profile", "shell", "--seccomp", path, "--", "sh", "-c", "echo ran")
        out = no_traceback(r)
        assert "internal error" not in out, (text, out)
        if r.returncode == 125:
            assert f"fuzz{i}.yaml" in out and "fix:" in out and rep is None, (text, out)
        else:
            assert rep["status"] in ("OK", "SYS", "RE"), (text, rep, out)
        outcomes.add(r.returncode == 125)
    assert outcomes == {True, False}                                # both kinds were exercised
