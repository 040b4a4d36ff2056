/*
 * cli.h -- what the ckptkit subcommands share: exit codes, the context with
 * warnings on stderr, the progress bar, signal cleanup and output helpers.
 * The CLI uses only the public API (include/ckptkit.h).
 */
#ifndef CKPTKIT_CLI_H
#define CKPTKIT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "ckptkit.h"

enum { EXIT_DONE = 0, EXIT_BAD = 1, EXIT_USAGE = 2 };
/* verify/diff/scan: 0 same/clean, 1 differ/unsafe, 2 usage or unreadable */
enum { EXIT_SAME = 0, EXIT_DIFFER = 1, EXIT_ERROR = 2 };

typedef struct cli_opts {
    int quiet;    /* -q: no warnings, no summary */
    int json;     /* --json */
    int progress; /* a progress bar on stderr (only when it is a terminal) */
    uint64_t max_memory; /* --max-memory: CK_LIMIT_MEMORY, 0 = default */
} cli_opts;

/* The --max-memory option every command takes, and its help line. */
#define CLI_MAX_MEMORY_OPT {"max-memory", required_argument, 0, 'M'}
#define CLI_MAX_MEMORY_HELP                                                                       \
    "  --max-memory SIZE  cap on memory ckptkit allocates (default 64 MiB + 32 x input, at most\n" \
    "                     4 GiB); e.g. 512MiB\n"
/* --allow-unsafe: load PyTorch files whose pickles reference dangerous globals. */
#define CLI_ALLOW_UNSAFE_OPT {"allow-unsafe", no_argument, 0, 'U'}
#define CLI_ALLOW_UNSAFE_HELP                                                                     \
    "  --allow-unsafe     load a PyTorch file even if its pickle references code-running\n"       \
    "                     globals (never executed; without it such files are refused); leave\n"   \
    "                     out NumPy object arrays (pickles, never unpickled) with a warning\n"
/* --skip-unsupported: leave out NumPy arrays ckptkit cannot represent. */
#define CLI_SKIP_UNSUPPORTED_OPT {"skip-unsupported", no_argument, 0, 'S'}
#define CLI_SKIP_UNSUPPORTED_HELP                                                                 \
    "  --skip-unsupported leave out NumPy arrays of dtypes ckptkit cannot represent (strings,\n"  \
    "                     void, datetime, structured) with a warning, instead of failing\n"
/* Handles 'M' in a command's option switch; returns nonzero on a bad SIZE. */
int cli_opt_max_memory(cli_opts *o, const char *cmd, const char *arg);

/* A context whose warnings print as "ckptkit: warning: ..." unless quiet. */
ck_ctx *cli_ctx(const cli_opts *o);
/* Prints "ckptkit: <message of ctx>" to stderr. Returns CODE. */
int cli_fail(ck_ctx *ctx, int code);
/* Prints "ckptkit: <formatted>" to stderr. Returns CODE. */
int cli_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "ckptkit: CMD: <formatted>\nTry 'ckptkit CMD --help'." and returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -j N: N parsed strictly (digits only, 1 to 256) into *jobs; else the usage
 * error of CMD, returned */
int cli_parse_jobs(const char *cmd, const char *arg, int *jobs);
/* Installs SIGINT/SIGTERM handlers that remove temporary outputs, then exit 130/143. */
void cli_signals(void);
/* Turns the progress bar on for CTX when stderr is a terminal and not quiet. */
void cli_progress_begin(ck_ctx *ctx, const cli_opts *o, const char *label);
/* Clears the progress line. */
void cli_progress_end(void);
/* "1.5 MiB" style, into BUF. */
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* Seconds since an arbitrary start (monotonic). */
double cli_now(void);
/* Writes S as a JSON string literal. */
void cli_json_str(FILE *f, const char *s);
/* Writes "[d0, d1, ...]". */
void cli_json_shape(FILE *f, int ndim, const int64_t *shape);
/* Parses "5GB", "500MiB", "1024" into bytes; 0 on success. */
int cli_parse_size(const char *s, uint64_t *out);

/* A growable NULL-terminated list of strings (repeatable options). */
typedef struct cli_list {
    const char **v;
    size_t n, cap;
} cli_list;
void cli_list_add(cli_list *l, const char *s);
void cli_list_free(cli_list *l);

/* Parses the options info and ls share (--json --key --all --manifest --format
 * -q --max-memory --allow-unsafe --help) and the one FILE. Returns -1 to go on
 * with *FILE set, or an exit status to return (help printed, usage error). */
int cli_parse_inspect(int argc, char **argv, const char *cmd, const char *help, cli_opts *o,
                      ck_open_opts *oo, const char **file);

/* A context for O and FILE opened into *M. Returns -1 on success; else prints
 * the error, frees the context and returns EXIT_BAD. */
int cli_open_one(const cli_opts *o, const char *file, const ck_open_opts *oo, ck_ctx **ctx,
                 ck_model **m);

int cmd_info(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_sanitize(int argc, char **argv);

/* Whole-checkpoint rewrite reports (rewrites.c). cli_rewrite_line is a
 * ck_rewrite_fn over a cli_rewrites: prints "PREFIXpath: what -> became" to
 * OUT (stderr when NULL) unless quiet, and counts. */
typedef struct cli_rewrites {
    FILE *out;
    const char *prefix;
    int quiet;
    size_t count, removed;
} cli_rewrites;
void cli_rewrite_line(void *user, const char *path, const char *what, const char *became);
/* info / ls --all: what --unknown=dict would rewrite in M (PyTorch files only);
 * JSON: appends ', "rewrites": [...]' to an open object. */
void cli_print_rewrites(ck_ctx *ctx, const ck_model *m, int json);
/* --unknown POLICY: 0 and *OUT set, or 1. */
int cli_parse_unknown(const char *s, int *out);

#endif
