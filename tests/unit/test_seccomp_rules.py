"""seccomp_policy's rule expansion: one rule of a policy file -> the (syscall, action,
comparisons) rules the filter tries, each comparison on one argument."""
import pytest

from sandbox.errors import ProfileError
from sandbox.seccomp_policy import LOW32, MAX_EXPANSION, _rule

KNOWN = {"read", "write", "socket", "ioctl", "mmap", "clone"}


def expand(raw):
    return _rule(raw, "p.yaml: rules[0]", KNOWN)


def test_a_plain_rule_is_one_rule_per_syscall():
    assert expand({"syscalls": ["read", "write"], "action": "errno EPERM"}) == [
        ("read", ("errno", 1), ()), ("write", ("errno", 1), ())]


def test_a_list_of_values_is_one_rule_per_value_on_the_low_32_bits():
    assert expand({"syscall": "socket", "action": "kill", "when": {"arg0": {"in": [2, "AF_INET6"]}}}) == [
        ("socket", ("kill",), ((0, "masked_eq", LOW32, 2),)),
        ("socket", ("kill",), ((0, "masked_eq", LOW32, 10),))]


def test_any_bits_is_one_rule_per_bit():
    rules = expand({"syscall": "clone", "action": "kill", "when": {"arg0": {"any_bits": 0x5}}})
    assert [r[2] for r in rules] == [((0, "masked_eq", 1, 1),), ((0, "masked_eq", 4, 4),)]


def test_not_in_is_every_other_value_then_everything_above():
    rules = expand({"syscall": "ioctl", "action": "kill", "when": {"arg1": {"not_in": [0, 2]}}})
    assert [r[2] for r in rules] == [((1, "masked_eq", LOW32, 1),), ((1, "ge", 3, 0),)]


def test_conditions_on_two_arguments_multiply():
    rules = expand({"syscall": "mmap", "action": "log", "when": {"arg2": [1, 3], "arg3": {"masked": 0x20, "eq": 0}}})
    assert [r[2] for r in rules] == [((2, "masked_eq", LOW32, 1), (3, "masked_eq", 0x20, 0)),
                                     ((2, "masked_eq", LOW32, 3), (3, "masked_eq", 0x20, 0))]


def test_comparisons_keep_their_operator():
    assert expand({"syscall": "read", "action": "allow", "when": {"arg2": {"le": 4096}}}) == [
        ("read", ("allow",), ((2, "le", 4096, 0),))]


@pytest.mark.parametrize("raw, where, what", [
    ({"syscall": "ioctl", "action": "kill", "when": {"arg1": {"not_in": []}}}, "when.arg1.not_in", "at least one"),
    ({"syscall": "raed", "action": "kill"}, "rules[0].syscall", "did you mean 'read'"),
    ({"syscall": "read", "action": "kil"}, "rules[0].action", "not an action"),
    ({"syscall": "read", "action": "kill", "when": {"arg6": 1}}, "when.arg6", "not an argument"),
    ({"syscall": "read", "action": "kill", "when": {"arg0": {"eq": 1, "ne": 2}}}, "when.arg0", "one operator"),
    ({"syscall": "read", "action": "kill", "when": {"arg0": list(range(MAX_EXPANSION + 1))}}, "when.arg0",
     "more than"),
    ({"syscall": "read", "action": "kill", "when": {"arg0": list(range(100)), "arg1": list(range(100))}}, "when",
     "more than"),
    ({"syscall": "read", "syscalls": ["write"], "action": "kill"}, "rules[0]", "exactly one"),
])
def test_bad_rules_name_the_key(raw, where, what):
    with pytest.raises(ProfileError) as e:
        expand(raw)
    text = str(e.value)
    assert where in text and what in text, text
