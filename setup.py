"""Build hook: compile the C launcher (launcher/launcher.c) into
sandbox/libexec/sandbox-launch and ship the built-in profiles inside the
package.  Everything else is in pyproject.toml."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = ["-O2", "-Wall", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"]


def compile_launcher(out):
    cc = os.environ.get("CC", "cc")
    src = os.path.join(HERE, "launcher", "launcher.c")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # Static when libc.a is there: it starts faster and needs nothing at run time.
    for extra in (["-static"], []):
        try:
            subprocess.run([cc, *FLAGS, *extra, "-o", out, src], check=True, capture_output=True, text=True)
            return
        except FileNotFoundError:
            raise SystemExit(f"cannot build the launcher: no C compiler '{cc}' (apt install gcc libc6-dev)") from None
        except subprocess.CalledProcessError as e:
            error = e.stderr
    raise SystemExit(f"cannot build the launcher:\n{error}")


class BuildPy(build_py):
    def run(self):
        super().run()
        root = HERE if getattr(self, "editable_mode", False) else self.build_lib
        compile_launcher(os.path.join(root, "sandbox", "libexec", "sandbox-launch"))
        if not getattr(self, "editable_mode", False):   # a source checkout finds ../profiles itself
            target = os.path.join(self.build_lib, "sandbox", "profiles")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(HERE, "profiles"), target)


class PlatformDistribution(Distribution):
    """The wheel carries a compiled program: tag it for this platform."""
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPy}, distclass=PlatformDistribution)
