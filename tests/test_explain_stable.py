"""`--explain` of every built-in profile, compared with the text recorded in
tests/explain_golden.txt: a refactoring of how steps build their launcher ops
must not change what a user is shown.

The cgroup step depends on the host's delegation and is left out; the test's
fresh home is written $HOME.  A deliberate change of the text: regenerate the file with
SANDBOX_WRITE_EXPLAIN=1 pytest tests/test_explain_stable.py, and review its diff.
"""
import os
import re

import pytest

from conftest import no_traceback
from sandbox import profile as profile_mod

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explain_golden.txt")
VARIANTS = {"plain": [],
            "options": ["--bind", "/etc/hostname:/box/h", "--env", "A=1", "--cwd", "/tmp", "--limit", "processes=3"]}


def _host_independent(text, home):
    # The cgroup step: "no cgroup: why" or where the run's cgroup goes; keep its heading only.
    text = re.sub(r"(?m)^(  1\. cgroup +).*\n(?: {7}.*\n)*", r"\1(depends on the host)\n", text + "\n")
    return text.replace(home, "$HOME")


def _explain_all(sbx):
    sections = []
    for name in profile_mod.builtin_names():
        for variant, options in VARIANTS.items():
            # a fresh home: an image store other tests filled would change py311-image's text
            r = sbx("run", "--profile", name, *options, "--explain", "--", "/bin/true", "x", env={"HOME": sbx.box})
            no_traceback(r)
            text = r.stdout.decode() if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.decode()}"
            sections.append(f"=== {name} {variant}\n{_host_independent(text.rstrip(), sbx.box)}")
    return "".join(sections)


def test_explain_of_every_builtin_profile_is_unchanged(sbx):
    got = _explain_all(sbx)
    if os.environ.get("SANDBOX_WRITE_EXPLAIN"):
        with open(GOLDEN, "w") as f:
            f.write(got)
        pytest.skip(f"wrote {GOLDEN}")
    with open(GOLDEN) as f:
        want = f.read()
    assert got.split("\n") == want.split("\n")
