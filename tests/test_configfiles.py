"""One loader for the files a user writes (sandbox/configfiles.py): profiles and seccomp policies
are found, chained through `extends` and refused the same way; the cache is written atomically;
and the modules that load them import each other in one direction only."""
import ast
import os

import pytest

from conftest import REPO
from sandbox import configfiles, profile, seccomp_policy
from sandbox.errors import ProfileError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_profile_chain_longer_than_the_bound_is_refused(tmp_path):
    n = configfiles.MAX_CHAIN + 1
    for i in range(n):
        (tmp_path / f"p{i}.yaml").write_text(f"extends: ./p{i + 1}.yaml\n" if i + 1 < n else "hostname: deep\n")
    with pytest.raises(ProfileError) as e:
        profile.load(str(tmp_path / "p0.yaml"))
    assert e.value.where == f"p{configfiles.MAX_CHAIN - 1}.yaml: extends"
    assert f"extends chains more than {configfiles.MAX_CHAIN} files: p0.yaml -> p1.yaml -> p2.yaml" in e.value.what
    assert e.value.fix
    (tmp_path / f"p{n - 2}.yaml").write_text("hostname: deep\n")       # one file shorter: at the bound
    assert profile.load(str(tmp_path / "p0.yaml"))["hostname"] == "deep"


def test_a_policy_cycle_is_refused_as_a_profile_cycle_is(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: ./b.yaml\ndefault_action: allow\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ProfileError) as e:
        seccomp_policy.resolve(str(tmp_path / "a.yaml"))
    assert e.value.what == "extends forms a cycle: a.yaml -> b.yaml -> a.yaml", e.value     # test_extends_cycle's
    assert e.value.where == "b.yaml: extends" and e.value.fix


def test_a_missing_parent_is_named_where_the_extends_is(tmp_path):
    (tmp_path / "pol.yaml").write_text("extends: ./gone.yaml\ndefault_action: allow\n")
    with pytest.raises(ProfileError) as e:
        seccomp_policy.resolve(str(tmp_path / "pol.yaml"))
    assert e.value.where == "pol.yaml: extends"
    assert e.value.what == f"seccomp policy file {tmp_path / 'gone.yaml'} does not exist"


def test_write_atomic_makes_private_directories_and_leaves_no_temporary_file(cache):
    target = configfiles.cache_path("sub", "entry")
    assert target == os.path.join(cache, "sandbox", "sub", "entry")
    configfiles.write_atomic(target, b"one")
    assert open(target, "rb").read() == b"one"
    assert os.stat(os.path.dirname(target)).st_mode & 0o777 == 0o700
    os.mkdir(target + "-dir")
    with pytest.raises(OSError):                        # a directory cannot be replaced by a file
        configfiles.write_atomic(target + "-dir", b"two")
    assert configfiles.write_cache(target + "-dir", b"two") is False
    assert sorted(os.listdir(os.path.dirname(target))) == ["entry", "entry-dir"]


def _imports(path, package):
    """The package's modules a module imports, lazily inside functions included."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
            found.add(node.module.split(".")[1])
    return found


def test_the_loading_modules_are_in_no_import_circle():
    """profile -> seccomp_policy -> seccomp, and all of them -> configfiles/schema/yamlload: never back."""
    src = os.path.join(REPO, "sandbox")
    modules = {f[:-3] for f in os.listdir(src) if f.endswith(".py")}
    graph = {m: _imports(os.path.join(src, m + ".py"), "sandbox") & modules for m in modules}

    def reaches(start, goal):
        seen, todo = set(), list(graph[start])
        while todo:
            n = todo.pop()
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                todo += graph[n]
        return False
    for module in ("profile", "schema", "configfiles", "yamlload", "seccomp", "seccomp_policy", "errors"):
        assert not reaches(module, module), f"{module} imports itself through a circle"


def test_a_cached_profile_follows_edits_of_every_file_of_its_chain(tmp_path):
    """The cache entry is keyed by every file read: the profile, what it extends, the policy it names."""
    def write(name, text):
        path = tmp_path / name
        old = path.stat().st_mtime_ns if path.exists() else None
        path.write_text(text)
        if old is not None:                                 # a new mtime even within the clock's resolution
            os.utime(path, ns=(old + 10**9, old + 10**9))
    write("child.yaml", "extends: ./parent.yaml\nseccomp: ./pol.yaml\n")
    write("parent.yaml", "hostname: one\n")
    write("pol.yaml", "default_action: allow\n")
    child = str(tmp_path / "child.yaml")
    assert profile.load(child)["hostname"] == "one" and profile.load(child)["seccomp"]["default"] == ("allow",)
    write("parent.yaml", "hostname: two\n")
    assert profile.load(child)["hostname"] == "two"
    write("pol.yaml", "default_action: log\n")
    assert profile.load(child)["seccomp"]["default"] == ("log",)
    os.unlink(tmp_path / "parent.yaml")
    with pytest.raises(ProfileError) as e:
        profile.load(child)
    assert e.value.where == "child.yaml: extends" and "parent.yaml does not exist" in e.value.what
