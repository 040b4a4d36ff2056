/*
 * batch.h -- many files in one command: convert, scan and verify over lists
 * of files and folders, in parallel jobs, with a summary table.
 *
 * The engine runs each job in a child process (fork), at most N at a time.
 * A child does exactly what the single-file command does -- so every
 * single-file guarantee holds per file: outputs appear only complete
 * (temporary file, fsync, rename), a failure removes its temporary file --
 * and reports back one outcome and a one-line reason through a pipe. A
 * failing job never stops the others. SIGINT, SIGTERM or SIGHUP sent to the
 * command are passed to every running job, each job removes its temporary
 * output, the command waits for them and then dies of the same signal: no
 * partial or temporary file is left in any job. Jobs not yet started are
 * never started.
 *
 * On a terminal (and without -q) a progress line covers the batch: files
 * done of all, input bytes done of all, rate and ETA.
 */
#ifndef CKPTKIT_BATCH_H
#define CKPTKIT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"

typedef enum batch_outcome {
    BATCH_PENDING = -1,
    BATCH_DONE = 0, /* converted / clean / same */
    BATCH_SKIPPED,  /* left alone (output newer than input, ...) */
    BATCH_NEGATIVE, /* scan: unsafe; verify: differ (the command's exit 1) */
    BATCH_FAILED    /* could not be done: the reason says why */
} batch_outcome;

typedef struct batch_job {
    char *a;        /* the input (malloc'd) */
    char *b;        /* convert: the output; verify: the partner; may be NULL */
    uint64_t bytes; /* size of a (progress) */
    int outcome;    /* batch_outcome; set before running to decide without a job */
    char reason[512];
} batch_job;

typedef struct batch {
    batch_job *v;
    size_t n, cap;
} batch;

/* Runs in the child: does JOB, writes a one-line reason into REASON (may be
 * left empty for BATCH_DONE) and returns a batch_outcome. */
typedef int (*batch_fn)(void *user, const batch_job *job, char *reason, size_t cap);

/* In a job: reports CTX's progress (done/total of its work) to the batch's
 * progress line, as a share of the job's input bytes. No-op without one. */
void batch_child_progress(ck_ctx *ctx);

/* Appends a job (A and B copied; B may be NULL). Returns it, or NULL when
 * memory ran out. */
batch_job *batch_add(batch *b, const char *a, const char *b_path);
void batch_free(batch *b);

/* One file found under a folder: its path and its path relative to the
 * folder given (the file name itself for a file given directly). */
typedef struct batch_file {
    char *path, *rel;
} batch_file;
typedef struct batch_files {
    batch_file *v;
    size_t n, cap;
} batch_files;

/* The checkpoint files of ARG: ARG itself when it is a file; the regular
 * files directly in it when it is a folder (every level below with
 * RECURSIVE), those whose extension names a checkpoint format (ckptkit's
 * readers: .safetensors .pth .pt .bin .ckpt .pkl .tar .npz .npy), sorted by path;
 * hidden names (".x", temporary outputs) skipped. 0, or nonzero with the
 * error printed. */
int batch_list(const char *arg, int recursive, batch_files *out);
void batch_files_free(batch_files *f);

/* 1 if folder PATH holds a *.index.json (a sharded checkpoint, which the
 * commands open as one model rather than as a folder of files). */
int batch_is_sharded(const char *path);

/* The default number of jobs: the number of online cores. */
int batch_default_jobs(void);

/* Runs every job whose outcome is BATCH_PENDING with FN, JOBS at a time.
 * LABEL names the work in the progress line ("converting"). */
void batch_run(batch *b, int jobs, const cli_opts *o, const char *label, batch_fn fn, void *user);

/* The summary: one line per job, "LABEL  path[ -> other]: reason", then the
 * counts, to stdout (failures only, to stderr, with -q). NAMES gives the word
 * for each outcome (done, skipped, negative, failed); NULL for an outcome the
 * command never has (left out of the counts). */
void batch_summary(const batch *b, const cli_opts *o, const char *const names[4]);
/* How many jobs ended with OUTCOME. */
size_t batch_count(const batch *b, int outcome);

/* The job runners behind `convert -o DIR`, `scan -r` / several paths and
 * `verify DIR DIR` (batch_cmds.c). */
int batch_convert(char **inputs, int ninputs, const char *out_dir, const char *to, int recursive,
                  int skip_existing, int jobs, const cli_opts *o, const ck_open_opts *oo,
                  const ck_convert_opts *co);
int batch_scan(char **inputs, int ninputs, int recursive, int jobs, const cli_opts *o);
int batch_verify(const char *dir_a, const char *dir_b, int recursive, int jobs,
                 const cli_opts *o, const ck_open_opts *oo);

#endif
