"""Build hook: compile the C launcher (launcher/launcher.c) into
sandbox/libexec/sandbox-launch and ship the built-in profiles inside the
package.  Everything else is in pyproject.toml."""
import os
import shutil
import subprocess
import sysconfig
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = ["-O2", "-Wall", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"]


def compile_launcher(out):
    """musl's static start-up is cheaper than glibc's: glibc asks the CPU for its caches and
    features (cpuid, which traps to the hypervisor in a VM), 0.3 ms of every run here
    (bench/bench.py).  So musl-gcc when it is installed (apt install musl-tools), else the C
    compiler, static when libc.a is there; CC chooses one compiler and only that one."""
    src = os.path.join(HERE, "launcher", "launcher.c")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory() as headers:
        for cc, extra in _compilers(headers):
            try:
                subprocess.run([cc, *FLAGS, *extra, "-o", out, src], check=True, capture_output=True, text=True)
                return
            except FileNotFoundError:
                errors.append(f"{cc}: not installed")
            except subprocess.CalledProcessError as e:
                errors.append(f"{' '.join([cc, *extra])}:\n{e.stderr}")
    raise SystemExit("cannot build the launcher (apt install gcc libc6-dev; musl-tools makes it start faster):\n"
                     + "\n".join(errors))


def _compilers(headers):
    if os.environ.get("CC"):
        yield os.environ["CC"], ["-static"]
        yield os.environ["CC"], []
        return
    if shutil.which("musl-gcc") and os.path.isdir("/usr/include/linux"):
        # musl-gcc searches only musl's headers; the kernel's (linux-libc-dev) are added by name,
        # not all of /usr/include, where glibc's would shadow musl's.
        for name, path in (("linux", "/usr/include/linux"), ("asm-generic", "/usr/include/asm-generic"),
                           ("asm", _kernel_asm())):
            os.symlink(path, os.path.join(headers, name))
        yield "musl-gcc", ["-static", "-isystem", headers]
    yield "cc", ["-static"]
    yield "cc", []


def _kernel_asm():
    multiarch = sysconfig.get_config_var("MULTIARCH")      # Debian's x86_64-linux-gnu
    path = f"/usr/include/{multiarch}/asm"
    return path if multiarch and os.path.isdir(path) else "/usr/include/asm"


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
