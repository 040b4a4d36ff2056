/*
 * spawn.c -- runs one benchmark contender and reports what it cost:
 *
 *     spawn STDOUT_FILE STDERR_FILE CMD [ARG...]
 *
 * prints one line "WALL_NS MAXRSS_KIB UTIME_US STIME_US WAIT_STATUS" on its own
 * standard output once CMD has ended (its output goes to the two files, its
 * input is /dev/null). Wall time runs from just before fork to just after
 * wait4; the resources are wait4's rusage of CMD alone.
 *
 * Why a C launcher: Linux carries a process's peak RSS (ru_maxrss) across
 * fork and exec, so a child forked by the Python harness would report at
 * least the harness's own ~25 MiB. Forked from this small program the floor
 * is about one MiB, and the figure is the contender's own.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int redirect(const char *path, int fd, int flags)
{
    int f = open(path, flags, 0644);
    if (f < 0) return -1;
    if (dup2(f, fd) < 0) return -1;
    close(f);
    return 0;
}

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    int status;
    pid_t pid;

    if (argc < 4) {
        fputs("usage: spawn STDOUT_FILE STDERR_FILE CMD [ARG...]\n", stderr);
        return 2;
    }
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if (pid < 0) {
        perror("spawn: fork");
        return 2;
    }
    if (pid == 0) {
        int w = O_WRONLY | O_CREAT | O_TRUNC;
        if (redirect("/dev/null", 0, O_RDONLY) || redirect(argv[1], 1, w) ||
            redirect(argv[2], 2, w))
            _exit(126);
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("spawn: wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%lld %ld %lld %lld %d\n",
           (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec),
           ru.ru_maxrss, (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
           (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec, status);
    return 0;
}
