/*
 * main.c -- the ckptkit command: a table of subcommands, --help, --version.
 * Each subcommand lives in cmd_<name>.c and returns its exit status.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif


static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"info", cmd_info, "summary of a checkpoint: format, tensors, parameters, dtypes, metadata"},
    {"ls", cmd_ls, "list tensors with dtype and shape"},
    {"convert", cmd_convert, "convert between formats and dtypes, streaming"},
    {"verify", cmd_verify, "check two checkpoints hold the same tensors, bit for bit"},
    {"diff", cmd_diff, "compare values across dtypes: max/mean abs difference, cosine"},
    {"export", cmd_export, "write chosen tensors as NumPy .npy files or raw bytes"},
    {"scan", cmd_scan, "list the globals every pickle references: allowed, unknown, dangerous"},
    {"sanitize", cmd_sanitize, "rewrite an unsafe PyTorch checkpoint without its dangerous parts"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ckptkit COMMAND [OPTIONS] ...\n\n"
               "Read, inspect and convert neural-network checkpoints (safetensors, PyTorch\n"
               ".pth/.pt/.bin, Lightning .ckpt, raw .bin) without executing anything in them.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s  %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'ckptkit COMMAND --help' for a command's options; 'man ckptkit' for more.\n"
               "Exit status: 0 done/same/clean, 1 bad input/differ/unsafe, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_DONE;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("ckptkit %s\n", ck_version());
        return EXIT_DONE;
    }
#ifdef __GLIBC__
    /* glibc raises its mmap threshold each time a mapped block is freed, so
     * after the first large arrays go, every later 64 KiB arena block of a
     * pickle graph comes from the heap, and a freed graph leaves the heap at
     * its high-water mark under the next step's allocations. A fixed
     * threshold (below the arena's block size) maps each such block on its
     * own and unmaps it when freed (ls of a 100,000-tensor .pth: 66 -> 63
     * MiB peak). */
    mallopt(M_MMAP_THRESHOLD, 60 * 1024);
#endif
    cli_signals();
    ck_debug_faults_from_env();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ckptkit: unknown command '%s'\nTry 'ckptkit --help'.\n", argv[1]);
    return EXIT_USAGE;
}
