"""What a policy file means: an extending policy's rules win over the ones it extends (stricter
and looser, in real runs); two rules in one file that contradict each other are refused, naming
both; kill rules under default_action: log; and the clear errors for the rest of the schema."""
import pytest

from conftest import no_traceback
from test_seccomp import py


def test_child_stricter_than_parent_wins(sbx):
    """default answers clone3 with ENOSYS; a child that kills it gets SYS (it used to stay ENOSYS)."""
    policy = sbx.script("strict.yaml", "extends: default\nrules: [{syscall: clone3, action: kill}]\n")
    r, rep = py(sbx, "call(435, 0, 0)", "--seccomp", policy)
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == "clone3", rep


def test_child_looser_than_parent_wins(sbx):
    """default refuses personality(READ_IMPLIES_EXEC); a child that allows it lets it through,
    and the rest of default still holds."""
    policy = sbx.script("loose.yaml", "extends: default\nrules: [{syscall: personality, action: allow}]\n")
    r, rep = py(sbx, "print(call(135, 0x0400000) >= 0, call(41, 40, 1, 0))", "--seccomp", policy)
    assert rep["status"] == "OK" and r.stdout.decode().splitlines()[1] == "True -97", (rep, r.stderr)
    r, rep = py(sbx, "print(call(135, 0x0400000))")
    assert r.stdout.decode().splitlines()[1] == "-1"                 # the parent alone: refused


def test_child_log_over_a_parent_kill(sbx):
    """An unconditional child rule hides the parent's rules for that call: default kills mount,
    a child that logs it lets it through (the kernel then refuses it: no capability) and lists it."""
    policy = sbx.script("logmount.yaml", "extends: default\nrules: [{syscall: mount, action: log}]\n")
    r, rep = py(sbx, "print(libc.mount(b'n', b'/tmp', b'tmpfs', 0, None))", "--seccomp", policy)
    assert rep["status"] == "OK" and r.stdout.decode().splitlines()[1] == "-1", (rep, r.stderr)
    assert {"name": "mount", "number": 165, "arch": "x86_64"} in rep["seccomp_logged"]


def test_a_conditional_child_rule_overrides_only_where_it_matches(sbx):
    """A child rule with a condition wins for the calls it matches; the parent's rules for the same
    call still decide the others (AF_VSOCK stays refused when the child kills AF_PACKET)."""
    policy = sbx.script("pkt.yaml", "extends: default\nrules: [{syscall: socket, action: kill, when: {arg0: AF_PACKET}}]\n")
    r, rep = py(sbx, "print(call(41, 40, 1, 0), flush=True); call(41, 17, 3, 0)", "--seccomp", policy)
    assert r.stdout.decode().splitlines()[1] == "-97"
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == "socket" and rep["syscall"]["args"][0] == 17, rep


@pytest.mark.parametrize("rules,first,second", [
    ("[{syscall: clone3, action: errno ENOSYS}, {syscall: clone3, action: kill}]", 0, 1),
    ("[{syscalls: [read, mount], action: allow}, {syscall: mount, action: kill, when: {arg0: 0}}]", 0, 1),
])
def test_contradicting_rules_in_one_file_are_refused_naming_both(sbx, rules, first, second):
    path = sbx.script("both.yaml", f"default_action: allow\nrules: {rules}\n")
    r = sbx("run", "--profile", "shell", "--seccomp", path, "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125, text
    assert f"both.yaml: rules[{second}]: this rule" in text and f"both.yaml: rules[{first}]" in text, text
    assert "can never apply" in text and "fix:" in text


def test_repeated_and_exception_then_rule_are_fine(sbx):
    """The same rule twice, or a conditional exception before an unconditional rule: no contradiction."""
    path = sbx.script("ok.yaml", "default_action: allow\nrules:\n"
                                 "  - {syscall: getpriority, action: allow, when: {arg0: 0, arg1: 0}}\n"
                                 "  - {syscall: getpriority, action: errno EACCES}\n"
                                 "  - {syscall: getpriority, action: errno EACCES}\n")
    r, rep = py(sbx, "print(call(140, 0, 0) >= 0, call(140, 1, 0))", "--seccomp", path)
    assert rep["status"] == "OK" and r.stdout.decode().splitlines()[1] == "True -13", (rep, r.stderr)


def test_kill_rules_under_default_log(sbx):
    """A kill rule under default_action: log is a kill (it used to be refused with a wrong fix);
    its conditions are checked again by init, so a call that does not match is a log."""
    path = sbx.script("learnish.yaml", "default_action: log\nrules:\n"
                                       "  - {syscall: getpriority, action: kill, when: {arg0: 2}}\n"
                                       "  - {syscall: mount, action: kill}\n")
    r, rep = py(sbx, "print(call(140, 0, 0) >= 0)", "--seccomp", path)
    assert rep["status"] == "OK" and {"name": "getpriority", "number": 140, "arch": "x86_64"} in rep["seccomp_logged"]
    for code, name in (("call(140, 2, 0)", "getpriority"), ("libc.mount(b'n', b'/tmp', b'tmpfs', 0, None)", "mount")):
        r, rep = py(sbx, code, "--seccomp", path)
        assert rep["status"] == "SYS" and rep["syscall"]["name"] == name, rep


BAD = {
    "empty_not_in": ("default_action: allow\nrules: [{syscall: socket, action: kill, when: {arg0: {not_in: []}}}]\n",
                     ["pol.yaml: rules[0].when.arg0.not_in", "not_in needs at least one value"]),
    "unicode_errno": ("default_action: allow\nrules: [{syscall: mount, action: errno ٣}]\n",
                      ["pol.yaml: rules[0].action", "'٣' is not an errno"]),
    "unicode_arg": ("default_action: allow\nrules: [{syscall: mount, action: kill, when: {arg１: 1}}]\n",
                    ["pol.yaml: rules[0].when.arg１", "'arg１' is not an argument"]),
    "unicode_value": ("default_action: allow\nrules: [{syscall: mount, action: kill, when: {arg0: '١'}}]\n",
                      ["rules[0].when.arg0", "'١' is not a number"]),
    "unknown_top_key": ("default_action: allow\nrulez: []\n", ["pol.yaml: rulez: unknown key 'rulez'",
                                                              "did you mean 'rules'?"]),
    "duplicate_when_key": ("default_action: allow\nrules: [{syscall: mount, action: kill, when: {arg0: 1, arg0: 2}}]\n",
                           ["pol.yaml:2", "duplicate key 'arg0'"]),
    "kill_ne_under_log": ("default_action: log\nrules: [{syscall: mount, action: kill, when: {arg0: {ne: 0}}}]\n",
                          ["pol.yaml: rules[0]", "must be eq, in, any_bits or masked"]),
    "huge_value": ("default_action: allow\nrules: [{syscall: mount, action: kill, when: {arg0: '" + "9" * 5000 + "'}}]\n",
                   ["rules[0].when.arg0", "is not a number"]),
    "huge_name": ("default_action: allow\nrules: [{syscall: " + "m" * 5000 + ", action: kill}]\n",
                  ["rules[0].syscall", "unknown system call"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_policy_gets_a_clear_bounded_error(sbx, case):
    body, expected = BAD[case]
    path = sbx.script("pol.yaml", body)
    r = sbx("run", "--profile", "shell", "--seccomp", path, "--", "true")
    text = no_traceback(r)
    assert r.returncode == 125, text
    for piece in expected:
        assert piece in text, (piece, text)
    assert "fix:" in text and len(text) < 1000, text


def test_check_refuses_a_policy_that_cannot_load(sbx):
    """`sandbox check` on a profile whose policy is over the kernel's instruction limit: refused
    there, not when a run starts."""
    rules = "".join(f"  - {{syscall: ioctl, action: errno EPERM, when: {{arg1: {i}, arg2: {{ge: {i}}}}}}}\n"
                    for i in range(700))
    sbx.script("big.yaml", "default_action: allow\nrules:\n" + rules)
    profile = sbx.script("p.yaml", "extends: shell\nseccomp: big.yaml\n")
    r = sbx("check", profile)
    text = no_traceback(r)
    assert r.returncode == 125 and "the kernel loads at most 4096" in text, text
