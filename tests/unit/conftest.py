"""Unit tests of the pure layer: in-process, nothing is run in a sandbox, together a few seconds.

Profiles load into a cache of the test's own (XDG_CACHE_HOME), never the caller's."""
import pytest


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
