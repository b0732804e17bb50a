/*
 * hostile: a per-user handler that misbehaves, for the VM suite.
 *
 * srpcd starts it as the calling user in the handler domain (srpc_handler_t at
 * the caller's level) when a call reaches /hostile. Before doing anything a
 * handler should, it tries what a compromised handler would, and reports each
 * attempt on stderr, which srpcd logs as `handler stderr: "hostile: ..."`:
 *
 *   hostile: <attempt> result=<ok|ERRNO-NAME> [detail]
 *
 * The suite opens DAC for each target first (chmod, a same-uid target), so that
 * an EACCES here is SELinux's and comes with an AVC in the audit log. It then
 * exits without answering; the call fails, which the suite expects.
 *
 * Attempts: read /etc/shadow; read another user's home (/home/bob/secret);
 * signal (SIGCONT, harmless) every pid, reporting each not refused by DAC
 * (EPERM) or absent; exec /bin/sh; create a TCP socket; create and
 * write files in the canonical tree (/srv/srpc/open); connect to another user's
 * clone socket (/run/srpc/users/bob/tree/echo).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, int rc, int err, const char *detail)
{
    fprintf(stderr, "hostile: %s result=%s%s%s\n", what,
            rc >= 0 ? "ok" : strerrorname_np(err), detail ? " " : "", detail ? detail : "");
    fflush(stderr);
}

static void try_open(const char *what, const char *path, int flags)
{
    int fd = open(path, flags, 0666);
    report(what, fd, errno, path);
    if (fd >= 0) {
        close(fd);
    }
}

static void try_signal_all(void)
{
    /* Every pid, not a /proc listing: a confined handler may not read /proc.
     * SIGCONT is harmless; DAC refuses other uids (EPERM), which is not the
     * question here: same-uid processes in other domains are. */
    char detail[64];
    int seen = 0;
    for (long pid = 2; pid < 65536; pid++) {
        if (pid == getpid()) {
            continue;
        }
        int rc = kill((pid_t)pid, SIGCONT);
        int err = errno;
        if (rc < 0 && (err == EPERM || err == ESRCH)) {
            continue;
        }
        snprintf(detail, sizeof detail, "pid=%ld", pid);
        report("signal", rc, err, detail);
        seen++;
    }
    snprintf(detail, sizeof detail, "same-uid-targets=%d", seen);
    report("signal-done", 0, 0, detail);
}

static void try_exec_sh(void)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        report("exec-sh", -1, errno, "pipe");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
        int err = errno;
        (void)write(pipefd[1], &err, sizeof err);
        _exit(127);
    }
    close(pipefd[1]);
    int err = 0;
    ssize_t n = read(pipefd[0], &err, sizeof err);
    close(pipefd[0]);
    if (pid > 0) {
        waitpid(pid, NULL, 0);
    }
    report("exec-sh", n == (ssize_t)sizeof err ? -1 : 0, err, "/bin/sh");
}

static void try_tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    report("tcp-socket", fd, errno, "AF_INET SOCK_STREAM");
    if (fd >= 0) {
        close(fd);
    }
}

static void try_connect(const char *what, const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        report(what, -1, errno, "socket(AF_UNIX)");
        return;
    }
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    if (rc < 0 && err == EPROTOTYPE) {
        /* The permission checks passed; only the socket type differed. */
        rc = 0;
    }
    report(what, rc, err, path);
    close(fd);
}

int main(void)
{
    if (getuid() == 0 || geteuid() == 0) {
        /* It signals every process it can: never as root. */
        fprintf(stderr, "hostile: refusing to run as root\n");
        return 1;
    }
    fprintf(stderr, "hostile: start pid=%d uid=%d\n", getpid(), getuid());
    try_open("read-shadow", "/etc/shadow", O_RDONLY);
    try_open("read-other-home", "/home/bob/secret", O_RDONLY);
    try_signal_all();
    try_exec_sh();
    try_tcp();
    try_open("create-in-tree", "/srv/srpc/open/hostile-was-here", O_WRONLY | O_CREAT);
    try_open("write-tree-file", "/srv/srpc/open/note", O_WRONLY | O_APPEND);
    try_connect("connect-other-clone", "/run/srpc/users/bob/tree/echo");
    fprintf(stderr, "hostile: done\n");
    return 0;
}
