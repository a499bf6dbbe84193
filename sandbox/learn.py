"""Learn mode: run a program under a filter that logs every system call
instead of denying any, then write the allow-list that lets the same run pass.
A judge admin derives a tight policy for a new language from its hello-world."""
import os
import time

from . import runner
from .errors import UsageError

LEARN_POLICY = {"name": "learn", "default": ("log",), "rules": []}


# clone3 passes its flags in memory a filter cannot read, so a learned clone3
# (libc creating a thread or a process) becomes what judge-strict and the
# default policy do: clone3 answers ENOSYS, libc falls back to clone, and clone
# is allowed without namespace flags only (mask: every CLONE_NEW* bit).
PROCESS_RULES = ["  - syscall: clone3",
                 "    action: errno ENOSYS",
                 "  - syscall: clone",
                 "    action: allow",
                 "    when: {arg0: {masked: 0x7E020080, eq: 0}}"]


def policy_yaml(names, argv, profile):
    # The command line on one line (a newline in `python3 -c` code would end the comment), bounded.
    command = repr(" ".join(argv)[:200])[1:-1]
    lines = [f"# Learned by `sandbox learn` on {time.strftime('%Y-%m-%d')} from: {command} (profile {profile})",
             "# Every call the run made is allowed (clone and clone3 without namespace flags);",
             "# any other call ends a run with status SYS, naming it.",
             f"description: allow-list learned from {os.path.basename(argv[0])}",
             "default_action: kill",
             "rules:",
             "  - action: allow",
             "    syscalls:"]
    lines += [f"      - {name}" for name in names if name not in ("clone", "clone3")]
    if "clone" in names or "clone3" in names:
        lines += PROCESS_RULES
    return "\n".join(lines) + "\n"


def learn(profile, output, argv=None, io=(None, None, None), **kw):
    """Run once under the learning filter; write the allow-list to `output`.
    `io` is (stdin, stdout, stderr) as runner.execute takes them.
    Returns (result, names learned, calls of a foreign ABI)."""
    plan = runner.prepare(profile, argv, seccomp_policy=LEARN_POLICY, **kw)
    result = runner.execute(plan, stdin=io[0], stdout=io[1], stderr=io[2])
    foreign = [c for c in result.seccomp_logged if c["arch"] != "x86_64"]
    names = sorted({c["name"] or str(c["number"]) for c in result.seccomp_logged if c["arch"] == "x86_64"})
    if not names:
        raise UsageError("the program made no system call under the learning filter: it did not start",
                         "sandbox learn", f"check that it runs: sandbox run --profile {plan.profile.name} ...")
    try:
        with open(output, "w") as f:
            f.write(policy_yaml(names, plan.argv, plan.profile.name))
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}", "--output", "choose a writable path") from None
    return result, names, foreign
