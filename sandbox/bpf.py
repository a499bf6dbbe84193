"""seccomp BPF, generated here from an ordered rule list: the first rule that
matches a call decides it.

libseccomp merges the rules of one call by its own precedence (an unconditional
rule wipes the conditional ones, whatever their actions; of two unconditional
ones the first stays), so what a policy means would depend on the library.
Here precedence is the order of the list, which lets the policy compiler
promise it: the launcher's own calls and the base layer first, then the child
policy, then what it extends, then the default.  Generating the program also
gives its exact size before anything loads it (the kernel takes at most
BPF_MAXINSNS instructions), and costs microseconds per rule.

The program: anything but x86_64, and x32 numbers, -> the bad-architecture
action; then a binary search over the calls that have rules; then that call's
rules in order; then the default.  It is built backwards, so that every jump
target (BPF jumps only forwards) is already placed when the jump is emitted,
and a conditional jump too long for BPF's 8-bit offsets gets a `ja` trampoline.
"""
import struct

MAX_INSNS = 4096                    # BPF_MAXINSNS
RET_ERRNO, RET_USER_NOTIF, RET_ALLOW = 0x00050000, 0x7FC00000, 0x7FFF0000
AUDIT_ARCH_X86_64, X32_BIT = 0xC000003E, 0x40000000
LOW32 = 0xFFFFFFFF

_LD_ABS, _JA, _JEQ, _JGT, _JGE, _JSET, _AND, _RET = 0x20, 0x05, 0x15, 0x25, 0x35, 0x45, 0x54, 0x06
_NR, _ARCH = 0, 4                   # offsets in struct seccomp_data; args[i] at 16 + 8 i, low word first


class _Program:
    """Instructions in reverse order.  A label is an instruction's index in that
    list; the instruction emitted last is the one that comes first."""

    def __init__(self):
        self.rev = []
        self.returns = {}           # value -> label of a `ret` already placed: rules share them

    def _emit(self, code, k, jt=0, jf=0):
        self.rev.append((code, jt, jf, k))
        return len(self.rev) - 1

    def _to(self, label):
        """Forward distance from the next instruction to `label`."""
        return len(self.rev) - 1 - label

    def ret(self, k):
        if k not in self.returns or self._to(self.returns[k]) > 255:
            self.returns[k] = self._emit(_RET, k)
        return self.returns[k]

    def goto(self, label):
        """`label`, reached from the next instruction emitted (a `ja` if it does not follow)."""
        return label if label == len(self.rev) - 1 else self._emit(_JA, self._to(label))

    def load(self, offset, then):
        self.goto(then)
        return self._emit(_LD_ABS, offset)

    def and_(self, k, then):
        self.goto(then)
        return self._emit(_AND, k)

    def jump(self, op, k, yes, no):
        """if (A op k) goto yes else goto no."""
        if yes == no:
            return yes
        # A trampoline goes right after the jump, which moves the other target one further away.
        if self._to(no) > 255 or (self._to(yes) > 255 and self._to(no) > 254):
            no = self._emit(_JA, self._to(no))
        if self._to(yes) > 255:
            yes = self._emit(_JA, self._to(yes))
        return self._emit(op, k, self._to(yes), self._to(no))

    def __len__(self):
        return len(self.rev)

    def image(self):
        return b"".join(struct.pack("<HBBI", c, jt, jf, k) for c, jt, jf, k in reversed(self.rev))


def _word_test(p, mask, value, yes, no):
    """(A & mask) == value, on one 32-bit word."""
    if mask == LOW32:
        return p.jump(_JEQ, value, yes, no)
    if value == 0:
        return p.jump(_JSET, mask, no, yes)
    if value == mask and mask & (mask - 1) == 0:
        return p.jump(_JSET, mask, yes, no)
    return p.and_(mask, p.jump(_JEQ, value, yes, no))


def _masked_eq(p, arg, mask, value, yes, no):
    if value & ~mask:
        return no                                       # can never hold
    label = yes
    for shift, offset in ((0, 16 + 8 * arg), (32, 20 + 8 * arg)):   # built backwards: the low word is tested last
        m, v = mask >> shift & LOW32, value >> shift & LOW32
        if m:
            label = p.load(offset, _word_test(p, m, v, label, no))
    return label


def _greater(p, arg, value, yes, no, or_equal):
    """arg > value (or >=), unsigned on 64 bits."""
    lo = p.load(16 + 8 * arg, p.jump(_JGE if or_equal else _JGT, value & LOW32, yes, no))
    hi_equal = p.jump(_JEQ, value >> 32, lo, no)
    return p.load(20 + 8 * arg, p.jump(_JGT, value >> 32, yes, hi_equal))


def _comparison(p, comp, yes, no):
    arg, op, a, b = comp
    if op == "masked_eq":
        return _masked_eq(p, arg, a, b, yes, no)
    if op == "ne":
        return _masked_eq(p, arg, (1 << 64) - 1, a, no, yes)
    if op in ("gt", "ge"):
        return _greater(p, arg, a, yes, no, op == "ge")
    if op in ("le", "lt"):                              # not (gt / ge)
        return _greater(p, arg, a, no, yes, op == "lt")
    raise ValueError(f"unknown comparison {op}")


def _single_test(comps):
    """(offset, op, k) when a rule is one test of one word of an argument that leaves the
    accumulator as loaded (an equality on a whole word, or one bit set); else None."""
    if len(comps) != 1 or comps[0][1] != "masked_eq":
        return None
    arg, _, mask, value = comps[0]
    if value & ~mask:
        return None
    words = [(shift, mask >> shift & LOW32, value >> shift & LOW32) for shift in (0, 32) if mask >> shift & LOW32]
    if len(words) != 1:
        return None
    shift, m, v = words[0]
    offset = 16 + 8 * arg + (4 if shift else 0)
    if m == LOW32:
        return offset, _JEQ, v
    if m == v and m & (m - 1) == 0:
        return offset, _JSET, m
    return None


def _dispatch(p, nrs, blocks, default):
    if len(nrs) <= 4:
        label = default
        for nr in reversed(nrs):
            label = p.jump(_JEQ, nr, blocks[nr], label)
        return label
    mid = len(nrs) // 2
    right = _dispatch(p, nrs[mid:], blocks, default)
    left = _dispatch(p, nrs[:mid], blocks, default)
    return p.jump(_JGE, nrs[mid], right, left)


def assemble(rules, default, bad_arch):
    """rules: [(syscall number, return value, comparisons)] in precedence order;
    a comparison is (arg, op, a, b) with op masked_eq (a mask, b value) or
    ne/lt/le/gt/ge (a the value), all on the 64-bit argument.
    Returns the program as bytes (8 per instruction)."""
    by_nr = {}
    for nr, ret, comps in rules:
        by_nr.setdefault(nr, []).append((ret, comps))
    p = _Program()
    bad = p.ret(bad_arch)
    otherwise = p.ret(default)
    blocks = {}
    for nr, block in by_nr.items():
        label, i = otherwise, len(block)
        while i:
            ret, comps = block[i - 1]
            word = _single_test(comps)
            if word is None:
                start = p.ret(ret)
                for comp in reversed(comps):
                    start = _comparison(p, comp, start, label)
                label, i = start, i - 1
                continue
            # A run of rules that each test the same word for the same answer (`in`, `not_in`,
            # `any_bits` expand to these): one load, then one test per rule.
            j = i - 1
            while j and block[j - 1][0] == ret and (_single_test(block[j - 1][1]) or (None,))[0] == word[0]:
                j -= 1
            for _, run_comps in reversed(block[j:i]):
                _, op, k = _single_test(run_comps)
                label = p.jump(op, k, p.ret(ret), label)      # (a fresh `ret` when the last is out of reach)
            label, i = p.load(word[0], label), j
        blocks[nr] = label
    native = _dispatch(p, sorted(blocks), blocks, otherwise)
    nr_check = p.load(_NR, p.jump(_JGE, X32_BIT, bad, native))
    p.load(_ARCH, p.jump(_JEQ, AUDIT_ARCH_X86_64, nr_check, bad))
    return p.image()
