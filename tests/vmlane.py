"""vmlane: run one command as root in a throw-away QEMU guest that has a real,
pure cgroup v2 hierarchy, and get its exit status and output back.

Why: hosts like the CI machine bind memory, pids and cpu to cgroup v1, so
cgroup v2 limits cannot be tested there, and the host's cgroup mounts must not
be touched.  The guest boots a stock Debian kernel with a small initramfs
written here (busybox-static and a few modules), sees the host's / read-only
through virtiofs with a tmpfs overlay on top (every write is thrown away),
mounts cgroup2 with nsdelegate on /sys/fs/cgroup, and runs the command.
stdout, stderr and the status come back on virtio-serial ports.

    python3 tests/vmlane.py [--timeout S] -- CMD [ARGS...]   # exit status = CMD's; 124 timeout; 125 VM failure
    import vmlane; r = vmlane.run(["/usr/bin/python3", "-c", "..."]) -> Result

Needs root (virtiofsd), qemu-system-x86, busybox-static and a kernel: an
installed linux-image-cloud-amd64, or one unpacked into the cache by
fetch_kernel() (apt-get download; nothing is installed).  KVM is used when
/dev/kvm can run a stock kernel (kvm_intel/kvm_amd), else TCG.
"""
import argparse
import glob
import io
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("SANDBOX_VM_CACHE", "/var/cache/sandbox-vm")
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
BUSYBOX = "/bin/busybox"
EXIT_TIMEOUT, EXIT_VMFAIL = 124, 125
PORTS = ("lane.stdout", "lane.stderr", "lane.status", "lane.diag")
MODULES = ("virtio_pci", "virtio_console", "overlay", "fuse", "virtiofs")

STAGE1 = r"""#!/bin/busybox sh
# PID 1 of the initramfs: a root made of the host's / (read-only) under a tmpfs overlay.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
die() { echo "lane: $*" >/dev/console; poweroff -f; }
for m in $(cat /lane/modules); do insmod /lane/mod/$m || die "insmod $m"; done
mkdir -p /lower /upper /root2
mount -t virtiofs -o ro hostroot /lower || die "virtiofs"
mount -t tmpfs -o mode=0755 tmpfs /upper && mkdir /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /root2 || die "overlay"
R=/root2
# tmpfs where an overlayfs upperdir or fresh scratch space is needed (an upperdir cannot be on overlayfs)
for d in var/tmp run; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/$d; done
mkdir -p $R/.lane && cp /bin/busybox /lane/stage2 /lane/cmd.sh $R/.lane/
n=0; while [ $n -lt 300 ]; do                  # the port names appear asynchronously
  [ "$(cat /sys/class/virtio-ports/*/name 2>/dev/null | grep -c lane)" = @NPORTS@ ] && break
  usleep 20000; n=$((n+1)); done
for p in /sys/class/virtio-ports/*; do ln -sf /dev/${p##*/} $R/.lane/$(cat $p/name); done
[ -e /dev/fuse ] && chmod 0666 /dev/fuse        # what udev would do
mount --move /proc $R/proc; mount --move /sys $R/sys; mount --move /dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/dev/shm
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $R/sys/fs/cgroup || die "cgroup2"
# switch_root, not chroot: user namespaces are refused inside a chroot
exec switch_root $R /.lane/busybox sh /.lane/stage2
"""

# Everything here runs from /.lane (tmpfs) and shell builtins, so that the watchdog still works
# when the host's files stop answering: a virtiofs request waits killably, which the kernel's
# hung-task detector does not report, so a hang would otherwise leave no trace at all.
STAGE2 = r"""B=/.lane/busybox
$B hostname lane; $B ip link set lo up 2>/dev/null
echo "boot=$($B cut -d' ' -f1 /proc/uptime)" >/.lane/lane.status
diag() {        # the kernel's last words, then every user task: state, wait channel, kernel stack
  echo "== kernel log, last lines:"; $B dmesg | $B tail -n 30
  for d in /proc/[0-9]*; do
    st=; pp=; name=
    while read -r k v; do
      case $k in Name:) name=$v;; State:) st=$v;; PPid:) pp=$v;; esac
    done < $d/status
    case ${d#/proc/}:$pp in 2:*|*:2) continue;; esac            # kernel threads
    read -r w < $d/wchan
    echo "== ${d#/proc/} ($name) ppid=$pp state=$st wchan=$w"
    while read -r l; do echo "     $l"; done < $d/stack
  done 2>/dev/null
}
( $B sleep @WATCHDOG@; diag >/.lane/lane.diag 2>&1
  echo "rc=124 watchdog=@WATCHDOG@" >/.lane/lane.status; $B poweroff -f ) &
/bin/sh /.lane/cmd.sh </dev/null >/.lane/lane.stdout 2>/.lane/lane.stderr
echo "rc=$? end=$($B cut -d' ' -f1 /proc/uptime)" >/.lane/lane.status
$B poweroff -f
"""


class Unavailable(Exception):
    """The lane cannot run here; the message says what is missing."""


class Result:
    __slots__ = ("returncode", "stdout", "stderr", "console", "diag", "wall_s", "accel")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _cpio(files):
    """An initramfs (cpio newc) from [(name, mode, data, rdev)]."""
    buf = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(files + [("TRAILER!!!", 0, b"", (0, 0))], start=1):
        nameb = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0)
        buf.write(b"070701" + "".join(f"{x:08x}" for x in fields).encode() + nameb)
        buf.write(b"\0" * (-(110 + len(nameb)) % 4) + data + b"\0" * (-len(data) % 4))
    return buf.getvalue()


def _version(vmlinuz):
    return os.path.basename(vmlinuz)[len("vmlinuz-"):]


def _moddir(vmlinuz):
    unpacked = os.path.join(os.path.dirname(os.path.dirname(vmlinuz)), "lib", "modules", _version(vmlinuz))
    return unpacked if os.path.isdir(unpacked) else f"/lib/modules/{_version(vmlinuz)}"


def find_kernel():
    """A kernel with virtiofs: installed cloud kernels first, then unpacked ones in the cache."""
    candidates = sorted(glob.glob("/boot/vmlinuz-*cloud*"), reverse=True)
    candidates += sorted(glob.glob(f"{CACHE}/*/boot/vmlinuz-*"), reverse=True)
    for k in candidates:
        if os.path.exists(os.path.join(_moddir(k), "modules.dep")):
            return k
    return None


def fetch_kernel():
    """Download Debian's current cloud kernel and unpack it into the cache (nothing is installed)."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True).stdout
    m = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", out)
    if not m:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        out = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True).stdout
        m = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", out)
    if not m:
        raise Unavailable("apt knows no linux-image-cloud-amd64 package")
    pkg, dest = m.group(1), os.path.join(CACHE, m.group(1))
    if not glob.glob(f"{dest}/boot/vmlinuz-*"):
        os.makedirs(CACHE, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=CACHE)
        try:
            subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg], cwd=tmp, check=True,
                           capture_output=True)
            subprocess.run(["dpkg-deb", "-x", glob.glob(f"{tmp}/*.deb")[0], f"{tmp}/x"], check=True)
            vmlinuz = glob.glob(f"{tmp}/x/boot/vmlinuz-*")[0]
            depmod = shutil.which("depmod") or "/usr/sbin/depmod"    # /usr/sbin may not be on PATH
            subprocess.run([depmod, "-b", f"{tmp}/x", _version(vmlinuz)], check=True)
            os.rename(f"{tmp}/x", dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return glob.glob(f"{dest}/boot/vmlinuz-*")[0]


def unavailable():
    """Why the lane cannot run here (None if it can)."""
    if os.geteuid() != 0:
        return "the VM lane needs root (virtiofsd exports the host's root read-only)"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), (BUSYBOX, "busybox-static"),
                          (VIRTIOFSD, "qemu-system-common")):
        if not shutil.which(tool):
            return f"{tool} is missing (apt install {package})"
    return None


def _modules(moddir):
    """The .ko files for MODULES and their dependencies, in load order; built-ins are skipped."""
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
    by_name = {re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(p)).replace("-", "_"): p for p in deps}
    order = []

    def visit(p):
        for d in reversed(deps.get(p, [])):
            visit(d)
        if p not in order:
            order.append(p)
    for name in MODULES:
        if name in by_name:
            visit(by_name[name])
    out = []
    for p in order:
        with open(os.path.join(moddir, p), "rb") as f:
            data = f.read()
        if p.endswith(".xz"):
            data = lzma.decompress(data)
        elif p.endswith(".zst"):
            data = subprocess.run(["zstd", "-dc", os.path.join(moddir, p)], check=True, capture_output=True).stdout
        out.append((re.sub(r"\.ko(\.\w+)?$", ".ko", os.path.basename(p)), data))
    return out


def _kvm_usable():
    # A PVM-only /dev/kvm (some sandboxed hosts) hangs a stock kernel: require real VMX/SVM.
    return (os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")) and \
        os.access("/dev/kvm", os.R_OK | os.W_OK)


def _labelled(name, text):
    return f"--- {name}:\n{text}" if text.strip() else ""


def _stop(p, grace):
    try:
        p.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout=2)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def run(argv, *, timeout=600, env=None, cwd="/", mem_mb=1536, smp=2):
    """Run argv as root in a fresh guest.  Raises Unavailable if no guest can start."""
    why = unavailable()
    if why:
        raise Unavailable(why)
    vmlinuz = find_kernel() or fetch_kernel()
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="vmlane.")
    procs = []
    try:
        genv = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8",
                "TMPDIR": "/var/tmp", "VMLANE_GUEST": "1"}
        genv.update(env or {})
        cmd = "#!/bin/sh\n" + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in genv.items())
        cmd += f"cd {shlex.quote(cwd)} || exit 126\nexec {' '.join(shlex.quote(a) for a in argv)}\n"
        # the guest's own watchdog fires first, leaving time to describe the hang before the host gives up
        watchdog = int(max(timeout - 40, timeout * 0.8))
        mods = _modules(_moddir(vmlinuz))
        with open(BUSYBOX, "rb") as f:
            busybox = f.read()
        files = [(d, stat.S_IFDIR | 0o755, b"", (0, 0)) for d in ("bin", "dev", "proc", "sys", "lane", "lane/mod")]
        files += [("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)), ("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
                  ("init", stat.S_IFREG | 0o755, STAGE1.replace("@NPORTS@", str(len(PORTS))).encode(), (0, 0)),
                  ("lane/stage2", stat.S_IFREG | 0o755, STAGE2.replace("@WATCHDOG@", str(watchdog)).encode(),
                   (0, 0)),
                  ("lane/cmd.sh", stat.S_IFREG | 0o755, cmd.encode(), (0, 0)),
                  ("lane/modules", stat.S_IFREG | 0o644, "".join(n + "\n" for n, _ in mods).encode(), (0, 0))]
        files += [(f"lane/mod/{n}", stat.S_IFREG | 0o644, d, (0, 0)) for n, d in mods]
        initrd = os.path.join(work, "initrd")
        with open(initrd, "wb") as f:
            f.write(_cpio(files))
        out = {n: os.path.join(work, n) for n in PORTS + ("console", "qemu.log", "virtiofsd.log")}
        for p in out.values():
            open(p, "wb").close()

        # virtiofsd serves a read-only bind of / from a private mount namespace (it has no
        # read-only option); non-recursive, so /proc, /sys and other host mounts stay out.
        sock, share = os.path.join(work, "fs.sock"), os.path.join(work, "share")
        os.mkdir(share)
        script = ('mount --bind / "$1" && mount -o remount,bind,ro "$1" && exec "$2" --socket-path="$3" '
                  '-o source="$1" -o cache=always -o sandbox=namespace -o no_posix_lock -o xattr')
        with open(out["virtiofsd.log"], "wb") as log:
            procs.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                           "sh", share, VIRTIOFSD, sock], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)            # the socket exists at bind(); give it a moment to listen()
        if not os.path.exists(sock):
            with open(out["virtiofsd.log"]) as f:
                raise Unavailable(f"virtiofsd did not start: {f.read()}")

        accel = "kvm" if _kvm_usable() else "tcg"
        qemu = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-m", str(mem_mb), "-smp", str(smp), "-kernel", vmlinuz, "-initrd", initrd,
                "-append", "console=ttyS0 panic=-1 oops=panic mitigations=off quiet loglevel=4",
                "-chardev", f"file,id=con,path={out['console']}", "-serial", "chardev:con",
                "-device", "virtio-serial-pci,id=vser",
                "-object", f"memory-backend-memfd,id=mem,size={mem_mb}M,share=on", "-numa", "node,memdev=mem",
                "-chardev", f"socket,id=fs,path={sock}", "-device", "vhost-user-fs-pci,chardev=fs,tag=hostroot",
                "-machine", "q35"]
        for i, name in enumerate(PORTS, 1):
            qemu += ["-chardev", f"file,id=p{i},path={out[name]}",
                     "-device", f"virtserialport,bus=vser.0,nr={i},chardev=p{i},name={name}"]
        # -cpu max under TCG turns on 5-level paging, which costs most of a second of boot
        qemu += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else \
            ["-accel", "tcg,thread=multi", "-cpu", "max,la57=off"]
        # coreutils timeout: qemu dies even if this process is killed
        with open(out["qemu.log"], "wb") as log:
            q = subprocess.Popen(["timeout", "-s", "KILL", str(int(timeout) + 15)] + qemu, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, start_new_session=True)
        procs.append(q)

        def read(name):
            with open(out[name], "rb") as f:
                return f.read().decode(errors="replace")

        # The command's status is the result: once it is written, a guest that is slow to power
        # off is stopped rather than waited for.
        # A dead virtiofsd leaves the guest waiting forever on its next file access: stop there.
        deadline, done_at, timed_out, fs_died = t0 + timeout, None, False, None
        while q.poll() is None:
            now = time.monotonic()
            if done_at is None and "rc=" in read("lane.status"):
                done_at = now
            if now > deadline or (done_at and now - done_at > 10):
                timed_out = done_at is None
                break
            if done_at is None and procs[0].poll() is not None:
                fs_died = f"vmlane: virtiofsd exited (status {procs[0].returncode}) while the guest ran\n"
                break
            time.sleep(0.1)
        _stop(q, 0)
        m = re.search(r"rc=(\d+)", read("lane.status"))
        rc = EXIT_TIMEOUT if timed_out else EXIT_VMFAIL if fs_died else int(m.group(1)) if m else EXIT_VMFAIL
        return Result(returncode=rc, stdout=read("lane.stdout"), stderr=read("lane.stderr") + (fs_died or ""),
                      console=_labelled("virtiofsd", read("virtiofsd.log")) + read("qemu.log") + read("console"),
                      diag=read("lane.diag"), wall_s=time.monotonic() - t0, accel=accel)
    finally:
        for p in reversed(procs):
            _stop(p, 2)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--fetch-kernel", action="store_true", help="download and unpack a kernel into the cache first")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.fetch_kernel:
        print(find_kernel() or fetch_kernel())
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        return 0
    try:
        r = run(argv, timeout=a.timeout)
    except Unavailable as e:
        print(f"vmlane: {e}", file=sys.stderr)
        return EXIT_VMFAIL
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode in (EXIT_TIMEOUT, EXIT_VMFAIL):
        sys.stderr.write(f"--- vmlane: guest console:\n{r.console[-3000:]}\n--- vmlane: tasks:\n{r.diag}\n")
    sys.stderr.write(f"--- vmlane: rc={r.returncode} accel={r.accel} wall={r.wall_s:.1f}s\n")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
