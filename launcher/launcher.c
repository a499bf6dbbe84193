/*
 * sandbox-launch: executes a plan built by the Python package (sandbox/plan.py).
 *
 * Why a separate C program: the pre-exec work (namespaces, mounts, pivot_root,
 * capabilities) must run between fork and exec.  Running Python there is unsafe
 * when the caller is a threaded program (a web server, a queue worker), and it
 * is slow.  So Python decides *what* happens and in which order; this program
 * only carries the ops out, in the order it receives them, and says which op
 * failed and why.  It makes no policy decisions of its own.
 *
 * Processes:
 *   runner (Python)  --posix_spawn-->  launcher (this, host namespaces)
 *       --clone(NEWUSER|NEWPID)-->  init (pid 1 of the sandbox: builds the
 *       mount tree, then supervises)  --fork-->  program (pid 2: drops
 *       privileges, execs)
 *
 * The protocol (its Python side: sandbox/launch.py; tests/test_launch_protocol.py
 * checks that the two agree).
 *
 * File descriptors on entry (every other one is closed at start):
 *   0,1,2  the program's stdio
 *   3      PLAN_FD: the plan (a memfd): "SBX1" then ops, each NAME NARGS ARGS...,
 *          every token NUL-terminated.  The ops and their argument counts are
 *          the OPS table below (`sandbox-launch --ops` prints it); a plan that
 *          names another op, or gives an op another number of arguments, fails
 *          with an E record naming the op
 *   4      ERR_FD: the error pipe (close-on-exec), written by the launcher until
 *          clone, then by init and the program (a failed exec included):
 *            E <op> <errno> <text>   op <op> (its index in the plan, from 0;
 *                                    -1 before the first) failed; the last
 *                                    record, the writer exits 125
 *          EOF without a record means the program was exec'd
 *   5      STATUS_FD: the status pipe (close-on-exec), one record a line:
 *            I <pid>                 init's pid as the runner's namespace sees
 *                                    it (the launcher, right after clone)
 *            D <what>                degraded: "chroot" (pivot_root was
 *                                    impossible)
 *            S <cpu_us> <mem> <procs> <init_utime_us> <init_stime_us>
 *              <mem_processes> <mem_sysv_shm> <mem_dev_shm>
 *                                    a sample (init, every `sample` ms; a
 *                                    slow reader may lose one): cpu_us
 *                                    includes what vanished unreaped; mem is
 *                                    the sum of the last three
 *            Y <nr> <arch>           a logged syscall (seccomp notification,
 *                                    once per number), which went on
 *            V <nr> <arch> <arg0> ... <arg5>
 *                                    a syscall the policy kills: the run ends
 *            T <what>                init ended the run because the program
 *                                    tampered with it: rlimit_cpu,
 *                                    rlimit_nofile, oom_score_adj
 *            X <wstatus> <init_utime_us> <init_stime_us> <t_fork_ns> <t_end_ns>
 *              <cpu_vanished_us> <samples>
 *                                    the program ended (init; times
 *                                    CLOCK_MONOTONIC); init's last record
 *            L <utime_us> <stime_us> <maxrss_kb> <nvcsw> <nivcsw>
 *                                    rusage of init's whole tree (the
 *                                    launcher, once init is reaped; the last)
 *          While init supervises the pipe is non-blocking; Y, V, T and X are
 *          written blocking all the same: the runner must not miss them
 *   6      NOTIFY_FD: not open on entry.  In the program process, from fork to
 *          exec: the socket on which it hands its seccomp listener to init
 *          (close-on-exec; the filter allows exactly this sendmsg)
 *   7      WORKDIR_FD (optional): a unix socket from the runner: with a
 *          "keepdir" op, the launcher sends the run's working directory (a
 *          tmpfs of the sandbox) over it as a directory descriptor
 *          (SCM_RIGHTS), so the runner reads the files left there after the
 *          run and the tmpfs vanishes when it closes the descriptor
 *   8      GATE_FD (optional): a pipe from the runner.  Init reads one byte
 *          from it before it forks the program: "g" goes on; anything else
 *          (EOF: the runner closed it) ends the run there, before the program
 *          exists, init exiting 0 with no X record.  The runner checks a kept
 *          plan (sandbox/plancache.py) while the sandbox is being built
 *
 * Exit status: 0 after a run (whatever the program did), 125 when the
 * launcher itself failed before the sandbox existed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <time.h>
#include <unistd.h>

#define PLAN_FD 3
#define ERR_FD 4
#define STATUS_FD 5
#define NOTIFY_FD 6       /* the program process hands the seccomp listener to init here */
#define WORKDIR_FD 7      /* the launcher hands the kept working directory to the runner here */
#define GATE_FD 8         /* init waits here for the runner's go before it forks the program */
#define MAX_TOKENS 65536
#define MAX_SLOTS 256
#define MAX_OURS 64

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
struct mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static char **tok;        /* the plan, tokenised in place */
static int ntok;
static int cur_op = -1;   /* index of the op being executed, for error records */
static int slots[MAX_SLOTS];
static char root[PATH_MAX];          /* the new root while it is being built */
static dev_t ours[MAX_OURS];         /* filesystems we created: mount points may be made there */
static int nours;
static int sample_ms = 10;
static volatile pid_t init_pid;      /* in the launcher: the child to kill on SIGTERM */
static int notify_sock[2] = {-1, -1}; /* init <-> program: the seccomp listener travels here */
static int gated;                    /* GATE_FD was open on entry */
static int cgroup_fd = -1;           /* the run's cgroup, init is born in it */
static int helper_sock[2] = {-1, -1}; /* init asks the launcher for a FUSE daemon here */
static pid_t fuse_pid;               /* in the launcher: that daemon */
static char fuse_bin[PATH_MAX] = "/usr/bin/fuse-overlayfs";
static char cgroup_dir[PATH_MAX];
/* outmap: the launcher writes init's id maps from outside (a root caller mapping the sandbox
 * onto an unprivileged host id; newuidmap for subordinate ranges).  Empty: init maps itself. */
static char outmap_mode[16];
static char outmap_uid[256], outmap_gid[256];
static int log_all;                  /* notifications mean "log and continue" for every call (learn mode) */
static unsigned char log_nr[1024];   /* ... or for these x86_64 numbers; any other notification is a kill */
struct kill_rule { unsigned nr, ncmp, arg[6]; unsigned long long mask[6], value[6]; };
static struct kill_rule *kills;      /* ... except where one of these matches: a kill among logs */
static int nkills;

/* ------------------------------------------------------------ reporting */

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        buf += n; len -= (size_t)n;
    }
}

static void status(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) write_all(STATUS_FD, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Report the failing op with errno and a short description, then exit.
 * The runner turns (op, errno) into a message with the step name and a fix. */
static void __attribute__((noreturn, format(printf, 2, 3))) fail(int err, const char *fmt, ...) {
    char text[512], buf[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++) if (*p == '\n') *p = ' ';
    int n = snprintf(buf, sizeof buf, "E %d %d %s\n", cur_op, err, text);
    write_all(ERR_FD, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    _exit(125);
}

static long long usec(struct timeval tv) { return tv.tv_sec * 1000000LL + tv.tv_usec; }

static long long num(const char *s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) fail(EINVAL, "bad number '%s' in plan", s);
    return v;
}

static void write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail(errno, "open %s", path);
    if (write(fd, data, strlen(data)) < 0) fail(errno, "write '%s' to %s", data, path);
    close(fd);
}

/* fd over a unix socket, with one byte of data. */
static int send_fd(int sock, int fd) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    char byte = 0;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

/* ------------------------------------------------------------ paths in the new root */

static int is_ours(dev_t dev) {
    for (int i = 0; i < nours; i++) if (ours[i] == dev) return 1;
    return 0;
}

static void add_ours(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && nours < MAX_OURS) ours[nours++] = st.st_dev;
}

/* out = dir + "/" + name, refusing to truncate. */
static void join(char *out, const char *dir, const char *name) {
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) fail(ENAMETOOLONG, "%s/%s", dir, name);
}

static void in_root(char *out, const char *rel) {
    if (rel[0] != '/') fail(EINVAL, "path '%s' is not absolute", rel);
    if (snprintf(out, PATH_MAX, "%s%s", root, rel) >= PATH_MAX) fail(ENAMETOOLONG, "%s", rel);
}

/* Create the missing directories of an absolute in-root path, component by
 * component, refusing symlinks and refusing to create anything on a filesystem
 * we did not make ourselves: a mount point must never be created on a host
 * directory that a bind made visible. */
static void make_dirs(const char *rel, int last_too) {
    char path[PATH_MAX], built[PATH_MAX];
    snprintf(path, sizeof path, "%s", rel);
    snprintf(built, sizeof built, "%s", root);
    char *save, *comp = strtok_r(path, "/", &save);
    while (comp) {
        char *next = strtok_r(NULL, "/", &save);
        if (!next && !last_too) break;
        if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0) fail(EINVAL, "'%s' contains '%s'", rel, comp);
        size_t len = strlen(built);
        if (len + 1 + strlen(comp) >= sizeof built) fail(ENAMETOOLONG, "%s", rel);
        struct stat parent;
        if (stat(built, &parent) < 0) fail(errno, "stat %s", built + strlen(root));
        built[len] = '/';
        strcpy(built + len + 1, comp);
        struct stat st;
        if (lstat(built, &st) == 0) {
            if (S_ISLNK(st.st_mode)) fail(ELOOP, "mount point %s passes through the symlink %s", rel, built + strlen(root));
            if (!S_ISDIR(st.st_mode)) fail(ENOTDIR, "%s is not a directory", built + strlen(root));
        } else {
            if (!is_ours(parent.st_dev))
                fail(EROFS, "cannot create %s: its parent comes from the host; create it on the host first", built + strlen(root));
            if (mkdir(built, 0755) < 0 && errno != EEXIST) fail(errno, "mkdir %s", built + strlen(root));
        }
        comp = next;
    }
}

/* A mount point for a bind: a directory for a directory, an empty file otherwise. */
static void make_mountpoint(const char *rel, int is_dir) {
    char full[PATH_MAX];
    in_root(full, rel);
    make_dirs(rel, is_dir);
    if (is_dir) return;
    struct stat st;
    if (lstat(full, &st) == 0) {
        if (S_ISLNK(st.st_mode)) fail(ELOOP, "mount point %s is a symlink", rel);
        return;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", full);
    char *slash = strrchr(dir, '/');
    *slash = 0;
    struct stat parent;
    if (stat(dir, &parent) < 0) fail(errno, "stat parent of %s", rel);
    if (!is_ours(parent.st_dev))
        fail(EROFS, "cannot create %s: its directory comes from the host; create it on the host first", rel);
    int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) fail(errno, "create mount point %s", rel);
    close(fd);
}

/* Apply nosuid,nodev (and ro) to a mount and everything below it. */
static void restrict_mount(const char *full, const char *rel, int ro) {
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0);
    if (syscall(SYS_mount_setattr, AT_FDCWD, full, AT_RECURSIVE, &attr, sizeof attr) == 0) return;
    if (errno != ENOSYS) fail(errno, "mount_setattr %s", rel);
    /* Kernels before 5.12: remount the top mount only, keeping the flags the
     * kernel locked when the mount was copied into our namespace. */
    struct statvfs sv;
    if (statvfs(full, &sv) < 0) fail(errno, "statvfs %s", rel);
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
    if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    if (sv.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    if (mount(NULL, full, NULL, flags, NULL) < 0) fail(errno, "remount %s", rel);
}

/* ------------------------------------------------------------ ops run by init */

/* outmap MODE UIDMAP GIDMAP (the launcher, before clone): init's maps are written from
 * outside, once init exists.  "write": we are root and write them ourselves (a root
 * caller's sandbox runs as an unprivileged host id; init then takes it with `setids`);
 * root's supplementary groups go first: init inherits our groups, and a user namespace
 * can never drop them.  "newidmap": the setuid helpers newuidmap/newgidmap (package
 * uidmap) map the caller's subordinate ranges, which only they may. */
static void op_outmap(char **a, int nargs) {
    int write = !strcmp(a[0], "write");
    if (!write && strcmp(a[0], "newidmap")) fail(EINVAL, "unknown id map mode '%s'", a[0]);
    snprintf(outmap_mode, sizeof outmap_mode, "%s", a[0]);
    snprintf(outmap_uid, sizeof outmap_uid, "%s", a[1]);
    snprintf(outmap_gid, sizeof outmap_gid, "%s", a[2]);
    if (write && setgroups(0, NULL) < 0) fail(errno, "drop supplementary groups");
}

/* newuidmap PID TRIPLES... (or newgidmap), and wait for it. */
static void run_idmap_tool(const char *tool, pid_t pid, const char *map) {
    char copy[256], pidtext[24], *argv[40];
    int n = 0;
    snprintf(copy, sizeof copy, "%s", map);
    snprintf(pidtext, sizeof pidtext, "%d", (int)pid);
    argv[n++] = (char *)tool;
    argv[n++] = pidtext;
    for (char *save, *w = strtok_r(copy, " ", &save); w && n < 39; w = strtok_r(NULL, " ", &save)) argv[n++] = w;
    argv[n] = NULL;
    pid_t child = fork();
    if (child < 0) fail(errno, "fork %s", tool);
    if (child == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); }
        execv(tool, argv);
        _exit(127);
    }
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail(EPERM, "%s %s %s refused the subordinate ids (exit %d)", tool, pidtext, map,
             WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* In the launcher, right after clone: init's maps, then the go-ahead. */
static void write_outmap(pid_t pid) {
    char path[64];
    if (!strcmp(outmap_mode, "newidmap")) {
        run_idmap_tool("/usr/bin/newuidmap", pid, outmap_uid);
        run_idmap_tool("/usr/bin/newgidmap", pid, outmap_gid);
        return;
    }
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    write_file(path, "deny");
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    write_file(path, outmap_uid);
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    write_file(path, outmap_gid);
}

/* setids UID GID (init, after the bind sources are held): become the mapped ids.  With a
 * map written from outside, init starts as the caller's host id, which the map leaves out;
 * the sources were opened with the caller's access, and from here on everything (mount
 * points, tmpfs roots, the program) belongs to the sandbox's own id. */
static void op_setids(char **a, int nargs) {
    gid_t gid = (gid_t)num(a[1]);
    uid_t uid = (uid_t)num(a[0]);
    /* With subordinate ids init is uid 0 inside, and leaving uid 0 would drop the capabilities
     * it still needs for the mounts: keep them (the program drops its own later). */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(errno, "PR_SET_KEEPCAPS");
    if (setresgid(gid, gid, gid) < 0) fail(errno, "setresgid(%s)", a[1]);
    if (setresuid(uid, uid, uid) < 0) fail(errno, "setresuid(%s)", a[0]);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &hdr, caps) < 0) fail(errno, "capget");
    caps[0].effective = caps[0].permitted;          /* KEEPCAPS keeps permitted, clears effective */
    caps[1].effective = caps[1].permitted;
    if (syscall(SYS_capset, &hdr, caps) < 0) fail(errno, "capset");
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    /* A change of uid makes a process non-dumpable; init's own /proc files must stay
     * its own until fork (it writes them during setup). */
    prctl(PR_SET_DUMPABLE, 1);
}

static void op_idmap(char **a, int nargs) {
    char buf[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(buf, sizeof buf, "%s %s 1", a[0], a[1]);
    write_file("/proc/self/uid_map", buf);
    snprintf(buf, sizeof buf, "%s %s 1", a[2], a[3]);
    write_file("/proc/self/gid_map", buf);
}

static void op_hold(char **a, int nargs) {
    int slot = (int)num(a[0]);
    if (slot < 0 || slot >= MAX_SLOTS) fail(EINVAL, "slot %d", slot);
    int fd = open(a[1], O_PATH | O_CLOEXEC);
    if (fd < 0) fail(errno, "open bind source %s", a[1]);
    slots[slot] = fd;
}

static void op_root(char **a, int nargs) {
    char data[64];
    snprintf(root, sizeof root, "%s", a[0]);
    snprintf(data, sizeof data, "mode=0755,size=%s", a[1]);
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, data) < 0) fail(errno, "mount tmpfs on %s", root);
    add_ours(root);
}

/* overlay BACKEND UPPER WORK LOWER...: after `root` (a tmpfs at the base),
 * mount the image's layers (slots, top first) with a writable layer on top,
 * and make the merged tree the new root.  UPPER/WORK are slots of a kept
 * directory, or "-" for directories on the tmpfs (thrown away with it).
 * Layers are named /proc/self/fd/N: they were opened before the tmpfs could
 * hide them. */
static void fuse_overlay(const char *lowers, const char *upper, const char *work, const char *merged,
                         const char *hostroot);

static void op_overlay(char **a, int nargs) {
    char upper[PATH_MAX], work[PATH_MAX], merged[PATH_MAX], lowers[PATH_MAX], data[3 * PATH_MAX + 64];
    const char *names[2] = {"upper", "work"};
    char *dirs[2] = {upper, work};
    for (int i = 0; i < 2; i++) {
        if (!strcmp(a[1 + i], "-")) {
            join(dirs[i], root, names[i]);
            if (mkdir(dirs[i], 0755) < 0) fail(errno, "mkdir the overlay's %s", names[i]);
        } else if (strcmp(a[0], "kernel")) {
            snprintf(dirs[i], PATH_MAX, "%s", a[1 + i]);               /* fuse: a host path */
        } else {
            snprintf(dirs[i], PATH_MAX, "/proc/self/fd/%d", slots[num(a[1 + i])]);
        }
    }
    join(merged, root, "merged");
    if (mkdir(merged, 0755) < 0) fail(errno, "mkdir the overlay's mount point");
    size_t off = 0;
    lowers[0] = 0;
    int fuse = strcmp(a[0], "kernel") != 0;
    for (int i = 3; i < nargs; i++) {
        /* kernel: held descriptors; fuse: host paths (the daemon re-resolves them by path) */
        int n = fuse ? snprintf(lowers + off, sizeof lowers - off, "%s%s", off ? ":" : "", a[i])
                     : snprintf(lowers + off, sizeof lowers - off, "%s/proc/self/fd/%d", off ? ":" : "", slots[num(a[i])]);
        if (n < 0 || (size_t)n >= sizeof lowers - off) fail(E2BIG, "too many layers");
        off += (size_t)n;
    }
    if (!strcmp(a[0], "kernel")) {
        if (snprintf(data, sizeof data, "lowerdir=%s,upperdir=%s,workdir=%s,userxattr", lowers, upper, work) >= (int)sizeof data)
            fail(E2BIG, "overlay options too long");
        if (mount("overlay", merged, "overlay", MS_NOSUID | MS_NODEV, data) < 0) fail(errno, "mount overlayfs");
    } else {
        /* The FUSE daemon needs a root that pivot_root will not move (pivot_root re-roots
         * every process of the namespace whose root is the old one): it takes an rbind of
         * our / under the build tmpfs.  Its mount, made there, reaches our merged tree
         * through shared propagation, which we undo before anything else (pivot_root
         * refuses shared mounts, and nothing may propagate later). */
        char hostroot[PATH_MAX];
        join(hostroot, root, "hostroot");
        if (mkdir(hostroot, 0755) < 0) fail(errno, "mkdir the FUSE daemon's root");
        if (mount(NULL, root, NULL, MS_SHARED, NULL) < 0) fail(errno, "make the build tmpfs shared");
        fuse_overlay(lowers, upper, work, merged, hostroot);
        if (mount(NULL, root, NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(errno, "make the build tmpfs private");
    }
    snprintf(root, sizeof root, "%s", merged);
    add_ours(root);
}

static void op_bind(char **a, int nargs) {
    int slot = (int)num(a[0]);
    if (slot < 0 || slot >= MAX_SLOTS || slots[slot] < 0) fail(EINVAL, "bind of an unheld source");
    int fd = slots[slot];
    slots[slot] = -1;
    const char *rel = a[1];
    int ro = (int)num(a[2]);
    struct stat st;
    if (fstat(fd, &st) < 0) fail(errno, "stat bind source");
    make_mountpoint(rel, S_ISDIR(st.st_mode));
    char src[64], full[PATH_MAX];
    snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
    in_root(full, rel);
    if (mount(src, full, NULL, MS_BIND | MS_REC, NULL) < 0) fail(errno, "bind mount onto %s", rel);
    restrict_mount(full, rel, ro);
    close(fd);
}

/* copy SLOT DEST: a held host file copied into a tmpfs of ours (files_in of a
 * kept working directory: the program may rewrite it, and the runner reads
 * the directory back without the binds).  Created by init, so the program's
 * uid owns it; the tmpfs's size cap bounds it. */
static void op_copy(char **a, int nargs) {
    int slot = (int)num(a[0]);
    if (slot < 0 || slot >= MAX_SLOTS || slots[slot] < 0) fail(EINVAL, "copy of an unheld source");
    char src[64], full[PATH_MAX], dir[PATH_MAX], buf[65536];
    snprintf(src, sizeof src, "/proc/self/fd/%d", slots[slot]);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) fail(errno, "open the source of %s", a[1]);
    close(slots[slot]);
    slots[slot] = -1;
    in_root(full, a[1]);
    make_dirs(a[1], 0);
    snprintf(dir, sizeof dir, "%s", full);
    *strrchr(dir, '/') = 0;
    struct stat parent;
    if (stat(dir, &parent) < 0) fail(errno, "stat the directory of %s", a[1]);
    if (!is_ours(parent.st_dev)) fail(EROFS, "cannot copy %s: its directory comes from the host", a[1]);
    int out = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0) fail(errno, "create %s", a[1]);
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0) fail(errno, "read the source of %s", a[1]);
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) fail(errno, "write %s", a[1]);
            off += w;
        }
    }
    close(in);
    close(out);
}

static void op_symlink(char **a, int nargs) {
    char full[PATH_MAX];
    in_root(full, a[1]);
    make_dirs(a[1], 0);
    if (symlink(a[0], full) < 0) fail(errno, "symlink %s -> %s", a[1], a[0]);
}

static void op_tmpfs(char **a, int nargs) {
    char full[PATH_MAX], data[128];
    in_root(full, a[0]);
    make_dirs(a[0], 1);
    snprintf(data, sizeof data, "size=%s,mode=%s,nr_inodes=%s", a[1], a[2], a[3]);
    if (mount("tmpfs", full, "tmpfs", MS_NOSUID | MS_NODEV, data) < 0) fail(errno, "mount tmpfs on %s (%s)", a[0], data);
    add_ours(full);
}

/* /proc of the sandbox's own pid namespace.  It must be mounted while the
 * host's /proc is still visible (the kernel refuses a new procfs in a user
 * namespace otherwise), i.e. before pivot_root.  The parts that reach host
 * state are then made read-only, as bubblewrap does. */
static void op_proc(char **a, int nargs) {
    char full[PATH_MAX], sub[PATH_MAX];
    in_root(full, a[0]);
    make_dirs(a[0], 1);
    if (mount("proc", full, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail(errno, "mount proc on %s", a[0]);
    static const char *cover[] = {"sys", "sysrq-trigger", "irq", "bus", NULL};
    for (int i = 0; cover[i]; i++) {
        join(sub, full, cover[i]);
        if (access(sub, F_OK) < 0) continue;
        if (mount(sub, sub, NULL, MS_BIND | MS_REC, NULL) < 0) fail(errno, "bind %s/%s", a[0], cover[i]);
        restrict_mount(sub, cover[i], 1);
    }
    /* Keys and their owners are the host's, whatever the namespace (they name
     * the caller's keys): /dev/null over them, read-only.  Not nodev: that
     * would make it unreadable, and a program must see an empty file. */
    static const char *mask[] = {"keys", "key-users", NULL};
    for (int i = 0; mask[i]; i++) {
        join(sub, full, mask[i]);
        if (access(sub, F_OK) < 0) continue;
        struct statvfs sv;   /* the flags the kernel locked on the host's /dev must be kept */
        if (mount("/dev/null", sub, NULL, MS_BIND, NULL) < 0 || statvfs(sub, &sv) < 0 ||
            mount(NULL, sub, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC |
                  (sv.f_flag & ST_NODEV ? MS_NODEV : 0) | (sv.f_flag & ST_NOATIME ? MS_NOATIME : 0) |
                  (sv.f_flag & ST_RELATIME ? MS_RELATIME : 0), NULL) < 0)
            fail(errno, "mask %s/%s", a[0], mask[i]);
    }
}

/* The session keyring is inherited across fork and exec: without a fresh one
 * the program would hold the caller's keys (and read their payloads, wherever
 * keyctl is allowed).  Joining an anonymous one leaves nothing of them. */
static void op_keyring(char **a, int nargs) {
    if (syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0) fail(errno, "join a new session keyring");
}

/* A minimal /dev: a few host device nodes bound in (a user namespace cannot
 * mknod), a private devpts instance and a size-capped /dev/shm. */
static void op_dev(char **a, int nargs) {
    char full[PATH_MAX], path[PATH_MAX], host[64];
    const char *rel = a[0];
    in_root(full, rel);
    make_dirs(rel, 1);
    if (mount("tmpfs", full, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0) fail(errno, "mount tmpfs on %s", rel);
    add_ours(full);
    static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};
    for (int i = 0; nodes[i]; i++) {
        join(path, full, nodes[i]);
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) fail(errno, "create %s/%s", rel, nodes[i]);
        close(fd);
        if (mount(host, path, NULL, MS_BIND, NULL) < 0) fail(errno, "bind %s", host);
    }
    join(path, full, "pts");
    if (mkdir(path, 0755) < 0) fail(errno, "mkdir %s/pts", rel);
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") < 0)
        fail(errno, "mount devpts on %s/pts", rel);
    join(path, full, "shm");
    if (mkdir(path, 01777) < 0) fail(errno, "mkdir %s/shm", rel);
    char data[64];
    snprintf(data, sizeof data, "mode=1777,size=%s", a[1]);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, data) < 0) fail(errno, "mount tmpfs on %s/shm", rel);
    static const char *links[][2] = {{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                     {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {NULL, NULL}};
    for (int i = 0; links[i][0]; i++) {
        join(path, full, links[i][1]);
        if (symlink(links[i][0], path) < 0) fail(errno, "symlink %s/%s", rel, links[i][1]);
    }
    if (mount(NULL, full, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0)
        fail(errno, "remount %s read-only", rel);
}

/* The new root's own tmpfs holds only mount points: make it read-only so the
 * program cannot create files in / (it owns the directory). */
static void op_rootro(char **a, int nargs) {
    if (mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        fail(errno, "remount the new root read-only");
}

static void op_pivot(char **a, int nargs) {
    if (chdir(root) < 0) fail(errno, "chdir %s", root);
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        /* The old root now sits on top of the new one: detach it, with every
         * host mount below it, so nothing of the host stays reachable. */
        if (umount2(".", MNT_DETACH) < 0) fail(errno, "detach the old root");
    } else if (errno == EINVAL) {
        /* pivot_root is impossible when / is the initramfs rootfs: fall back to
         * moving the new root over / and chroot, and say so. */
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) fail(errno, "move the new root over /");
        if (chroot(".") < 0) fail(errno, "chroot");
        status("D chroot\n");
    } else {
        fail(errno, "pivot_root");
    }
    if (chdir("/") < 0) fail(errno, "chdir /");
    root[0] = 0;
}

static void op_loopback(char **a, int nargs) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail(errno, "socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail(errno, "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail(errno, "SIOCSIFFLAGS lo");
    close(s);
}

/* ------------------------------------------------------------ ops run by the program process */

/* rlimitcap RES VALUE: lower a limit to VALUE, never raise it.  For the
 * per-user limits (pending signals, message queue bytes, locked memory) the
 * kernel charges the sandbox's use to the caller's own allowance too: without
 * a cap here one run could take all of it from the caller's other processes. */
static void op_rlimitcap(char **a, int nargs) {
    int res = (int)num(a[0]);
    rlim_t cap = (rlim_t)num(a[1]);
    struct rlimit rl;
    if (getrlimit(res, &rl) < 0) fail(errno, "getrlimit(%s)", a[0]);
    if (rl.rlim_cur > cap) rl.rlim_cur = cap;
    if (rl.rlim_max > cap) rl.rlim_max = cap;
    if (setrlimit(res, &rl) < 0) fail(errno, "setrlimit(%s, %s)", a[0], a[1]);
}

/* caps KEEP (hex mask): drop every capability but KEEP.  KEEP is 0 but for a profile with
 * subordinate ids, where uid 0 inside keeps the file-ownership set (chown, setuid...) over
 * its own user namespace's files and ids. */
static void op_caps(char **a, int nargs) {
    unsigned long long keep = strtoull(a[0], NULL, 16);
    /* Bounding set first (needs CAP_SETPCAP, which we still have), then lock the
     * securebits so that (with nothing kept) even uid 0 inside gains nothing on exec,
     * then clear ambient and inheritable, and permitted and effective but KEEP. */
    for (int cap = 0; cap <= 63; cap++)
        if (!(keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(errno, "drop capability %d from the bounding set", cap);
    /* With a kept set, uid 0 gets it at exec and a change to another uid drops it, as
     * package managers expect; without one, no uid ever gets anything. */
    int bits = keep ? SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
                    : SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
                      SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) fail(errno, "set securebits");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) fail(errno, "clear ambient capabilities");
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].permitted = data[0].effective = (unsigned)(keep & 0xffffffffu);
    data[1].permitted = data[1].effective = (unsigned)(keep >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0) fail(errno, "capset");
}

static void op_closefds(char **a, int nargs) {
    /* Everything but stdio, the error pipe and the seccomp hand-over socket,
     * which both close themselves at exec. */
    if (syscall(SYS_close_range, 3, ERR_FD - 1, 0) < 0 || syscall(SYS_close_range, ERR_FD + 1, NOTIFY_FD - 1, 0) < 0 ||
        syscall(SYS_close_range, NOTIFY_FD + 1, ~0U, 0) < 0) {
        for (int fd = 3; fd < 65536; fd++) if (fd != ERR_FD && fd != NOTIFY_FD) close(fd);
    }
}

/* notify SPEC [KILLS] (init, before fork): SPEC "*" every notification is a
 * log, "-" none is, else a comma-separated list of x86_64 syscall numbers that
 * are.  KILLS, "NR[,ARG,MASK,VALUE]...;...": a notification of NR whose
 * arguments match every (args[ARG] & MASK) == VALUE of one entry is a kill all
 * the same (the base layer's rules and kill rules under default_action: log). */
static void op_notify(char **a, int nargs) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, notify_sock) < 0) fail(errno, "socketpair");
    if (!strcmp(a[0], "*")) log_all = 1;
    else if (strcmp(a[0], "-")) {
        for (char *p = a[0]; *p;) {
            long nr = strtol(p, &p, 10);
            if (nr >= 0 && nr < 1024) log_nr[nr] = 1;
            if (*p == ',') p++;
            else if (*p) fail(EINVAL, "bad notify list");
        }
    }
    if (!strcmp(a[1], "-")) return;
    int n = 1;
    for (char *p = a[1]; *p; p++) n += *p == ';';
    kills = calloc((size_t)n, sizeof *kills);
    if (!kills) fail(ENOMEM, "notify kill list");
    for (char *p = a[1]; *p; nkills++) {
        struct kill_rule *k = &kills[nkills];
        k->nr = (unsigned)strtoul(p, &p, 10);
        while (*p == ',' && k->ncmp < 6) {
            k->arg[k->ncmp] = (unsigned)strtoul(p + 1, &p, 10);
            if (*p++ != ',' || k->arg[k->ncmp] > 5) fail(EINVAL, "bad notify kill list");
            k->mask[k->ncmp] = strtoull(p, &p, 10);
            if (*p++ != ',') fail(EINVAL, "bad notify kill list");
            k->value[k->ncmp++] = strtoull(p, &p, 10);
        }
        if (*p == ';') p++;
        else if (*p) fail(EINVAL, "bad notify kill list");
    }
}

static int is_kill(const struct seccomp_data *d) {
    for (int i = 0; i < nkills; i++) {
        unsigned c = 0;
        if (kills[i].nr != (unsigned)d->nr) continue;
        while (c < kills[i].ncmp && (d->args[kills[i].arg[c]] & kills[i].mask[c]) == kills[i].value[c]) c++;
        if (c == kills[i].ncmp) return 1;
    }
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* seccomp HEX (the program, last step before exec): load the filter with a
 * listener and hand the listener to init.  From here on every syscall of
 * this process goes through the filter: only sendmsg on NOTIFY_FD (here) and
 * write on ERR_FD (a failed exec) are added to allow-lists by the compiler. */
static void op_seccomp(char **a, int nargs) {
    size_t len = strlen(a[0]) / 2;
    if (len == 0 || len % sizeof(struct sock_filter)) fail(EINVAL, "bad seccomp filter");
    unsigned char *buf = malloc(len);
    if (!buf) fail(ENOMEM, "seccomp filter");
    /* By hand, not sscanf("%2x"): sscanf measures the rest of the string on every call,
     * which made decoding a 4 KiB filter quadratic (half a millisecond before every exec). */
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit(a[0][2 * i]), lo = hex_digit(a[0][2 * i + 1]);
        if (hi < 0 || lo < 0) fail(EINVAL, "bad seccomp filter");
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    struct sock_fprog prog = {(unsigned short)(len / sizeof(struct sock_filter)), (struct sock_filter *)buf};
    if (notify_sock[1] < 0) fail(EINVAL, "seccomp without a notify step");
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) fail(errno, "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)");
    if (send_fd(NOTIFY_FD, listener) < 0) fail(errno, "hand the seccomp listener to init");
}

/* exec ARGC ARGV... ENV...: search PATH from the new environment (not ours)
 * the way a shell would: 127 not found, 126 not executable. */
static void op_exec(char **a, int nargs) {
    int argc = (int)num(a[0]);
    if (argc < 1 || 1 + argc > nargs) fail(EINVAL, "bad exec op");
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    char **envp = calloc((size_t)(nargs - 1 - argc) + 1, sizeof *envp);
    for (int i = 0; i < argc; i++) argv[i] = a[1 + i];
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (int i = 0; i < nargs - 1 - argc; i++) {
        envp[i] = a[1 + argc + i];
        if (strncmp(envp[i], "PATH=", 5) == 0) path = envp[i] + 5;
    }
    const char *file = argv[0];
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        fail(errno, "exec %s", file);
    }
    int saved = ENOENT;
    char cand[PATH_MAX];
    const char *p = path;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (len == 0) snprintf(cand, sizeof cand, "./%s", file);
        else snprintf(cand, sizeof cand, "%.*s/%s", (int)len, p, file);
        execve(cand, argv, envp);
        if (errno != ENOENT && errno != ENOTDIR) saved = errno;
        p += len + (colon ? 1 : 0);
        if (!colon) break;
    }
    fail(saved, "exec %s (searched PATH=%s)", file, path);
}

/* ------------------------------------------------------------ init: supervise the program */

/* One process of the sandbox as the last sample saw it.  Kept so that the CPU
 * of a process that vanishes without init's rusage (its parent ignores
 * SIGCHLD or sets SA_NOCLDWAIT: the kernel reaps it and drops its times) is
 * still counted, as of its last sample. */
struct proc {
    int pid, ppid;
    unsigned long long start;   /* start time in ticks: a recycled pid is another process */
    long long own, kids;        /* its own CPU and its reaped children's, µs */
    long long shared;           /* statm's shared pages: file-backed + shmem */
    long long shm_kb, shm_pss;  /* shmem it maps (status), and its proportional share (smaps_rollup), -1 unread */
    int oom_bad;                /* checks in a row that found its oom_score_adj lowered and out of reach */
};

#define MAX_PROCS 8192
static struct proc tab_a[MAX_PROCS], tab_b[MAX_PROCS];
static struct proc *tab = tab_a, *next_tab = tab_b;   /* sorted by pid: /proc lists pids in order */
static int ntab;
static long long tab_init_kids;   /* init's reaped children (RUSAGE_CHILDREN), µs, when tab was taken */
static long long lost_us;         /* CPU of processes that vanished unreaped, as last sampled */
static long long expect_us[MAX_PROCS];   /* per survivor (index in the new table) */
static char expect_n[MAX_PROCS];
static long samples;
static long long last_sample_ns;
static struct rlimit nofile_at_fork;
static const char *tampered;      /* why init ended the run to protect itself, if it did */

static long tick_hz, page_size;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


static long long read_small(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return n;
}

/* A process's parent, start time, own CPU and reaped children's CPU (µs). */
/* Returns the process's thread count (threads count against the processes limit, as in
 * pids.peak), or -1 when it is gone. */
static int read_stat(const char *pid, int *ppid, unsigned long long *start, long long *own, long long *kids) {
    char path[300], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    if (read_small(path, buf, sizeof buf) <= 0) return -1;
    char *p = strrchr(buf, ')');  /* comm may hold spaces and parentheses */
    unsigned long long ut, st;
    long long cut, cst;
    int threads;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d %d %*d %llu",
                     ppid, &ut, &st, &cut, &cst, &threads, start) != 7) return -1;
    *own = (long long)(ut + st) * 1000000LL / tick_hz;
    *kids = (cut + cst) * 1000000LL / tick_hz;
    return threads > 0 ? threads : 1;
}

static int find(const struct proc *t, int n, int pid) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (t[mid].pid == pid) return mid;
        if (t[mid].pid < pid) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

/* The old table's processes that are not in the new one ended since.  Each
 * ended process's CPU must reach the nearest surviving ancestor's children
 * times (the parent waited for it; if the parent ended too, its own parent
 * waited for both) or init's rusage (init reaped it).  Whatever an ancestor's
 * children times did not grow by was reaped by the kernel: count it as lost.
 * No tolerance is needed: /proc's times are floored to clock ticks and never
 * decrease, and a parent's children times grow by at least the floors of what
 * it reaped, so an honest wait never shows a shortfall (the parent is read
 * again for that: this sample may have read it before the reap). */
static void account(const struct proc *old, int nold, struct proc *cur, int ncur, long long init_kids_now) {
    static long long expect_init;
    static int n_init;
    int touched = 0;
    for (int i = 0; i < nold; i++) {
        int j = find(cur, ncur, old[i].pid);
        if (j >= 0 && cur[j].start == old[i].start) continue;
        int at = -1, ppid = old[i].ppid;
        for (int hops = 0; hops < 64 && ppid > 1; hops++) {   /* the nearest ancestor still alive */
            int a = find(cur, ncur, ppid), o = find(old, nold, ppid);
            if (a >= 0 && (o < 0 || cur[a].start == old[o].start)) { at = a; break; }
            if (o < 0) break;
            ppid = old[o].ppid;
        }
        if (at < 0) { expect_init += old[i].own + old[i].kids; n_init = 1; }
        else { expect_us[at] += old[i].own + old[i].kids; expect_n[at] = 1; }
        touched = 1;
    }
    if (!touched) return;
    for (int j = 0; j < ncur; j++) {
        if (!expect_n[j]) continue;
        /* Read it again: the child may have been reaped after this sample read
         * the parent and before it looked for the child. */
        char pid[16];
        int ppid;
        unsigned long long start;
        long long own, kids;
        snprintf(pid, sizeof pid, "%d", cur[j].pid);
        if (read_stat(pid, &ppid, &start, &own, &kids) >= 0 && start == cur[j].start) cur[j].kids = kids;
        int o = find(old, nold, cur[j].pid);
        long long grew = o >= 0 && old[o].start == cur[j].start ? cur[j].kids - old[o].kids : cur[j].kids;
        long long missing = expect_us[j] - grew;
        if (missing > 0) lost_us += missing;
        expect_us[j] = 0;
        expect_n[j] = 0;
    }
    if (n_init) {
        long long missing = expect_init - (init_kids_now - tab_init_kids);
        if (missing > 0) lost_us += missing;
        expect_init = 0;
        n_init = 0;
    }
}


/* SysV shared memory of the sandbox's IPC namespace (init is in it): every
 * segment's resident and swapped pages, attached or not (SHM_INFO: one call,
 * the namespace's totals).  A detached segment belongs to no process and
 * would be counted nowhere else. */
static long long sysv_shm_bytes(void) {
    struct shm_info info;
    if (shmctl(0, SHM_INFO, (struct shmid_ds *)&info) < 0) return 0;
    return (long long)(info.shm_rss + info.shm_swp) * page_size;
}

/* Raise a process's oom_score_adj back to 1000 (it may lower it as far as 0
 * itself).  Raising needs no privilege; a process that made itself
 * non-dumpable owns its /proc files no more: 1 when it is so and its value is
 * lowered (the caller calls it tampering when that lasts: the program process
 * is briefly so between fork and exec, by design). */
static int oom_back_to_1000(const char *pid) {
    char path[300], buf[16];
    snprintf(path, sizeof path, "/proc/%s/oom_score_adj", pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "1000", 4) < 0) {}
        close(fd);
        return 0;
    }
    return errno == EACCES && read_small(path, buf, sizeof buf) > 0 && atoi(buf) < 1000;
}

/* Init's own limits are the program's to change (same uid; prlimit64 on pid
 * 1).  A lowered RLIMIT_NOFILE is undone up to the hard limit; a hard limit
 * too low to sample with (init needs two free descriptors below it), or a CPU hard limit init is about to reach (the
 * kernel would SIGKILL it and the run's accounting with it), ends the run
 * first, reported as tampering. */
static void guard_limits(long long own_us) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_CPU, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        own_us + 250000 >= (long long)rl.rlim_max * 1000000LL)
        tampered = "rlimit_cpu";
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nofile_at_fork.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < nofile_at_fork.rlim_cur ? rl.rlim_max : nofile_at_fork.rlim_cur;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2) tampered = "rlimit_nofile";
    }
}

/* The value (kB) after a "Name:" line of a /proc status-like file, or 0. */
static long long field_kb(const char *text, const char *name) {
    const char *p = strstr(text, name);
    return p ? atoll(p + strlen(name)) : 0;
}

/* Sum over every process of the sandbox, read from the sandbox's own /proc,
 * which shows nothing else: CPU (own + reaped children, + what vanished
 * unreaped) and memory.  Memory: every process's anonymous resident memory,
 * the largest file-backed resident memory (a shared interpreter text counts
 * once), and shared memory (shmem: shared anonymous mappings, attached SysV
 * segments, mapped tmpfs files) proportionally, a page shared by n processes
 * 1/n in each (smaps_rollup's Pss_Shmem); plus the sandbox's SysV segments and
 * the contents of /dev/shm, which may be held by no process at all.
 * smaps_rollup walks the page tables (0.5 ms for 64 MiB), so it is read only
 * for processes that map shmem, and again only when that changed, a process
 * came or went, or every 10th sample. */
static void sample(void) {
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    long long init_kids = usec(ru.ru_utime) + usec(ru.ru_stime);
    long long cpu_us = init_kids, anon = 0, file_max = 0, shmem = 0;
    int n = 0, procs = 0, changed = samples % 10 == 0;
    /* getdents64 into a static buffer, not opendir: opendir allocates, and the program may
     * have lowered init's RLIMIT_AS or RLIMIT_DATA to nothing (musl's allocator returns
     * freed memory to the kernel, so even a reused DIR would need a new mapping) */
    int d = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        struct rusage self;
        getrusage(RUSAGE_SELF, &self);
        guard_limits(usec(self.ru_utime) + usec(self.ru_stime));
        return;
    }
    static char dents[32768];
    char path[300], buf[4096];
    struct entry { uint64_t ino; int64_t next; unsigned short reclen; unsigned char type; char d_name[]; };
    for (long nread; (nread = syscall(SYS_getdents64, d, dents, sizeof dents)) > 0;)     /* each batch, each entry */
    for (long off = 0; off < nread;) {
        struct entry *e = (struct entry *)(dents + off);
        off += e->reclen;
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || strcmp(e->d_name, "1") == 0) continue;
        int ppid;
        unsigned long long start;
        long long own, kids;
        int threads = read_stat(e->d_name, &ppid, &start, &own, &kids);
        if (threads < 0) continue;
        procs += threads;
        cpu_us += own + kids;
        /* statm: resident and shared (file-backed + shmem) pages; which part of
         * shared is shmem says status (twice the cost), read again only when
         * shared changed, for a new process, or every 10th sample */
        long long pid = atoll(e->d_name), res = 0, shared = 0, shm_kb = 0;
        snprintf(path, sizeof path, "/proc/%s/statm", e->d_name);
        if (read_small(path, buf, sizeof buf) <= 0 || sscanf(buf, "%*d %lld %lld", &res, &shared) != 2) res = shared = 0;
        int o = find(tab, ntab, (int)pid), same = o >= 0 && tab[o].start == start;
        if (same && tab[o].shared == shared && samples % 10) shm_kb = tab[o].shm_kb;
        else {
            snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
            if (read_small(path, buf, sizeof buf) > 0) shm_kb = field_kb(buf, "\nRssShmem:");
        }
        anon += (res - shared) * page_size;
        long long file = shared * page_size - shm_kb * 1024;
        if (file > file_max) file_max = file;
        int oom_bad = samples % 10 == 0 ? oom_back_to_1000(e->d_name) : -1;   /* -1: not looked at */
        if (n < MAX_PROCS) {
            struct proc *t = &next_tab[n++];
            t->pid = (int)pid;
            t->ppid = ppid;
            t->start = start;
            t->own = own;
            t->kids = kids;
            t->shared = shared;
            t->shm_kb = shm_kb;
            t->shm_pss = same ? tab[o].shm_pss : -1;
            if (!same || tab[o].shm_kb != shm_kb) changed = 1;
            t->oom_bad = oom_bad < 0 ? (same ? tab[o].oom_bad : 0) : oom_bad ? (same ? tab[o].oom_bad : 0) + 1 : 0;
            if (t->oom_bad >= 2) tampered = "oom_score_adj";
        }
    }
    close(d);
    if (n != ntab) changed = 1;   /* (a process gone shows as a count that differs, or a new pid above) */
    static int changed_last;      /* and once more after a change: the shares read then may be a spike's */
    int changed_now = changed;
    changed |= changed_last;
    changed_last = changed_now;
    for (int i = 0; i < n; i++) {
        struct proc *t = &next_tab[i];
        if (t->shm_kb <= 0) continue;
        if (changed || t->shm_pss < 0) {
            /* unreadable: the process is exiting; keep its last share (its whole
             * RssShmem only if it has none: an exiting process would spike) */
            snprintf(path, sizeof path, "/proc/%d/smaps_rollup", t->pid);
            if (read_small(path, buf, sizeof buf) > 0) t->shm_pss = field_kb(buf, "\nPss_Shmem:") * 1024;
            else if (t->shm_pss < 0) t->shm_pss = t->shm_kb * 1024;
        }
        shmem += t->shm_pss;
    }
    /* The processes are read one after another: while they map the same
     * shmem, the ones read first still show their larger old shares, and one
     * sample can count much of it twice (200 MiB for 100 MiB, seen).  While the
     * sharing changes, count the smaller of this sample's total and the last
     * one's: a real rise shows one sample (10 ms) later, a spike not at all. */
    static long long shmem_last;
    long long shmem_now = shmem;
    if (changed && shmem_last < shmem) shmem = shmem_last;
    shmem_last = shmem_now;
    account(tab, ntab, next_tab, n, init_kids);
    struct proc *swap = tab;
    tab = next_tab;
    next_tab = swap;
    ntab = n;
    tab_init_kids = init_kids;
    long long sysv = sysv_shm_bytes(), devshm = 0, mem = anon + file_max + shmem;
    struct statvfs sv;
    if (statvfs("/dev/shm", &sv) == 0) devshm = (long long)(sv.f_blocks - sv.f_bfree) * (long long)sv.f_frsize;
    samples++;
    last_sample_ns = now_ns();
    /* init's own CPU rides along so the runner can leave it out of the
     * program's time even if init is killed before it can say "X". */
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    guard_limits(usec(self.ru_utime) + usec(self.ru_stime));
    status("S %lld %lld %d %lld %lld %lld %lld %lld\n", cpu_us + lost_us, mem + sysv + devshm, procs,
           usec(self.ru_utime), usec(self.ru_stime), mem, sysv, devshm);
}

/* The end of a run, on the program's exit or on the runner's request: kill
 * every other process of the sandbox and reap them all ourselves.  Leaving
 * that to the kernel (by simply exiting as pid 1) would autoreap them, and
 * their CPU time would reach no rusage: a program could hide work in a child
 * that outlives it.  A last sample first: what vanished since the previous one
 * is accounted, and every process still alive is in the table, so one that
 * the kernel reaps for its parent while dying is counted as of now. */
static void __attribute__((noreturn)) finish(pid_t prog, int st, int known, long long t_fork, long long t_end) {
    sample();
    kill(-1, SIGKILL);
    for (;;) {
        int s;
        pid_t r = waitpid(-1, &s, __WALL);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;  /* ECHILD: nobody left */
        }
        if (r == prog && !known) { st = s; known = 1; }
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    account(tab, ntab, next_tab, 0, usec(ru.ru_utime) + usec(ru.ru_stime));
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    fcntl(STATUS_FD, F_SETFL, 0);
    if (tampered) status("T %s\n", tampered);
    status("X %d %lld %lld %lld %lld %lld %ld\n", st, usec(self.ru_utime), usec(self.ru_stime), t_fork, t_end,
           lost_us, samples);
    _exit(0);
}

/* Records the runner must not miss are written blocking; samples are not. */
static void status_sync(const char *fmt, unsigned a, unsigned b, const unsigned long long *args) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, fmt, a, b);
    if (args)
        for (int i = 0; i < 6 && n < (int)sizeof buf - 24; i++) n += snprintf(buf + n, sizeof buf - n, " %llu", args[i]);
    n += snprintf(buf + n, sizeof buf - n, "\n");
    fcntl(STATUS_FD, F_SETFL, 0);
    write_all(STATUS_FD, buf, (size_t)n);
    fcntl(STATUS_FD, F_SETFL, O_NONBLOCK);
}

/* The listener arrives from the program process right after it loads the filter. */
static int receive_listener(int sock) {
    char byte, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* A call hit a kill or log rule (or came from a foreign ABI).  The kernel
 * tells us the number, the architecture and the arguments: the program cannot
 * forge this.  log: note it once and let the call go on.  kill: report it and
 * end the run. */
static void on_notification(int listener, pid_t prog, long long t_fork) {
    static struct seccomp_notif_sizes sizes;
    static unsigned char seen[1024];
    /* Static buffers, not malloc: the program may lower init's RLIMIT_AS or
     * RLIMIT_DATA (prlimit64 on pid 1), and a notification left unanswered
     * would hold the call for ever. */
    static union { struct seccomp_notif n; unsigned char room[4096]; } req_buf;
    static union { struct seccomp_notif_resp r; unsigned char room[4096]; } resp_buf;
    if (!sizes.seccomp_notif && syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0) return;
    if (sizes.seccomp_notif > sizeof req_buf || sizes.seccomp_notif_resp > sizeof resp_buf) return;
    struct seccomp_notif *req = &req_buf.n;
    struct seccomp_notif_resp *resp = &resp_buf.r;
    memset(&req_buf, 0, sizes.seccomp_notif);
    memset(&resp_buf, 0, sizes.seccomp_notif_resp);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) return;   /* ENOENT: the caller died meanwhile */
    unsigned nr = req->data.nr, arch = req->data.arch;
    int native = arch == AUDIT_ARCH_X86_64 && !(nr & 0x40000000);
    if (native && nr < 1024 && (log_all || log_nr[nr]) && !is_kill(&req->data)) {
        if (!seen[nr]) {
            seen[nr] = 1;
            status_sync("Y %u %u", nr, arch, NULL);
        }
        resp->id = req->id;
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp);
        return;
    }
    unsigned long long args[6];
    for (int i = 0; i < 6; i++) args[i] = req->data.args[i];
    status_sync("V %u %u", nr, arch, args);
    finish(prog, 0, 0, t_fork, now_ns());
}

/* Reap what has ended; the program's end ends the run. */
static void reap(pid_t prog, long long t_fork) {
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG | __WALL)) > 0)   /* a ptrace stop (PTRACE_TRACEME made init */
        if (r == prog && !WIFSTOPPED(st)) finish(prog, st, 1, t_fork, now_ns());   /* the tracer) is no exit */
}

/* epoll, not poll: poll refuses more descriptors than RLIMIT_NOFILE, which the
 * program can lower on init (prlimit64 on pid 1). */
static void watch(int ep, int fd, int tag) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)tag};
    if (fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

enum { W_SIGNAL, W_TIMER, W_NOTIFY_SOCK, W_LISTENER };

/* Grow the stack now, while RLIMIT_STACK is still ours: the program may lower
 * it on init (prlimit64 on pid 1), and a fault on a later growth would kill
 * init with the run's accounting.  32 KiB is three times what supervising
 * ever uses; the pages stay once touched. */
static void __attribute__((noinline)) grow_stack(void) {
    volatile char room[32 << 10];
    memset((char *)room, 0, sizeof room);
}

static void __attribute__((noreturn)) supervise(pid_t prog, sigset_t *mask, long long t_fork) {
    int sfd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec its = {{sample_ms / 1000, (sample_ms % 1000) * 1000000L}, {sample_ms / 1000, (sample_ms % 1000) * 1000000L}};
    if (tfd >= 0) timerfd_settime(tfd, 0, &its, NULL);
    fcntl(STATUS_FD, F_SETFL, O_NONBLOCK);  /* a slow reader may drop samples, never stall the reaper */
    tick_hz = sysconf(_SC_CLK_TCK);
    page_size = sysconf(_SC_PAGESIZE);
    grow_stack();
    getrlimit(RLIMIT_NOFILE, &nofile_at_fork);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) finish(prog, 0, 0, t_fork, now_ns());
    watch(ep, sfd, W_SIGNAL);
    watch(ep, tfd, W_TIMER);
    watch(ep, notify_sock[0], W_NOTIFY_SOCK);
    int listener = -1;
    int deaf = 0;   /* signals unread until the next tick: the program is forging them */
    for (;;) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, -1);
        if (n < 0 && errno != EINTR) finish(prog, 0, 0, t_fork, now_ns());
        for (int i = 0; i < n; i++) {
            uint32_t tag = evs[i].data.u32, what = evs[i].events;
            if (tag == W_LISTENER) {
                if (what & EPOLLIN) on_notification(listener, prog, t_fork);
                else if (what & (EPOLLHUP | EPOLLERR)) {   /* no process left under the filter */
                    epoll_ctl(ep, EPOLL_CTL_DEL, listener, NULL);
                    close(listener);
                    listener = -1;
                }
            } else if (tag == W_NOTIFY_SOCK) {
                listener = receive_listener(notify_sock[0]);
                watch(ep, listener, W_LISTENER);
                epoll_ctl(ep, EPOLL_CTL_DEL, notify_sock[0], NULL);
                close(notify_sock[0]);
                notify_sock[0] = -1;
            } else if (tag == W_SIGNAL) {
                struct signalfd_siginfo si;
                int chld = 0, forged = 0;
                while (read(sfd, &si, sizeof si) == sizeof si) {
                    /* SIGTERM counts only from the launcher: kill(2) (SI_USER) from
                     * outside the namespace, whose pid ours cannot name (0).  A
                     * program that signals pid 1, or forges a sender with
                     * rt_sigqueueinfo (SI_QUEUE and below), is ignored. */
                    if (si.ssi_signo == SIGTERM && si.ssi_code == SI_USER && si.ssi_pid == 0)
                        finish(prog, 0, 0, t_fork, now_ns());
                    /* Only the kernel's SIGCHLD (CLD_*, above 0) means a child changed
                     * state; the program's kill(1, SIGCHLD) costs init one read. */
                    if (si.ssi_signo == SIGCHLD && si.ssi_code > 0) chld = 1;
                    else forged = 1;
                }
                if (forged) {
                    /* Each forged signal would wake init: stop reading signals until
                     * the next tick, so a kill(1, ...) loop costs init at most one
                     * wake-up per tick.  The tick reaps meanwhile; the runner's
                     * SIGTERM waits at most one tick. */
                    struct epoll_event ev = {.events = 0, .data.u32 = W_SIGNAL};
                    epoll_ctl(ep, EPOLL_CTL_MOD, sfd, &ev);
                    deaf = 1;
                }
                if (chld) {
                    /* Sample before reaping (the process that just ended is still
                     * there as a zombie, so a burst of short-lived processes is
                     * counted between two timer ticks), at most once a
                     * millisecond: a fork loop must not make init sample flat out. */
                    if (now_ns() - last_sample_ns >= 1000000) sample();
                    reap(prog, t_fork);
                }
            } else if (tag == W_TIMER) {
                uint64_t ticks;
                if (deaf) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = W_SIGNAL};
                    epoll_ctl(ep, EPOLL_CTL_MOD, sfd, &ev);
                    deaf = 0;
                }
                if (read(tfd, &ticks, sizeof ticks) > 0) {
                    sample();
                    /* a forged SIGCHLD still pending can swallow the kernel's one
                     * (classic signals do not queue): reap on every tick too */
                    reap(prog, t_fork);
                }
            }
            if (tampered) finish(prog, 0, 0, t_fork, now_ns());
        }
    }
}

/* ------------------------------------------------------------ fuse-overlayfs */

/* In init: ask the launcher for a fuse-overlayfs mount on `merged` and wait.
 * The daemon must not live in the sandbox's pid namespace, where the program
 * could signal or trace it (and through it reach the host's files), so the
 * launcher starts it from outside, joined to init's user and mount
 * namespaces. */
static void fuse_overlay(const char *lowers, const char *upper, const char *work, const char *merged,
                         const char *hostroot) {
    char req[6 * PATH_MAX];
    /* options, mount point, program, daemon's root: four NUL-terminated strings */
    int n = snprintf(req, sizeof req, "lowerdir=%s,upperdir=%s,workdir=%s", lowers, upper, work);
    size_t m = strlen(merged) + 1, b = strlen(fuse_bin) + 1, h = strlen(hostroot) + 1;
    if ((size_t)n + 1 + m + b + h > sizeof req) fail(E2BIG, "fuse-overlayfs options too long");
    memcpy(req + n + 1, merged, m);
    memcpy(req + n + 1 + m, fuse_bin, b);
    memcpy(req + n + 1 + m + b, hostroot, h);
    if (send(helper_sock[1], req, (size_t)n + 1 + m + b + h, 0) < 0) fail(errno, "ask for fuse-overlayfs");
    int err = EIO;
    if (recv(helper_sock[1], &err, sizeof err, 0) != sizeof err) fail(EIO, "the launcher did not answer");
    if (err) fail(err, "fuse-overlayfs did not mount (is /dev/fuse usable, mode 0666?)");
}

/* The FUSE daemon of a map written from outside starts as the caller's id and becomes the
 * sandbox's.  The layers (and a kept upper layer) are the caller's files, perhaps under a
 * directory only the caller may enter (root's store), and fuse-overlayfs resolves the paths
 * it is given (a /proc/self/fd name would lead it back there).  So: open every directory the
 * options name while still the caller (open_dirs), then, as the sandbox's id (a mapped owner:
 * it may create mount points), bind each onto DIR/dN in the build tmpfs, the merged tree's
 * parent, and give the daemon those paths (bind_dirs):
 * "lowerdir=A:B,upperdir=K/upper,workdir=K/work" -> "lowerdir=DIR/d0:DIR/d1,upperdir=DIR/d2/upper,workdir=DIR/d2/work". */
static struct { char key[16], parent[PATH_MAX], name[NAME_MAX + 1]; int fd, bound; } held[130];
static int nheld;

/* upperdir and workdir must stay on one mount (fuse-overlayfs renames from one to the other):
 * they are reached through a bind of their shared parent, each by its name in it. */
static int open_dirs(char *opts) {
    char copy[6 * PATH_MAX];
    snprintf(copy, sizeof copy, "%s", opts);
    for (char *s1, *opt = strtok_r(copy, ",", &s1); opt; opt = strtok_r(NULL, ",", &s1)) {
        char *eq = strchr(opt, '=');
        if (!eq || eq - opt >= 16) return -1;
        *eq = 0;
        for (char *s2, *dir = strtok_r(eq + 1, ":", &s2); dir; dir = strtok_r(NULL, ":", &s2)) {
            if (nheld == (int)(sizeof held / sizeof *held)) return -1;
            snprintf(held[nheld].key, sizeof held[nheld].key, "%s", opt);
            char *slash = strrchr(dir, '/');
            int pair = strcmp(opt, "lowerdir") != 0 && slash && slash != dir;
            if (pair) {
                snprintf(held[nheld].name, sizeof held[nheld].name, "%s", slash + 1);
                *slash = 0;
            }
            snprintf(held[nheld].parent, sizeof held[nheld].parent, "%s", dir);
            held[nheld].fd = -1;
            for (int j = 0; pair && j < nheld; j++)
                if (held[j].name[0] && !strcmp(held[j].parent, dir)) held[nheld].fd = -2 - j;   /* same bind as j */
            if (held[nheld].fd == -1 && (held[nheld].fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) return -1;
            nheld++;
        }
    }
    return 0;
}

static int bind_dirs(char *opts, size_t size, const char *merged) {
    char out[6 * PATH_MAX], dir[PATH_MAX], fdpath[64];
    size_t off = 0;
    for (int i = 0; i < nheld; i++) {
        int at = held[i].fd <= -2 ? -2 - held[i].fd : i;
        int len = snprintf(dir, sizeof dir, "%.*s/d%d", (int)(strrchr(merged, '/') - merged), merged, at);
        if (len >= (int)sizeof dir) return -1;
        if (at == i) {
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", held[i].fd);
            if (mkdir(dir, 0755) < 0 || mount(fdpath, dir, NULL, MS_BIND, NULL) < 0) return -1;
            close(held[i].fd);
        }
        const char *sep = held[i].name[0] ? "/" : "";
        if (i > 0 && !strcmp(held[i].key, held[i - 1].key))      /* the next layer of lowerdir */
            off += (size_t)snprintf(out + off, sizeof out - off, ":%s", dir);
        else
            off += (size_t)snprintf(out + off, sizeof out - off, "%s%s=%s%s%s", i ? "," : "", held[i].key, dir, sep,
                                    held[i].name);
        if (off >= sizeof out) return -1;
    }
    if (off + 1 > size) return -1;
    memcpy(opts, out, off + 1);
    return 0;
}

/* keepdir PATH (init, after pivot_root): the working directory, a tmpfs of
 * the sandbox, goes to the runner (through the launcher, which alone can
 * reach it) as a directory descriptor.  The runner reads the files the run
 * left from it with its O_NOFOLLOW walk; the tmpfs outlives the sandbox's
 * mount namespace only as long as that descriptor, so nothing stays behind
 * on the host, whatever modes the program left, and it is capped like any
 * tmpfs of the profile. */
static void op_keepdir(char **a, int nargs) {
    int fd = open(a[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail(errno, "open the working directory %s", a[0]);
    if (send_fd(helper_sock[1], fd) < 0) fail(errno, "hand the working directory to the launcher");
    close(fd);
    int err = EIO;
    if (recv(helper_sock[1], &err, sizeof err, 0) != sizeof err) fail(EIO, "the launcher did not answer");
    if (err) fail(err, "hand the working directory to the runner");
}

/* In the launcher: serve init's requests until it closes its end (at fork):
 * a FUSE daemon, or passing the working directory on. */
static void serve_helper(pid_t init) {
    char req[6 * PATH_MAX], path[64], cbuf[CMSG_SPACE(sizeof(int))];
    for (;;) {
        struct iovec iov = {req, sizeof req - 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        ssize_t n = recvmsg(helper_sock[0], &msg, MSG_CMSG_CLOEXEC);
        if (n <= 0) return;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd, err = 0;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            if (send_fd(WORKDIR_FD, fd) < 0) err = errno;
            close(fd);
            send(helper_sock[0], &err, sizeof err, 0);
            continue;
        }
        req[n] = 0;
        const char *merged = req + strlen(req) + 1;
        const char *bin = merged + strlen(merged) + 1;
        const char *hostroot = bin + strlen(bin) + 1;
        int err = 0;
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            const char *ns[2] = {"user", "mnt"};
            for (int i = 0; i < 2; i++) {
                snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)init, ns[i]);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || setns(fd, 0) < 0) _exit(126);
                close(fd);
            }
            if (mount("/", hostroot, NULL, MS_BIND | MS_REC, NULL) < 0 || chroot(hostroot) < 0 || chdir("/") < 0)
                _exit(126);
            /* With a map written from outside we are the caller's id, which the map leaves out:
             * take the sandbox's own, as init does, so the files we write belong to it. */
            if (outmap_mode[0]) {
                if (open_dirs(req) < 0) _exit(126);
                uid_t uid = (uid_t)strtoul(outmap_uid, NULL, 10);
                gid_t gid = (gid_t)strtoul(outmap_gid, NULL, 10);
                if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) _exit(126);
                if (bind_dirs(req, sizeof req, merged) < 0) _exit(126);
            }
            /* We hold every capability in init's user namespace (joining gave them), but
             * our uid there is not 0, so exec would drop them: carry them over as ambient
             * capabilities.  They are worth nothing outside that namespace. */
            struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
            struct __user_cap_data_struct caps[2];
            if (syscall(SYS_capget, &hdr, caps) < 0) _exit(126);
            caps[0].inheritable = caps[0].permitted;
            caps[1].inheritable = caps[1].permitted;
            if (syscall(SYS_capset, &hdr, caps) < 0) _exit(126);
            for (int cap = 0; cap <= 63; cap++) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0); dup2(null, 1); dup2(null, 2);
            execl(bin, "fuse-overlayfs", "-f", "-o", req, merged, (char *)NULL);
            _exit(127);
        }
        if (pid < 0) err = errno;
        else {
            fuse_pid = pid;
            /* Wait for the mount to show in init's mount table, or the daemon to die. */
            snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)init);
            err = ETIMEDOUT;
            for (int tries = 0; tries < 2000 && err == ETIMEDOUT; tries++) {
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) { err = ENODEV; fuse_pid = 0; break; }
                FILE *f = fopen(path, "re");
                char line[2 * PATH_MAX];
                while (f && fgets(line, sizeof line, f))
                    if (strstr(line, merged) && strstr(line, "fuse")) { err = 0; break; }
                if (f) fclose(f);
                if (err) usleep(5000);
            }
        }
        send(helper_sock[0], &err, sizeof err, 0);
    }
}

/* ------------------------------------------------------------ the launcher */

/* The runner wants the run over: init kills and reaps the sandbox (so CPU
 * accounting stays whole); if init does not manage within 2 s, SIGKILL it. */
static void on_term(int sig) {
    (void)sig;
    if (init_pid <= 0) _exit(125);
    kill(init_pid, SIGTERM);
    alarm(2);
}

static void on_alarm(int sig) {
    (void)sig;
    if (init_pid > 0) kill(init_pid, SIGKILL);
}

static void load_plan(void) {
    struct stat st;
    if (fstat(PLAN_FD, &st) < 0) fail(errno, "no plan on fd 3 (this program is started by the sandbox package)");
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf || pread(PLAN_FD, buf, (size_t)st.st_size, 0) != st.st_size) fail(errno ? errno : EIO, "read plan");
    buf[st.st_size] = 0;
    close(PLAN_FD);
    tok = calloc(MAX_TOKENS, sizeof *tok);
    char *p = buf, *end = buf + st.st_size;
    while (p < end && ntok < MAX_TOKENS) {
        tok[ntok++] = p;
        p += strlen(p) + 1;
    }
    if (ntok < 1 || strcmp(tok[0], "SBX1") != 0) fail(EINVAL, "plan has a wrong header (launcher and package versions differ?)");
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static int init_moves;              /* no clone3: init moves itself into the run's cgroup, */
static int init_unshares_cgroup;    /* then makes its cgroup namespace */

/* clone init into its namespaces, and into the run's cgroup if there is one:
 * clone3(CLONE_INTO_CGROUP) places it there before it runs an instruction.
 * Without clone3 (kernels < 5.7, or a container's seccomp profile that
 * answers ENOSYS for it) init is cloned where we are and moves itself, so
 * that only init's tree is in the run's cgroup: not we, nor the FUSE daemon
 * we start, which must not count against the run's limits.  Its cgroup
 * namespace must have the run's cgroup as its root, so init makes it after
 * the move (init_in_cgroup), not at clone. */
static pid_t clone_into(unsigned long flags) {
    if (cgroup_fd >= 0) {
        struct clone3_args args;
        memset(&args, 0, sizeof args);
        args.flags = flags | CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)cgroup_fd;
        pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
        if (pid >= 0 || (errno != ENOSYS && errno != E2BIG)) return pid;
        init_moves = 1;
        init_unshares_cgroup = (flags & CLONE_NEWCGROUP) != 0;
        flags &= ~(unsigned long)CLONE_NEWCGROUP;
    }
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* In init cloned without clone3: into the run's cgroup ("0": the writer, whatever
 * its pid namespace calls it), then the cgroup namespace rooted there.  The move
 * needs what the launcher's own move needed (write access to the cgroup.procs of
 * the destination and of the common ancestor, both inside the mover's cgroup
 * namespace): until the unshare init has the launcher's host ids and cgroup
 * namespace.  The unshare needs CAP_SYS_ADMIN in init's user namespace, which
 * init holds as its first process. */
static void init_in_cgroup(void) {
    char procs[PATH_MAX];
    join(procs, cgroup_dir, "cgroup.procs");
    write_file(procs, "0");
    if (init_unshares_cgroup && unshare(CLONE_NEWCGROUP) < 0) fail(errno, "unshare the cgroup namespace");
}

static void op_clone(char **a, int nargs) {
    unsigned long flags = (unsigned long)num(a[0]);
    int alive[2], mapped[2] = {-1, -1};
    if (pipe2(alive, O_CLOEXEC) < 0) fail(errno, "pipe");
    if (outmap_mode[0] && pipe2(mapped, O_CLOEXEC) < 0) fail(errno, "pipe");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, helper_sock) < 0) fail(errno, "socketpair");
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGALRM);
    sigprocmask(SIG_BLOCK, &term, &old);
    pid_t pid = clone_into(flags);
    if (pid < 0) fail(errno, cgroup_fd >= 0 ? "clone into the run's cgroup" : "clone");
    if (pid == 0) {
        /* init: die with the launcher; if it is already gone, stop here */
        close(alive[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct pollfd p = {alive[0], POLLIN, 0};
        if (poll(&p, 1, 0) > 0 && (p.revents & POLLHUP)) _exit(125);
        close(alive[0]);
        close(helper_sock[0]);
        if (mapped[0] >= 0) {
            /* Nothing runs in the new namespaces until the launcher has mapped them. */
            char go = 0;
            close(mapped[1]);
            if (read(mapped[0], &go, 1) != 1) _exit(125);    /* the launcher reported why */
            close(mapped[0]);
        }
        if (init_moves) init_in_cgroup();
        close(WORKDIR_FD);          /* the launcher's, to the runner */
        sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        return;
    }
    init_pid = pid;
    status("I %d\n", (int)pid);    /* so the runner can read init's own CPU when it must be exact */
    if (mapped[1] >= 0) {
        close(mapped[0]);
        write_outmap(pid);          /* on failure: reported, and init dies with us */
        if (write(mapped[1], "", 1) != 1) fail(errno, "start init");
        close(mapped[1]);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(alive[0]);
    close(ERR_FD);  /* only init and the program may report from here on */
    if (gated) close(GATE_FD);      /* init's */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
    close(helper_sock[1]);
    serve_helper(pid);              /* returns when init closes its end: at fork, or when it dies */
    close(helper_sock[0]);
    /* Wait without reaping, stop the SIGTERM handler from using the pid, then
     * reap: the handler can never signal a recycled pid. */
    siginfo_t si;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | __WALL) < 0 && errno == EINTR) {}
    sigprocmask(SIG_BLOCK, &term, NULL);
    init_pid = 0;
    int st;
    struct rusage ru;
    while (wait4(pid, &st, __WALL, &ru) < 0 && errno == EINTR) {}
    if (fuse_pid > 0) {             /* the sandbox is gone: so is every user of the mount */
        kill(fuse_pid, SIGKILL);
        waitpid(fuse_pid, NULL, 0);
    }
    /* The rusage of init's whole tree, which is the sandbox (init reaped
     * everything).  Not ours: we were vforked from the runner, and exec
     * recorded the runner's RSS as our high-water mark. */
    status("L %lld %lld %ld %ld %ld\n", usec(ru.ru_utime), usec(ru.ru_stime), ru.ru_maxrss, ru.ru_nvcsw, ru.ru_nivcsw);
    _exit(0);
}

/* ------------------------------------------------------------ the ops of main's table */

static sigset_t init_signals;   /* what init takes through its signalfd: SIGCHLD, SIGTERM */

/* ppid PID (the launcher): die with the runner.  If it died before this line, stop. */
static void op_ppid(char **a, int nargs) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(errno, "prctl(PR_SET_PDEATHSIG)");
    if (getppid() != (pid_t)num(a[0])) _exit(125);
}

static void op_sample(char **a, int nargs) { sample_ms = (int)num(a[0]); }

/* cgroup PATH (the launcher): the run's cgroup, which init is cloned into. */
static void op_cgroup(char **a, int nargs) {
    snprintf(cgroup_dir, sizeof cgroup_dir, "%s", a[0]);
    cgroup_fd = open(a[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd < 0) fail(errno, "open the run's cgroup %s", a[0]);
}

static void op_oomadj(char **a, int nargs) { write_file("/proc/self/oom_score_adj", a[0]); }
static void op_sysctl(char **a, int nargs) { write_file(a[0], a[1]); }

static void op_unshare(char **a, int nargs) {
    if (unshare((int)num(a[0])) < 0) fail(errno, "unshare(0x%llx)", num(a[0]));
}

static void op_private(char **a, int nargs) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(errno, "make / recursively private");
}

static void op_fusebin(char **a, int nargs) { snprintf(fuse_bin, sizeof fuse_bin, "%s", a[0]); }

static void op_hostname(char **a, int nargs) {
    if (sethostname(a[0], strlen(a[0])) < 0) fail(errno, "sethostname");
}

static void op_chdir(char **a, int nargs) {
    if (chdir(a[0]) < 0) fail(errno, "chdir %s", a[0]);
}

/* fork (init): the program is pid 2; init supervises it and never returns here.
 * The ops after this one run in the program. */
static void op_fork(char **a, int nargs) {
    if (gated) {                              /* the runner's go (GATE_FD, in the header) */
        char go = 0;
        ssize_t n;
        while ((n = read(GATE_FD, &go, 1)) < 0 && errno == EINTR) ;
        close(GATE_FD);
        if (n != 1 || go != 'g') _exit(0);
    }
    sigprocmask(SIG_BLOCK, &init_signals, NULL);
    /* Non-dumpable from here on (not earlier: init writes its own
     * /proc/self files during setup): the program, same uid, can
     * neither ptrace init nor read its /proc files.  Its lack of
     * capabilities already forbids ptrace; this holds even if that
     * ever changed.  exec makes the program dumpable again. */
    prctl(PR_SET_DUMPABLE, 0);
    long long t_fork = now_ns();
    pid_t prog = fork();
    if (prog < 0) fail(errno, "fork the program");
    if (helper_sock[1] >= 0) { close(helper_sock[1]); helper_sock[1] = -1; }
    if (prog > 0) {
        close(ERR_FD);
        close(0); close(1); close(2);
        for (int s = 0; s < MAX_SLOTS; s++) if (slots[s] >= 0) close(slots[s]);
        if (notify_sock[1] >= 0) close(notify_sock[1]);
        supervise(prog, &init_signals, t_fork);
    }
    close(STATUS_FD);
    prctl(PR_SET_DUMPABLE, 1);   /* init's non-dumpable flag is init's: our /proc/self stays ours */
    /* The program starts with default signal handling (SIG_IGN would
     * survive exec) and nothing blocked; done here, before any filter. */
    for (int sig = 1; sig < NSIG; sig++) if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (notify_sock[1] >= 0) {
        close(notify_sock[0]);
        if (notify_sock[1] != NOTIFY_FD) {   /* (created close-on-exec, so already right if equal) */
            if (dup3(notify_sock[1], NOTIFY_FD, O_CLOEXEC) < 0) fail(errno, "dup3 the notify socket");
            close(notify_sock[1]);
            notify_sock[1] = NOTIFY_FD;
        }
    }
}

/* rlimit RES SOFT HARD (the program): -1 is unlimited. */
static void op_rlimit(char **a, int nargs) {
    long long soft = num(a[1]), hard = num(a[2]);
    struct rlimit rl = {soft < 0 ? RLIM_INFINITY : (rlim_t)soft, hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
    if (setrlimit((int)num(a[0]), &rl) < 0) fail(errno, "setrlimit(%s, %s, %s)", a[0], a[1], a[2]);
}

static void op_nnp(char **a, int nargs) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(errno, "PR_SET_NO_NEW_PRIVS");
}

static void op_setsid(char **a, int nargs) {
    if (setsid() < 0) fail(errno, "setsid");
}

static void op_pdeathsig(char **a, int nargs) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(errno, "PR_SET_PDEATHSIG");
}

/* ------------------------------------------------------------ the op table */

/* Every op of the protocol: its name, its number of arguments (at least that
 * many when `variadic`), and what carries it out.  The Python side is
 * sandbox/launch.py, one constructor per op; `sandbox-launch --ops` prints
 * this table and tests/test_launch_protocol.py holds the two together.  In
 * the order of a plan: the launcher up to clone, init up to fork, then the
 * program. */
static const struct op_def {
    const char *name;
    int nargs, variadic;
    void (*run)(char **a, int nargs);
} OPS[] = {
    {"ppid", 1, 0, op_ppid},            {"cgroup", 1, 0, op_cgroup},        {"outmap", 3, 0, op_outmap},
    {"clone", 1, 0, op_clone},          {"idmap", 4, 0, op_idmap},          {"sysctl", 2, 0, op_sysctl},
    {"unshare", 1, 0, op_unshare},      {"private", 0, 0, op_private},      {"hold", 2, 0, op_hold},
    {"setids", 2, 0, op_setids},        {"root", 2, 0, op_root},            {"fusebin", 1, 0, op_fusebin},
    {"overlay", 3, 1, op_overlay},      {"bind", 3, 0, op_bind},            {"symlink", 2, 0, op_symlink},
    {"copy", 2, 0, op_copy},            {"tmpfs", 4, 0, op_tmpfs},          {"proc", 1, 0, op_proc},
    {"dev", 2, 0, op_dev},              {"rootro", 0, 0, op_rootro},        {"pivot", 0, 0, op_pivot},
    {"hostname", 1, 0, op_hostname},    {"loopback", 0, 0, op_loopback},    {"keyring", 0, 0, op_keyring},
    {"chdir", 1, 0, op_chdir},          {"sample", 1, 0, op_sample},        {"keepdir", 1, 0, op_keepdir},
    {"notify", 2, 0, op_notify},        {"fork", 0, 0, op_fork},            {"rlimit", 3, 0, op_rlimit},
    {"rlimitcap", 2, 0, op_rlimitcap},  {"oomadj", 1, 0, op_oomadj},        {"nnp", 0, 0, op_nnp},
    {"caps", 1, 0, op_caps},            {"setsid", 0, 0, op_setsid},        {"closefds", 0, 0, op_closefds},
    {"pdeathsig", 0, 0, op_pdeathsig},  {"seccomp", 1, 0, op_seccomp},      {"exec", 2, 1, op_exec},
};
#define NOPS ((int)(sizeof OPS / sizeof *OPS))

static const struct op_def *find_op(const char *name) {
    for (int k = 0; k < NOPS; k++) if (!strcmp(OPS[k].name, name)) return &OPS[k];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--ops")) {     /* the table, one "NAME NARGS[+]" a line */
        for (int k = 0; k < NOPS; k++) printf("%s %d%s\n", OPS[k].name, OPS[k].nargs, OPS[k].variadic ? "+" : "");
        return 0;
    }
    for (int i = 0; i < MAX_SLOTS; i++) slots[i] = -1;
    /* Nothing the runner's process happened to leave open gets further, and
     * our pipes close at exec (posix_spawn's dup2 cleared close-on-exec): a
     * program holding the error pipe could forge setup errors. */
    syscall(SYS_close_range, STATUS_FD + 1, WORKDIR_FD - 1, 0);
    syscall(SYS_close_range, GATE_FD + 1, ~0U, 0);
    fcntl(WORKDIR_FD, F_SETFD, FD_CLOEXEC);
    gated = fcntl(GATE_FD, F_SETFD, FD_CLOEXEC) == 0;    /* now, before any fd of ours can take the number */
    fcntl(ERR_FD, F_SETFD, FD_CLOEXEC);
    fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);
    signal(SIGTERM, on_term);
    signal(SIGALRM, on_alarm);
    signal(SIGINT, SIG_IGN);   /* the runner decides what an interrupt means */
    signal(SIGQUIT, SIG_IGN);
    load_plan();
    sigemptyset(&init_signals);
    sigaddset(&init_signals, SIGCHLD);
    sigaddset(&init_signals, SIGTERM);
    int i = 1;
    while (i < ntok) {
        cur_op++;
        if (i + 1 >= ntok) fail(EINVAL, "truncated plan");
        const char *name = tok[i];
        int nargs = (int)num(tok[i + 1]);
        if (nargs < 0 || i + 2 + nargs > ntok) fail(EINVAL, "truncated plan at %s", name);
        char **a = tok + i + 2;
        i += 2 + nargs;
        const struct op_def *op = find_op(name);
        if (!op) fail(EINVAL, "unknown op '%s' (launcher and package versions differ?)", name);
        if (op->variadic ? nargs < op->nargs : nargs != op->nargs)
            fail(EINVAL, "op %s takes %s%d argument%s, the plan gives %d (launcher and package versions differ?)",
                 name, op->variadic ? "at least " : "", op->nargs, op->nargs == 1 ? "" : "s", nargs);
        op->run(a, nargs);
    }
    fail(EINVAL, "plan ended without exec");
}
