/*
 * batch.c -- the batch engine (batch.h): listing folders, running jobs in
 * child processes with a bounded number at a time, passing signals on, the
 * batch progress line and the summary table.
 *
 * Protocol between a job and the engine: the child writes one outcome byte
 * and then its reason (at most 511 bytes) to its pipe and exits 0; the
 * engine reads the pipe to its end and reaps the child. A child that dies
 * without reporting (a crash, a signal, SIGBUS from an input truncated under
 * it) is a failure whose reason names the signal or exit status.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch.h"

/* ---- jobs -------------------------------------------------------------------- */

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

batch_job *batch_add(batch *b, const char *a, const char *b_path)
{
    batch_job *j;
    struct stat sb;
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        batch_job *nv = realloc(b->v, ncap * sizeof *nv);
        if (!nv) return NULL;
        b->v = nv;
        b->cap = ncap;
    }
    j = &b->v[b->n];
    memset(j, 0, sizeof *j);
    j->a = dupstr(a);
    j->b = b_path ? dupstr(b_path) : NULL;
    if (!j->a || (b_path && !j->b)) {
        free(j->a);
        free(j->b);
        return NULL;
    }
    j->outcome = BATCH_PENDING;
    if (stat(a, &sb) == 0) j->bytes = (uint64_t)sb.st_size;
    b->n++;
    return j;
}

void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].a);
        free(b->v[i].b);
    }
    free(b->v);
    memset(b, 0, sizeof *b);
}

size_t batch_count(const batch *b, int outcome)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) n += b->v[i].outcome == outcome;
    return n;
}

int batch_is_sharded(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int found = 0;
    if (!d) return 0;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        found = n > 11 && !strcmp(e->d_name + n - 11, ".index.json");
    }
    closedir(d);
    return found;
}

int batch_default_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* ---- listing ------------------------------------------------------------------- */

static int checkpoint_name(const char *name)
{
    static const char *const ext[] = {".safetensors", ".pth", ".pt", ".bin", ".ckpt",
                                      ".pkl", ".tar", ".npz", ".npy"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && !strcmp(name + n - k, ext[i])) return 1;
    }
    return 0;
}

static int add_file(batch_files *f, const char *path, const char *rel)
{
    if (f->n == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 16;
        batch_file *nv = realloc(f->v, ncap * sizeof *nv);
        if (!nv) return -1;
        f->v = nv;
        f->cap = ncap;
    }
    f->v[f->n].path = dupstr(path);
    f->v[f->n].rel = dupstr(rel);
    if (!f->v[f->n].path || !f->v[f->n].rel) {
        free(f->v[f->n].path);
        free(f->v[f->n].rel);
        return -1;
    }
    f->n++;
    return 0;
}

static int by_path(const void *x, const void *y)
{
    return strcmp(((const batch_file *)x)->path, ((const batch_file *)y)->path);
}

/* Files of DIR (REL: its path relative to the folder given, "" at the top). */
static int walk(const char *dir, const char *rel, int recursive, int depth, batch_files *out)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;
    if (depth > 64) return cli_errorf(1, "%s: folders nest more than 64 levels", dir);
    d = opendir(dir);
    if (!d) return cli_errorf(1, "%s: cannot read the folder: %s", dir, strerror(errno));
    while (!rc && (e = readdir(d))) {
        char *path, *sub;
        size_t pl, sl;
        struct stat sb;
        if (e->d_name[0] == '.') continue; /* ., .., hidden and temporary files */
        pl = strlen(dir) + strlen(e->d_name) + 2;
        sl = strlen(rel) + strlen(e->d_name) + 2;
        path = malloc(pl);
        sub = malloc(sl);
        if (!path || !sub) {
            free(path);
            free(sub);
            rc = cli_errorf(1, "out of memory listing %s", dir);
            break;
        }
        snprintf(path, pl, "%s/%s", dir, e->d_name);
        snprintf(sub, sl, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        if (stat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                if (recursive) rc = walk(path, sub, recursive, depth + 1, out);
            } else if (S_ISREG(sb.st_mode) && checkpoint_name(e->d_name)) {
                if (add_file(out, path, sub)) rc = cli_errorf(1, "out of memory listing %s", dir);
            }
        }
        free(path);
        free(sub);
    }
    closedir(d);
    return rc;
}

int batch_list(const char *arg, int recursive, batch_files *out)
{
    struct stat sb;
    size_t first = out->n;
    char *top;
    size_t n;
    int rc;
    if (stat(arg, &sb) != 0) return cli_errorf(1, "%s: %s", arg, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        const char *base = strrchr(arg, '/');
        if (add_file(out, arg, base ? base + 1 : arg)) return cli_errorf(1, "out of memory");
        return 0;
    }
    top = dupstr(arg);
    if (!top) return cli_errorf(1, "out of memory");
    n = strlen(top);
    while (n > 1 && top[n - 1] == '/') top[--n] = 0;
    rc = walk(top, "", recursive, 0, out);
    free(top);
    if (!rc && out->n > first) qsort(out->v + first, out->n - first, sizeof *out->v, by_path);
    return rc;
}

void batch_files_free(batch_files *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].path);
        free(f->v[i].rel);
    }
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* ---- running ---------------------------------------------------------------------- */

#define MAX_JOBS 256

/* Progress of running jobs: one counter per slot in memory shared with the
 * children (input bytes done, scaled from the job's own done/total). */
static volatile uint64_t *shared_done;
static volatile uint64_t *child_counter; /* in a child: its slot's counter */
static uint64_t child_bytes;              /* in a child: its input's size */

static int on_child_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    if (child_counter && total)
        *child_counter = (uint64_t)((double)child_bytes * ((double)done / (double)total));
    return 0;
}

void batch_child_progress(ck_ctx *ctx)
{
    if (ctx && child_counter) ck_ctx_set_progress(ctx, on_child_progress, NULL);
}

/* Children running now, for the signal handler (async-signal-safe access). */
static volatile pid_t running[MAX_JOBS];
static volatile sig_atomic_t nrunning_slots;

static void on_batch_signal(int sig)
{
    int status;
    for (int i = 0; i < nrunning_slots; i++)
        if (running[i] > 0) kill(running[i], sig);
    for (int i = 0; i < nrunning_slots; i++)
        if (running[i] > 0) waitpid(running[i], &status, 0);
    ck_cleanup_on_signal();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void batch_signals(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_batch_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    if (on) {
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    } else {
        cli_signals();
    }
}

typedef struct slot {
    pid_t pid;
    int fd;
    size_t job;
    char buf[1 + sizeof(((batch_job *)0)->reason)];
    size_t got;
} slot;

static void child(batch_job *j, int fd, batch_fn fn, void *user)
{
    char msg[1 + sizeof j->reason];
    int outcome;
    size_t len, off = 0;
    memset(msg, 0, sizeof msg);
    outcome = fn(user, j, msg + 1, sizeof msg - 1);
    msg[0] = (char)outcome;
    len = 1 + strnlen(msg + 1, sizeof msg - 2);
    while (off < len) {
        ssize_t w = write(fd, msg + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    fflush(NULL);
    _exit(0);
}

static void finish(batch *b, slot *s)
{
    batch_job *j = &b->v[s->job];
    int status = 0;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (s->got >= 1 && (unsigned char)s->buf[0] <= BATCH_FAILED) {
        size_t n = s->got - 1 < sizeof j->reason - 1 ? s->got - 1 : sizeof j->reason - 1;
        j->outcome = (unsigned char)s->buf[0];
        memcpy(j->reason, s->buf + 1, n);
        j->reason[n] = 0;
    } else {
        j->outcome = BATCH_FAILED;
        if (WIFSIGNALED(status))
            snprintf(j->reason, sizeof j->reason, "the job died of signal %d (%s)",
                     WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
            snprintf(j->reason, sizeof j->reason, "the job ended without a result (status %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    close(s->fd);
    s->pid = 0;
}

static void progress(const batch *b, size_t done, size_t total, uint64_t bdone, uint64_t btotal,
                     double start, const char *label, int jobs)
{
    char x[32], y[32], r[32];
    double el, rate;
    for (int i = 0; shared_done && i < jobs; i++) bdone += shared_done[i];
    if (bdone > btotal) bdone = btotal;
    el = cli_now() - start;
    rate = el > 0 ? (double)bdone / el : 0;
    double eta = rate > 0 ? (double)(btotal - bdone) / rate : 0;
    (void)b;
    fprintf(stderr, "\r%s: %zu/%zu files, %s/%s, %s/s, ETA %.0fs\033[K", label, done, total,
            cli_bytes(bdone, x, sizeof x), cli_bytes(btotal, y, sizeof y),
            cli_bytes((uint64_t)rate, r, sizeof r), eta);
}

void batch_run(batch *b, int jobs, const cli_opts *o, const char *label, batch_fn fn, void *user)
{
    slot slots[MAX_JOBS];
    struct pollfd pf[MAX_JOBS];
    size_t next = 0, total = 0, done = 0;
    uint64_t btotal = 0, bdone = 0;
    int show = !o->quiet && isatty(STDERR_FILENO), active = 0;
    double start = cli_now();
    sigset_t stop_sigs, old_mask;

    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGHUP);
    if (jobs < 1) jobs = 1;
    if (jobs > MAX_JOBS) jobs = MAX_JOBS;
    memset(slots, 0, sizeof slots);
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].outcome != BATCH_PENDING) continue;
        total++;
        btotal += b->v[i].bytes;
    }
    nrunning_slots = jobs;
    for (int i = 0; i < jobs; i++) running[i] = 0;
    if (show) {
        void *mem = mmap(NULL, sizeof(uint64_t) * MAX_JOBS, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        shared_done = mem == MAP_FAILED ? NULL : mem;
    }
    batch_signals(1);
    fflush(NULL);
    for (;;) {
        int n = 0;
        /* start jobs while there is room */
        for (int i = 0; i < jobs && next < b->n; i++) {
            int p[2];
            pid_t pid;
            if (slots[i].pid) continue;
            while (next < b->n && b->v[next].outcome != BATCH_PENDING) next++;
            if (next >= b->n) break;
            if (pipe(p) != 0) {
                b->v[next].outcome = BATCH_FAILED;
                snprintf(b->v[next].reason, sizeof b->v[next].reason, "cannot start a job: %s",
                         strerror(errno));
                next++;
                done++;
                continue;
            }
            /* signals wait until the new job is in running[] (parent) or has
             * its own cleanup handler (child) */
            sigprocmask(SIG_BLOCK, &stop_sigs, &old_mask);
            pid = fork();
            if (pid == 0) {
                close(p[0]);
                for (int k = 0; k < jobs; k++)
                    if (slots[k].pid) close(slots[k].fd);
                batch_signals(0);
                for (int k = 0; k < MAX_JOBS; k++) running[k] = 0;
                nrunning_slots = 0;
                if (shared_done) {
                    child_counter = &shared_done[i];
                    child_bytes = b->v[next].bytes;
                }
                sigprocmask(SIG_SETMASK, &old_mask, NULL);
                child(&b->v[next], p[1], fn, user);
            }
            if (pid > 0) running[i] = pid;
            sigprocmask(SIG_SETMASK, &old_mask, NULL);
            close(p[1]);
            if (pid < 0) {
                close(p[0]);
                b->v[next].outcome = BATCH_FAILED;
                snprintf(b->v[next].reason, sizeof b->v[next].reason, "cannot start a job: %s",
                         strerror(errno));
                next++;
                done++;
                continue;
            }
            slots[i].pid = pid;
            slots[i].fd = p[0];
            slots[i].job = next++;
            slots[i].got = 0;
            if (shared_done) shared_done[i] = 0;
            active++;
        }
        if (!active) break;
        for (int i = 0; i < jobs; i++) {
            pf[i].fd = slots[i].pid ? slots[i].fd : -1;
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        if (show) progress(b, done, total, bdone, btotal, start, label, jobs);
        n = poll(pf, (nfds_t)jobs, 250);
        if (n <= 0) continue;
        for (int i = 0; i < jobs; i++) {
            slot *s = &slots[i];
            ssize_t r;
            if (!s->pid || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            r = read(s->fd, s->buf + s->got, sizeof s->buf - s->got);
            if (r > 0) {
                s->got += (size_t)r;
                if (s->got < sizeof s->buf) continue;
            } else if (r < 0 && errno == EINTR) {
                continue;
            }
            /* end of the pipe (or a full buffer): the job is over */
            running[i] = 0;
            finish(b, s);
            if (shared_done) shared_done[i] = 0;
            active--;
            done++;
            bdone += b->v[s->job].bytes;
        }
    }
    if (show) fputs("\r\033[K", stderr);
    if (shared_done) munmap((void *)shared_done, sizeof(uint64_t) * MAX_JOBS);
    shared_done = NULL;
    batch_signals(0);
    nrunning_slots = 0;
}

/* ---- summary ----------------------------------------------------------------------- */

void batch_summary(const batch *b, const cli_opts *o, const char *const names[4])
{
    size_t c[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < b->n; i++) {
        const batch_job *j = &b->v[i];
        int k = j->outcome < 0 || j->outcome > BATCH_FAILED ? BATCH_FAILED : j->outcome;
        FILE *f = stdout;
        c[k]++;
        if (o->quiet) {
            if (k != BATCH_FAILED) continue;
            f = stderr;
        }
        fprintf(f, "%-9s  %s", names[k] ? names[k] : "?", j->a);
        if (j->b) fprintf(f, " -> %s", j->b);
        if (j->reason[0]) fprintf(f, ": %s", j->reason);
        fputc('\n', f);
    }
    if (!o->quiet) {
        int first = 1;
        for (int k = BATCH_DONE; k <= BATCH_FAILED; k++) {
            if (!names[k]) continue; /* an outcome this command never has */
            printf("%s%zu %s", first ? "" : ", ", c[k], names[k]);
            first = 0;
        }
        putchar('\n');
    }
    fflush(stdout);
}
