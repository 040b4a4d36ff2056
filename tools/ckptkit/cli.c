/*
 * cli.c -- shared CLI plumbing (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static void on_warn(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "ckptkit: warning: %s\n", msg);
}

ck_ctx *cli_ctx(const cli_opts *o)
{
    ck_ctx *ctx = ck_ctx_new();
    if (!ctx) {
        fprintf(stderr, "ckptkit: out of memory\n");
        exit(EXIT_BAD);
    }
    if (!o->quiet) ck_ctx_set_warn(ctx, on_warn, NULL);
    if (o->max_memory) ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, o->max_memory);
    return ctx;
}

int cli_fail(ck_ctx *ctx, int code)
{
    cli_progress_end();
    fprintf(stderr, "ckptkit: %s\n", ck_errmsg(ctx));
    return code;
}

int cli_errorf(int code, const char *fmt, ...)
{
    va_list ap;
    cli_progress_end();
    fputs("ckptkit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ckptkit: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ckptkit %s --help'.\n", cmd);
    return EXIT_USAGE;
}

int cli_parse_jobs(const char *cmd, const char *arg, int *jobs)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 1 || v > 256)
        return cli_usage_error(cmd, "-j '%s': expected 1 to 256 jobs", arg);
    *jobs = (int)v;
    return 0;
}

static void on_signal(int sig)
{
    ck_cleanup_on_signal();
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* an input truncated while mapped faults on access: remove the temporary
     * output, then die of the signal as usual */
    sigaction(SIGBUS, &sa, NULL);
    /* past RLIMIT_FSIZE, write() then fails with EFBIG and the error path
     * removes the temporary file, instead of the process dying with it */
    signal(SIGXFSZ, SIG_IGN);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *cli_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

/* ---- progress bar ---------------------------------------------------------- */

static struct {
    int on;
    double start, last;
    const char *label;
} bar;

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    double now = cli_now();
    char a[32], b[32], r[32];
    (void)user;
    if (now - bar.last < 0.1 && done < total) return 0;
    bar.last = now;
    double el = now - bar.start;
    double rate = el > 0 ? (double)done / el : 0;
    if (total) {
        int width = 30, fill = (int)((double)width * (double)done / (double)total);
        double eta = rate > 0 ? (double)(total - done) / rate : 0;
        if (fill > width) fill = width;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%% %s/%s %s/s ETA %.0fs \033[K", bar.label, fill,
                "##############################", width - fill, "",
                (int)(100.0 * (double)done / (double)total), cli_bytes(done, a, sizeof a),
                cli_bytes(total, b, sizeof b), cli_bytes((uint64_t)rate, r, sizeof r), eta);
    } else {
        fprintf(stderr, "\r%s %s %s/s\033[K", bar.label, cli_bytes(done, a, sizeof a),
                cli_bytes((uint64_t)rate, r, sizeof r));
    }
    return 0;
}

void cli_progress_begin(ck_ctx *ctx, const cli_opts *o, const char *label)
{
    if (o->quiet || !isatty(STDERR_FILENO)) return;
    bar.on = 1;
    bar.start = cli_now();
    bar.last = 0;
    bar.label = label;
    ck_ctx_set_progress(ctx, on_progress, NULL);
}

void cli_progress_end(void)
{
    if (!bar.on) return;
    fputs("\r\033[K", stderr);
    bar.on = 0;
}

/* ---- JSON output ------------------------------------------------------------- */

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

void cli_json_shape(FILE *f, int ndim, const int64_t *shape)
{
    fputc('[', f);
    for (int d = 0; d < ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)shape[d]);
    fputc(']', f);
}

int cli_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"", 1},          {"b", 1},           {"k", 1000},       {"kb", 1000},
        {"kib", 1 << 10}, {"m", 1000000},     {"mb", 1000000},   {"mib", 1 << 20},
        {"g", 1000000000}, {"gb", 1000000000}, {"gib", 1ull << 30}, {"t", 1000000000000ull},
        {"tb", 1000000000000ull}, {"tib", 1ull << 40},
    };
    char *end;
    double v;
    if (!s || !*s) return 1;
    v = strtod(s, &end);
    if (end == s || v < 0) return 1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            double r = v * (double)units[i].mul;
            if (r < 1 || r > 1.8e19) return 1;
            *out = (uint64_t)r;
            return 0;
        }
    }
    return 1;
}

void cli_list_add(cli_list *l, const char *s)
{
    if (l->n + 2 > l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        const char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "ckptkit: out of memory\n");
            exit(EXIT_BAD);
        }
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    l->v[l->n] = NULL;
}

void cli_list_free(cli_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

int cli_opt_max_memory(cli_opts *o, const char *cmd, const char *arg)
{
    if (cli_parse_size(arg, &o->max_memory)) {
        cli_usage_error(cmd, "--max-memory '%s': expected a size such as 512MiB or 2GB", arg);
        return 1;
    }
    return 0;
}

int cli_parse_inspect(int argc, char **argv, const char *cmd, const char *help, cli_opts *o,
                      ck_open_opts *oo, const char **file)
{
    static const struct option lopts[] = {
        {"json", no_argument, 0, 'j'},         {"key", required_argument, 0, 'k'},
        {"all", no_argument, 0, 'a'},          {"manifest", required_argument, 0, 'm'},
        {"format", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
        {"quiet", no_argument, 0, 'q'},        CLI_MAX_MEMORY_OPT,
        CLI_ALLOW_UNSAFE_OPT, CLI_SKIP_UNSUPPORTED_OPT,                  {0, 0, 0, 0},
    };
    int c;
    memset(oo, 0, sizeof *oo);
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", lopts, NULL)) != -1) {
        switch (c) {
        case 'j': o->json = 1; break;
        case 'k': oo->key = optarg; break;
        case 'a': oo->all = 1; break;
        case 'm': oo->manifest = optarg; break;
        case 'f': oo->format = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'U': oo->allow_unsafe = 1; break;
        case 'S': oo->skip_unsupported = 1; break;
        case 'M':
            if (cli_opt_max_memory(o, cmd, optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error(cmd, "invalid option");
        }
    }
    if (argc - optind != 1) return cli_usage_error(cmd, "expected one FILE");
    *file = argv[optind];
    return -1;
}

int cli_open_one(const cli_opts *o, const char *file, const ck_open_opts *oo, ck_ctx **ctx,
                 ck_model **m)
{
    *ctx = cli_ctx(o);
    if (!ck_model_open(*ctx, file, oo, m)) return -1;
    cli_fail(*ctx, EXIT_BAD);
    ck_ctx_free(*ctx);
    *ctx = NULL;
    return EXIT_BAD;
}
