"""plancache and hostfacts in-process: a kept plan is the plan a fresh build gives, and a
build asks the host nothing that hostfacts does not record -- a question asked behind its
back would be an answer no later run checks, and a kept plan that goes stale.

As root (CI) a plan holds host steps (a claimed host id) and is never kept: the tests that
keep one check exactly that.  tests/test_plancache.py runs this file again as the
unprivileged test user, where plans are kept."""
import builtins
import os
import sys

import pytest

from sandbox import hostfacts, hostids, plancache, runner
from sandbox.configfiles import builtin_dir, builtin_names

# Host reads that are no facts of their own: the caches, whose entries carry their own keys
# (profiles by their files' stamps, filters by policy and library), and a file whose stamp
# (a recorded stat) comes first: its content is that stamp's.  Writing a cache (its
# directories made on the way) is no question either.
CACHE_WRITES = ("write_atomic", "write_cache")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _host_profiles():
    """The built-in profiles whose root is host binds (image roots are never kept)."""
    import yaml
    out = []
    for name in builtin_names():
        chain, path = [], os.path.join(builtin_dir(), name + ".yaml")
        data = yaml.safe_load(open(path)) or {}
        while True:
            chain.append(data)
            parent = data.get("extends")
            if not parent:
                break
            data = yaml.safe_load(open(os.path.join(builtin_dir(), parent + ".yaml"))) or {}
        if not any("image" in (d.get("rootfs") or {}) for d in chain):
            out.append(name)
    return out


def _watch(monkeypatch, cache):
    """Every host read made outside hostfacts while a build is recorded, as (function, path)."""
    unseen, inside = [], [0]

    def question(fn):
        def asked(*args):
            inside[0] += 1
            try:
                return fn(*args)
            finally:
                inside[0] -= 1
        return asked

    def stamped(p):
        return any(q == "stat" and args == (p,) for q, args, _ in hostfacts._record)

    def writing_cache():
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name in CACHE_WRITES:
                return True
            frame = frame.f_back
        return False

    def spy(name, fn):
        def call(path, *args, **kw):
            p = os.fsdecode(path) if isinstance(path, (str, bytes)) else str(path)
            if hostfacts._record is not None and not inside[0] and not p.startswith(str(cache)) \
                    and not stamped(p) and not writing_cache():
                unseen.append((name, p))
            return fn(path, *args, **kw)
        return call

    monkeypatch.setattr(hostfacts, "QUESTIONS", {k: question(f) for k, f in hostfacts.QUESTIONS.items()})
    for name in ("stat", "lstat", "access", "listdir", "scandir", "readlink"):
        monkeypatch.setattr(os, name, spy(f"os.{name}", getattr(os, name)))
    monkeypatch.setattr(builtins, "open", spy("open", builtins.open))
    return unseen


@pytest.mark.parametrize("name", _host_profiles())
def test_a_build_asks_the_host_only_through_hostfacts(name, monkeypatch, own_cache, tmp_path):
    script = tmp_path / "main.py"
    script.write_text("print(1)\n")
    os.makedirs(tmp_path / "data")
    runner.prepare("shell", ["/bin/true"])      # the modules that build plans imported before watching
    unseen = _watch(monkeypatch, own_cache)
    for request in (dict(profile=name, argv=["/bin/true"]),
                    dict(profile=name, argv=["/bin/true"], binds=[f"{tmp_path}/data:/data"], env={"A": "1"}),
                    dict(profile=name, script=str(script))):
        for _ in range(2):                              # a cold build, then one from the profile cache
            plancache.record()
            try:
                plan = runner.prepare(**request)
            except Exception:
                plan = None                             # (an interpreter this host lacks: still watched)
            finally:
                facts = hostfacts.stop_recording()
            assert plan is None or facts, request
    assert not unseen, unseen


def test_a_kept_plan_runs_as_the_fresh_one(tmp_path):
    request = dict(profile="shell", argv=["/bin/sh", "-c", "echo hi"], binds=[f"{tmp_path}:/data"],
                   env={"A": "1"}, limits={"memory": "64M"})
    plancache.record()
    fresh = runner.prepare(**request)
    plancache.store(request, fresh)
    found = plancache.lookup(request)
    if hostids.caller_is_root():
        assert found is None                # a root caller's plan claims a host id per run: never kept
        return
    kept, holds = found
    assert holds()
    assert kept.encode() == fresh.encode()
    assert [s.name for s in kept.steps] == [s.name for s in fresh.steps]
    assert [s.hints for s in kept.steps] == [s.hints for s in fresh.steps]
    for attr in ("argv", "env", "cwd", "limits", "seccomp", "keep_workdir", "host_ids"):
        assert getattr(kept, attr) == getattr(fresh, attr), attr
    assert kept.profile.name == fresh.profile.name and kept.cgroup.reason == fresh.cgroup.reason


def test_the_code_that_builds_plans_is_a_fact():
    request = dict(profile="shell", argv=["/bin/true"])
    plancache.record()
    plancache.store(request, runner.prepare(**request))
    if hostids.caller_is_root():
        assert not os.path.exists(plancache._slot(plancache._key(request)))
        return
    import marshal
    with open(plancache._slot(plancache._key(request)), "rb") as f:
        _, kept_facts, _ = marshal.loads(f.read())
    stamped = {args[0] for q, args, _ in kept_facts if q == "stat"}
    import sandbox.mounts
    import sandbox.plan
    assert {sandbox.plan.__file__, sandbox.mounts.__file__} <= stamped


def test_a_changed_answer_is_a_miss(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    request = dict(profile="shell", argv=["/bin/true"], binds=[f"{src}:/data"])
    plancache.record()
    plancache.store(request, runner.prepare(**request))
    if hostids.caller_is_root():
        assert plancache.lookup(request) is None
        return
    plan, holds = plancache.lookup(request)
    assert holds()
    src.rmdir()
    assert not holds()                                      # the bind source is gone: build again
    _, holds_now = plancache.lookup(request)                # (the same key: the plan is found, ...
    assert not holds_now()                                  # ... its facts do not hold)
    assert plancache.lookup(dict(request, env={"B": "2"})) is None      # another request: another key


def test_a_damaged_fact_is_a_miss_not_an_error(tmp_path):
    request = dict(profile="shell", argv=["/bin/true"])
    plancache.record()
    plancache.store(request, runner.prepare(**request))
    if hostids.caller_is_root():
        return                                              # (never kept: test_a_changed_answer_is_a_miss)
    import marshal
    slot = plancache._slot(plancache._key(request))
    with open(slot, "rb") as f:
        key, facts, payload = marshal.loads(f.read())
    for damaged in ([("no such question", (), ("=", 1))], [("stat",)], [("stat", (1, 2, 3), ("=", 0))]):
        with open(slot, "wb") as f:
            f.write(marshal.dumps((key, damaged, payload)))
        _, holds = plancache.lookup(request)
        assert holds() is False, damaged


def test_hard_limits_are_read_as_the_resource_module_reads_them():
    import resource
    assert list(hostfacts.hard_limits()) == [resource.getrlimit(i)[1] for i in range(len(hostfacts.hard_limits()))]


def test_hard_limits_without_proc_come_from_the_resource_module(monkeypatch):
    import resource
    real_open = builtins.open

    def no_proc(path, *args, **kw):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *args, **kw)
    monkeypatch.setattr(builtins, "open", no_proc)
    assert list(hostfacts.hard_limits()) == [resource.getrlimit(i)[1] for i in range(resource.RLIMIT_RTTIME + 1)]
