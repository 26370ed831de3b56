/* Escape-suite probe: one attack per invocation, one verdict line on stdout.
 *
 *   BREACH <what happened>   the attack worked
 *   SAFE <why not>           the attack was refused
 *
 * The suite runs each attack inside `omac run` (it must say SAFE) and once unconfined (it
 * must say BREACH), which proves the probe would notice a breach. Compiled by the test with
 * the system C compiler.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SAFE(...) do { printf("SAFE "); printf(__VA_ARGS__); printf("\n"); fflush(stdout); return 0; } while (0)
#define BREACH(...) do { printf("BREACH "); printf(__VA_ARGS__); printf("\n"); fflush(stdout); return 0; } while (0)
#define E strerror(errno)

static int slurp(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    size_t n = 0;
    ssize_t r = 0;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += r;
    int saved = errno;
    close(fd);
    if (r < 0) { errno = saved; return -1; }
    buf[n] = 0;
    for (size_t i = 0; i < n; i++) if (buf[i] == 0) buf[i] = '\n';
    return (int)n;
}

static char big[1 << 20];

static int cmd_read(int argc, char **argv) {
    if (argc < 2) return 2;
    int n = slurp(argv[0], big, sizeof big);
    if (n < 0) SAFE("read %s: %s", argv[0], E);
    if (strstr(big, argv[1])) BREACH("read the secret from %s", argv[0]);
    SAFE("%s holds no secret (%d bytes)", argv[0], n);
}

static int cmd_write(int argc, char **argv) {
    if (argc < 1) return 2;
    int fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) SAFE("open %s for writing: %s", argv[0], E);
    if (write(fd, "PWNED\n", 6) != 6) SAFE("write %s: %s", argv[0], E);
    close(fd);
    BREACH("wrote %s", argv[0]);
}

static int cmd_unlink(int argc, char **argv) {
    if (argc < 1) return 2;
    if (unlink(argv[0]) < 0) SAFE("unlink %s: %s", argv[0], E);
    BREACH("removed %s", argv[0]);
}

static int cmd_rename(int argc, char **argv) {
    if (argc < 2) return 2;
    if (rename(argv[0], argv[1]) < 0) SAFE("rename %s: %s", argv[0], E);
    BREACH("renamed %s to %s", argv[0], argv[1]);
}

static int cmd_link(int argc, char **argv) {
    if (argc < 2) return 2;
    if (link(argv[0], argv[1]) < 0) SAFE("link %s: %s", argv[0], E);
    BREACH("linked %s as %s", argv[0], argv[1]);
}

static int cmd_truncate(int argc, char **argv) {
    if (argc < 1) return 2;
    if (truncate(argv[0], 0) < 0) SAFE("truncate %s: %s", argv[0], E);
    BREACH("truncated %s", argv[0]);
}

static int cmd_chmod(int argc, char **argv) {
    if (argc < 1) return 2;
    if (chmod(argv[0], 0777) < 0) SAFE("chmod %s: %s", argv[0], E);
    BREACH("changed the mode of %s", argv[0]);
}

/* Renames a directory holding a masked file, then reads the file under its new name. */
static int cmd_rename_read(int argc, char **argv) {
    if (argc < 4) return 2;
    if (rename(argv[0], argv[1]) < 0) SAFE("rename %s: %s", argv[0], E);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", argv[1], argv[2]);
    int n = slurp(p, big, sizeof big);
    if (n < 0) SAFE("renamed, but read %s: %s", p, E);
    if (strstr(big, argv[3])) BREACH("renamed the parent and read the secret from %s", p);
    SAFE("renamed, %s still masked", p);
}

static int cmd_userns(void) {
    if (unshare(CLONE_NEWUSER) < 0) SAFE("unshare(CLONE_NEWUSER): %s", E);
    BREACH("created a user namespace (a nested namespace could detach omac's mounts)");
}

static int cmd_clone_userns(void) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) SAFE("clone(CLONE_NEWUSER): %s", E);
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    BREACH("cloned into a new user namespace");
}

static int cmd_clone3(void) {
    long r = syscall(SYS_clone3, NULL, 0);
    if (r < 0 && errno == ENOSYS) SAFE("clone3: ENOSYS (flags in memory stay out of reach)");
    BREACH("clone3 reached the kernel (%s): its namespace flags escape the filter", r < 0 ? E : "ok");
}

static int cmd_mount(int argc, char **argv) {
    if (argc < 1) return 2;
    if (mount("none", argv[0], "tmpfs", 0, NULL) < 0) SAFE("mount tmpfs on %s: %s", argv[0], E);
    umount2(argv[0], MNT_DETACH);
    BREACH("mounted a tmpfs on %s", argv[0]);
}

static int cmd_umount(int argc, char **argv) {
    if (argc < 1) return 2;
    if (umount2(argv[0], MNT_DETACH) < 0) SAFE("umount %s: %s", argv[0], E);
    BREACH("unmounted %s", argv[0]);
}

static int cmd_fsopen(void) {
    long fd = syscall(SYS_fsopen, "tmpfs", 0);
    if (fd < 0) SAFE("fsopen: %s", E);
    BREACH("fsopen gave a filesystem context");
}

static int cmd_fspick(void) {
    long fd = syscall(SYS_fspick, AT_FDCWD, "/", 0);
    if (fd < 0) SAFE("fspick /: %s", E);
    BREACH("fspick gave the root's superblock context");
}

static int cmd_open_tree(int argc, char **argv) {
    if (argc < 1) return 2;
    long fd = syscall(SYS_open_tree, AT_FDCWD, argv[0], 1 /* OPEN_TREE_CLONE */ | 0x8000 /* AT_RECURSIVE */);
    if (fd < 0) SAFE("open_tree %s: %s", argv[0], E);
    BREACH("cloned the mount tree at %s", argv[0]);
}

/* Attribution: with these arguments the kernel answers something other than EPERM. */
static int cmd_move_mount(void) {
    long r = syscall(SYS_move_mount, -1, "", -1, "", 0);
    if (r < 0 && errno == EPERM) SAFE("move_mount: EPERM");
    BREACH("move_mount reached the kernel (%s)", r < 0 ? E : "ok");
}

static int cmd_mount_setattr(void) {
    long r = syscall(SYS_mount_setattr, -1, "", 0, NULL, 0);
    if (r < 0 && errno == EPERM) SAFE("mount_setattr: EPERM");
    BREACH("mount_setattr reached the kernel (%s)", r < 0 ? E : "ok");
}

static int cmd_pivot_root(void) {
    long r = syscall(SYS_pivot_root, "/omac-no-such-dir", "/omac-no-such-dir");
    if (r < 0 && errno == EPERM) SAFE("pivot_root: EPERM");
    BREACH("pivot_root got past its permission check (%s)", r < 0 ? E : "ok");
}

static int cmd_setns(void) {
    int fd = open("/proc/self/ns/user", O_RDONLY);
    if (fd < 0) SAFE("open /proc/self/ns/user: %s", E);
    if (setns(fd, 0) < 0 && errno == EPERM) SAFE("setns: EPERM");
    BREACH("setns got past its permission check (%s)", E);
}

static int cmd_chroot(int argc, char **argv) {
    if (argc < 1) return 2;
    if (chroot(argv[0]) < 0) SAFE("chroot %s: %s", argv[0], E);
    BREACH("chrooted into %s", argv[0]);
}

static int cmd_ptrace(int argc, char **argv) {
    if (argc < 1) return 2;
    pid_t pid = atoi(argv[0]);
    if (ptrace(PTRACE_ATTACH, pid, 0, 0) < 0) SAFE("ptrace attach %d: %s", pid, E);
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, 0, 0);
    BREACH("attached to pid %d with ptrace", pid);
}

static int cmd_traceme(void) {
    pid_t c = fork();
    if (c == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 ? 1 : 0);
    int st;
    waitpid(c, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) BREACH("PTRACE_TRACEME worked");
    SAFE("PTRACE_TRACEME refused");
}

static int cmd_vmread(int argc, char **argv) {
    if (argc < 1) return 2;
    pid_t pid = atoi(argv[0]);
    char buf[8];
    struct iovec l = {buf, sizeof buf}, r = {(void *)0x1000, sizeof buf};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n < 0 && (errno == EPERM || errno == ESRCH || errno == EACCES))
        SAFE("process_vm_readv %d: %s", pid, E);
    BREACH("process_vm_readv reached the memory of pid %d (%s)", pid, n < 0 ? E : "read");
}

static int cmd_open(int argc, char **argv) {
    if (argc < 1) return 2;
    int fd = open(argv[0], O_RDONLY);
    if (fd < 0) SAFE("open %s: %s", argv[0], E);
    BREACH("opened %s", argv[0]);
}

static int cmd_readlink(int argc, char **argv) {
    if (argc < 1) return 2;
    char buf[4096];
    ssize_t n = readlink(argv[0], buf, sizeof buf - 1);
    if (n < 0) SAFE("readlink %s: %s", argv[0], E);
    buf[n] = 0;
    BREACH("%s -> %s", argv[0], buf);
}

static int cmd_listdir(int argc, char **argv) {
    if (argc < 1) return 2;
    DIR *d = opendir(argv[0]);
    if (!d) SAFE("opendir %s: %s", argv[0], E);
    int n = 0;
    while (readdir(d)) n++;
    BREACH("listed %s (%d entries)", argv[0], n);
}

/* Tries to reach another process's open descriptors through /proc/PID/fd/N. */
static int cmd_steal_fds(int argc, char **argv) {
    if (argc < 1) return 2;
    for (int i = 0; i < 64; i++) {
        char p[128], t[4096];
        snprintf(p, sizeof p, "/proc/%s/fd/%d", argv[0], i);
        ssize_t n = readlink(p, t, sizeof t - 1);
        if (n >= 0) {
            t[n] = 0;
            BREACH("%s -> %s", p, t);
        }
        int fd = open(p, O_RDONLY);
        if (fd >= 0) BREACH("opened %s", p);
    }
    SAFE("no descriptor of pid %s reachable (%s)", argv[0], E);
}

static int cmd_kill(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t pid = atoi(argv[0]);
    int sig = atoi(argv[1]);
    if (kill(pid, sig) < 0) SAFE("kill %d %d: %s", pid, sig, E);
    BREACH("signal %d delivered to pid %d", sig, pid);
}

static int cmd_tiocsti(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = strcmp(argv[0], "stdin") == 0 ? 0 : open(argv[0], O_RDWR);
    if (fd < 0) SAFE("open %s: %s", argv[0], E);
    int pushed = 0;
    for (char *c = argv[1]; *c; c++)
        if (ioctl(fd, TIOCSTI, c) == 0) pushed++;
    if (pushed) BREACH("pushed %d characters into the terminal", pushed);
    SAFE("TIOCSTI: %s", E);
}

/* Setup for the keyring attack: a session keyring with a secret key, then exec. */
static int cmd_keyring_exec(int argc, char **argv) {
    if (argc < 3) return 2;
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "omac-escape") < 0) { perror("join"); return 3; }
    if (syscall(SYS_add_key, "user", argv[0], argv[1], strlen(argv[1]), KEY_SPEC_SESSION_KEYRING) < 0) {
        perror("add_key");
        return 3;
    }
    execv(argv[2], argv + 2);
    perror("exec");
    return 3;
}

static int cmd_keyring_read(int argc, char **argv) {
    if (argc < 2) return 2;
    int rings[] = {KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_SESSION_KEYRING, KEY_SPEC_USER_KEYRING};
    for (int i = 0; i < 3; i++) {
        long id = syscall(SYS_keyctl, KEYCTL_SEARCH, rings[i], "user", argv[0], 0);
        if (id < 0) continue;
        char buf[256] = {0};
        long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
        if (n > 0 && strstr(buf, argv[1])) BREACH("read the host's key %s", argv[0]);
    }
    SAFE("key %s not reachable: %s", argv[0], E);
}

static int cmd_io_uring(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0) SAFE("io_uring_setup: %s", E);
    BREACH("created an io_uring");
}

static int cmd_socket(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = socket(atoi(argv[0]), atoi(argv[1]), atoi(argv[2]));
    if (fd < 0) SAFE("socket(%s, %s, %s): %s", argv[0], argv[1], argv[2], E);
    BREACH("created a socket of family %s", argv[0]);
}

/* Runs `fn` in a child and tells whether the kernel killed it (seccomp) or it returned. */
static int in_child(const char *what, void (*fn)(void)) {
    pid_t c = fork();
    if (c == 0) { fn(); _exit(0); }
    int st;
    waitpid(c, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) SAFE("%s: killed by SIGSYS", what);
    if (WIFSIGNALED(st)) SAFE("%s: killed by signal %d", what, WTERMSIG(st));
    BREACH("%s: the syscall returned to its caller", what);
}

static void x32_getpid(void) { syscall(0x40000000 | 39); }
static void i386_getpid(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
}

static int cmd_setuid(int argc, char **argv) {
    if (argc < 1) return 2;
    int p[2];
    if (pipe(p) < 0) return 3;
    pid_t c = fork();
    if (c == 0) {
        dup2(p[0], 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    struct timespec ts = {0, 400 * 1000 * 1000};
    nanosleep(&ts, NULL);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", c);
    int n = slurp(path, big, sizeof big);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    if (n < 0) SAFE("status of %s: %s", argv[0], E);
    char *u = strstr(big, "Uid:");
    unsigned ruid = 0, euid = 0;
    if (!u || sscanf(u, "Uid:\t%u\t%u", &ruid, &euid) != 2) SAFE("no Uid line");
    if (ruid != euid) BREACH("%s ran with euid %u (real uid %u)", argv[0], euid, ruid);
    SAFE("%s kept euid %u", argv[0], euid);
}

static unsigned long long field(const char *status, const char *name) {
    const char *p = strstr(status, name);
    if (!p) return ~0ULL;
    return strtoull(p + strlen(name), NULL, strcmp(name, "NoNewPrivs:") && strcmp(name, "Seccomp:") ? 16 : 10);
}

static int cmd_status(int argc, char **argv) {
    if (argc < 1) return 2;
    if (slurp("/proc/self/status", big, sizeof big) < 0) SAFE("status: %s", E);
    if (!strcmp(argv[0], "caps")) {
        const char *caps[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
        for (int i = 0; i < 5; i++)
            if (field(big, caps[i]) != 0) BREACH("%s %llx", caps[i], field(big, caps[i]));
        SAFE("every capability set is empty");
    }
    if (!strcmp(argv[0], "nnp")) {
        if (field(big, "NoNewPrivs:") != 1) BREACH("NoNewPrivs %llu", field(big, "NoNewPrivs:"));
        SAFE("NoNewPrivs 1");
    }
    if (!strcmp(argv[0], "seccomp")) {
        if (field(big, "Seccomp:") != 2) BREACH("Seccomp %llu", field(big, "Seccomp:"));
        SAFE("Seccomp 2 (filter)");
    }
    return 2;
}

static int sockaddr_of(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof *a4;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof *a6;
        return AF_INET6;
    }
    return -1;
}

static int cmd_connect_tcp(int argc, char **argv) {
    if (argc < 2) return 2;
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = sockaddr_of(argv[0], atoi(argv[1]), &ss, &len);
    if (fam < 0) return 2;
    int fd = socket(fam, SOCK_STREAM, 0);
    if (fd < 0) SAFE("socket: %s", E);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) SAFE("connect %s:%s: %s", argv[0], argv[1], E);
    if (write(fd, "omac-escape\n", 12) < 0) SAFE("connected, write failed: %s", E);
    BREACH("connected to %s:%s", argv[0], argv[1]);
}

/* Binds a TCP socket to 127.0.0.1:PORT: Landlock's port rules decide in the open mode. */
static int cmd_bind_tcp(int argc, char **argv) {
    if (argc < 1) return 2;
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = sockaddr_of("127.0.0.1", atoi(argv[0]), &ss, &len);
    if (fam < 0) return 2;
    int fd = socket(fam, SOCK_STREAM, 0);
    if (fd < 0) SAFE("socket: %s", E);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) SAFE("bind 127.0.0.1:%s: %s", argv[0], E);
    BREACH("bound 127.0.0.1:%s", argv[0]);
}

/* Sends a datagram; the test's listener decides (a send succeeds on any reachable route). */
static int cmd_udp(int argc, char **argv) {
    if (argc < 3) return 2;
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = sockaddr_of(argv[0], atoi(argv[1]), &ss, &len);
    if (fam < 0) return 2;
    int fd = socket(fam, SOCK_DGRAM, 0);
    if (fd < 0) SAFE("socket: %s", E);
    /* "hex:..." sends binary payloads (a DNS query holds NUL bytes). */
    char payload[1024];
    size_t plen = 0;
    if (!strncmp(argv[2], "hex:", 4)) {
        for (const char *h = argv[2] + 4; h[0] && h[1] && plen < sizeof payload; h += 2) {
            unsigned v;
            sscanf(h, "%2x", &v);
            payload[plen++] = (char)v;
        }
    } else {
        plen = strlen(argv[2]);
        memcpy(payload, argv[2], plen < sizeof payload ? plen : sizeof payload);
    }
    if (sendto(fd, payload, plen, 0, (struct sockaddr *)&ss, len) < 0)
        SAFE("sendto %s:%s: %s", argv[0], argv[1], E);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) BREACH("got a %zd-byte answer from %s:%s", n, argv[0], argv[1]);
    SAFE("no answer from %s:%s (%s)", argv[0], argv[1], E);
}

static int cmd_connect_unix(int argc, char **argv) {
    if (argc < 1) return 2;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    socklen_t len;
    int abstract = argv[0][0] == '@';
    if (abstract) {
        strncpy(a.sun_path + 1, argv[0] + 1, sizeof a.sun_path - 2);
        len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[0] + 1);
    } else {
        strncpy(a.sun_path, argv[0], sizeof a.sun_path - 1);
        len = sizeof a;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) SAFE("socket(AF_UNIX): %s", E);
    if (connect(fd, (struct sockaddr *)&a, len) < 0) SAFE("connect %s: %s", argv[0], E);
    BREACH("connected to the Unix socket %s", argv[0]);
}

static int cmd_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) SAFE("opendir /proc/self/fd: %s", E);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d)) continue;
        char p[64], t[4096];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(p, t, sizeof t - 1);
        t[n > 0 ? n : 0] = 0;
        BREACH("inherited descriptor %d -> %s", fd, t);
    }
    SAFE("only descriptors 0, 1 and 2");
}

extern char **environ;
static int cmd_env(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        for (char **e = environ; *e; e++)
            if (strstr(*e, argv[i])) BREACH("the environment holds %s", argv[i]);
    SAFE("no secret in the environment");
}

static int cmd_procs(int argc, char **argv) {
    if (argc < 1) return 2;
    char p[64];
    snprintf(p, sizeof p, "/proc/%s", argv[0]);
    struct stat st;
    if (stat(p, &st) == 0) BREACH("the host process %s is visible", argv[0]);
    SAFE("pid %s not visible", argv[0]);
}

static int copy(const char *src, const char *dst) {
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) return -1;
    close(in);
    close(out);
    return 0;
}

static int cmd_exec_copy(int argc, char **argv) {
    if (argc < 2) return 2;
    if (copy(argv[0], argv[1]) < 0) SAFE("copy to %s: %s", argv[1], E);
    pid_t c = fork();
    if (c == 0) {
        char *args[] = {argv[1], NULL};
        execv(argv[1], args);
        _exit(126);
    }
    int st;
    waitpid(c, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) BREACH("executed %s", argv[1]);
    SAFE("could not execute %s", argv[1]);
}

static int cmd_errno_not(int argc, char **argv, long r, int expected, const char *what) {
    (void)argc;
    (void)argv;
    if (r < 0 && errno == expected) SAFE("%s: %s", what, E);
    BREACH("%s reached the kernel (%s)", what, r < 0 ? E : "ok");
}

static int cmd_personality(void) {
    int cur = personality(0xffffffff);
    if (personality(cur | ADDR_NO_RANDOMIZE) < 0) SAFE("personality: %s", E);
    if (personality(0xffffffff) & ADDR_NO_RANDOMIZE) BREACH("ASLR disabled with personality()");
    SAFE("personality flag not set");
}

/* Test setup: a seccomp filter refusing new user namespaces, as a container's default
 * profile does, then exec. */
static int cmd_deny_userns_exec(int argc, char **argv) {
    if (argc < 1) return 2;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        perror("seccomp");
        return 3;
    }
    execv(argv[0], argv);
    perror("exec");
    return 3;
}

static int cmd_sleep(void) {
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe ATTACK [ARGS...]\n");
        return 2;
    }
    const char *c = argv[1];
    int n = argc - 2;
    char **a = argv + 2;
    if (!strcmp(c, "read")) return cmd_read(n, a);
    if (!strcmp(c, "write")) return cmd_write(n, a);
    if (!strcmp(c, "unlink")) return cmd_unlink(n, a);
    if (!strcmp(c, "rename")) return cmd_rename(n, a);
    if (!strcmp(c, "link")) return cmd_link(n, a);
    if (!strcmp(c, "truncate")) return cmd_truncate(n, a);
    if (!strcmp(c, "chmod")) return cmd_chmod(n, a);
    if (!strcmp(c, "rename-read")) return cmd_rename_read(n, a);
    if (!strcmp(c, "userns")) return cmd_userns();
    if (!strcmp(c, "clone-userns")) return cmd_clone_userns();
    if (!strcmp(c, "clone3")) return cmd_clone3();
    if (!strcmp(c, "mount")) return cmd_mount(n, a);
    if (!strcmp(c, "umount")) return cmd_umount(n, a);
    if (!strcmp(c, "fsopen")) return cmd_fsopen();
    if (!strcmp(c, "fspick")) return cmd_fspick();
    if (!strcmp(c, "open-tree")) return cmd_open_tree(n, a);
    if (!strcmp(c, "move-mount")) return cmd_move_mount();
    if (!strcmp(c, "mount-setattr")) return cmd_mount_setattr();
    if (!strcmp(c, "pivot-root")) return cmd_pivot_root();
    if (!strcmp(c, "setns")) return cmd_setns();
    if (!strcmp(c, "chroot")) return cmd_chroot(n, a);
    if (!strcmp(c, "ptrace")) return cmd_ptrace(n, a);
    if (!strcmp(c, "traceme")) return cmd_traceme();
    if (!strcmp(c, "vmread")) return cmd_vmread(n, a);
    if (!strcmp(c, "open")) return cmd_open(n, a);
    if (!strcmp(c, "readlink")) return cmd_readlink(n, a);
    if (!strcmp(c, "listdir")) return cmd_listdir(n, a);
    if (!strcmp(c, "kill")) return cmd_kill(n, a);
    if (!strcmp(c, "steal-fds")) return cmd_steal_fds(n, a);
    if (!strcmp(c, "tiocsti")) return cmd_tiocsti(n, a);
    if (!strcmp(c, "keyring-exec")) return cmd_keyring_exec(n, a);
    if (!strcmp(c, "keyring-read")) return cmd_keyring_read(n, a);
    if (!strcmp(c, "io-uring")) return cmd_io_uring();
    if (!strcmp(c, "socket")) return cmd_socket(n, a);
    if (!strcmp(c, "x32")) return in_child("x32 getpid", x32_getpid);
    if (!strcmp(c, "i386")) return in_child("i386 int 0x80 getpid", i386_getpid);
    if (!strcmp(c, "setuid")) return cmd_setuid(n, a);
    if (!strcmp(c, "status")) return cmd_status(n, a);
    if (!strcmp(c, "connect-tcp")) return cmd_connect_tcp(n, a);
    if (!strcmp(c, "bind-tcp")) return cmd_bind_tcp(n, a);
    if (!strcmp(c, "udp")) return cmd_udp(n, a);
    if (!strcmp(c, "connect-unix")) return cmd_connect_unix(n, a);
    if (!strcmp(c, "fds")) return cmd_fds();
    if (!strcmp(c, "env")) return cmd_env(n, a);
    if (!strcmp(c, "procs")) return cmd_procs(n, a);
    if (!strcmp(c, "exec-copy")) return cmd_exec_copy(n, a);
    if (!strcmp(c, "bpf")) return cmd_errno_not(n, a, syscall(SYS_bpf, 999, NULL, 0), EPERM, "bpf");
    if (!strcmp(c, "perf"))
        return cmd_errno_not(n, a, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM, "perf_event_open");
    if (!strcmp(c, "userfaultfd")) {
        long fd = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
        if (fd < 0) SAFE("userfaultfd: %s", E);
        BREACH("created a userfaultfd");
    }
    if (!strcmp(c, "personality")) return cmd_personality();
    if (!strcmp(c, "sleep")) return cmd_sleep();
    if (!strcmp(c, "deny-userns-exec")) return cmd_deny_userns_exec(n, a);
    fprintf(stderr, "probe: unknown attack %s\n", c);
    return 2;
}
