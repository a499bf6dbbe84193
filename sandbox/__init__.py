"""sandbox: a rootless sandbox runner for untrusted code.

    import sandbox
    result = sandbox.run("py311", script="hello.py", limits={"cpu_time": "1s"})
    print(result.status, result.cpu_time_s, result.stdout)

Attributes are imported lazily so that `sandbox run` starts fast; `__version__` too (the CLI's
run needs it only for the report, which it imports while the launcher builds the sandbox).
"""

__all__ = ["run", "prepare", "execute", "Result", "Profile", "load_profile",
           "SandboxError", "ProfileError", "UsageError", "SetupError"]


def __getattr__(name):
    if name == "__version__":
        from .version import __version__
        return __version__
    if name in ("run", "prepare", "execute"):
        from . import runner
        return getattr(runner, name)
    if name == "Result":
        from .report import Result
        return Result
    if name == "Profile":
        from .profile import Profile
        return Profile
    if name == "load_profile":
        from .profile import load
        return load
    if name in ("SandboxError", "ProfileError", "UsageError", "SetupError"):
        from . import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
