/*
 * cmd_scan.c -- `ckptkit scan FILE... [--json] [-q]`: every global that the
 * pickles in each FILE name, with a verdict, without executing anything.
 *
 * Text: one line per global, "VERDICT  module.name  (where @ offset)", then
 * "FILE: clean|unsafe (...)" per file; -q prints only dangerous globals and
 * no summary. --json: {"files": [{"file", "status": "clean"|"unsafe"|"error",
 * "error", "globals": [{"module", "name", "verdict", "where", "offset"}]}]}.
 * Exit status: 0 nothing unsafe (allowed and unknown globals only), 1 a
 * dangerous global somewhere, 2 a usage error or a file that could not be
 * read or parsed completely (such a file is never reported clean). A
 * dangerous global wins over a parse failure: a file with both is "unsafe"
 * (exit 1), with every global found listed and the failure reported too
 * (the error line, and "error" in --json).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "batch.h"
#include "cli.h"



static const char help[] =
    "usage: ckptkit scan FILE... [--json] [-q]\n"
    "       ckptkit scan PATH... [-r] [-j N] [-q]   (folders: every checkpoint in them)\n\n"
    "Parses every pickle in each FILE (PyTorch zip, legacy and tar checkpoints,\n"
    "Lightning .ckpt, npz/npy object arrays, raw pickles) with ckptkit's own\n"
    "restricted machine -- nothing is imported or executed -- and reports every\n"
    "global it references with a verdict:\n"
    "  allowed    recognised and turned into data (tensor rebuilds, dtypes, ...)\n"
    "  unknown    kept as an opaque object, never called\n"
    "  dangerous  would run code, load libraries or touch files if unpickled\n\n"
    "  --json   {\"files\": [{\"file\", \"status\", \"error\", \"globals\": [...]}]}\n"
    "  -q       print only dangerous globals and errors\n"
    "  -r       PATHs may be folders: scan the files in them, every level below\n"
    "  -j N     N files at a time (default: the number of cores); with folders,\n"
    "           -r or -j: one summary line per file (clean, unsafe with the first\n"
    "           dangerous global, failed with the reason), then the counts\n\n"
    "safetensors and GGUF files hold no pickles: they are clean when their reader\n"
    "accepts the whole file. A GGUF file's chat templates (tokenizer.chat_template*,\n"
    "Jinja programs that some loaders render) are listed with their sizes, never\n"
    "rendered; they do not change the exit status.\n\n"
    "Exit status: 0 clean, 1 a dangerous global was found (also in a file that\n"
    "could not be fully parsed: the parse error is reported as well), 2 usage error\n"
    "or a file that could not be read or fully parsed.\n";

typedef struct found {
    char *module, *name, *where;
    uint64_t offset;
    ck_verdict verdict;
} found;

typedef struct collect {
    found *v;
    size_t n, cap;
    int oom;
} collect;

static char *dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void on_item(void *user, const ck_scan_item *it)
{
    collect *c = user;
    found *f;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        found *nv = realloc(c->v, ncap * sizeof *nv);
        if (!nv) {
            c->oom = 1;
            return;
        }
        c->v = nv;
        c->cap = ncap;
    }
    f = &c->v[c->n];
    f->module = dup(it->module);
    f->name = dup(it->name);
    f->where = dup(it->where);
    f->offset = it->offset;
    f->verdict = it->verdict;
    if (!f->module || !f->name || !f->where) {
        free(f->module);
        free(f->name);
        free(f->where);
        c->oom = 1;
        return;
    }
    c->n++;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].module);
        free(c->v[i].name);
        free(c->v[i].where);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}

static const char *verdict_name(ck_verdict v)
{
    switch (v) {
    case CK_VERDICT_ALLOWED: return "allowed";
    case CK_VERDICT_UNKNOWN: return "unknown";
    default: return "dangerous";
    }
}

/* The error line: the library's message names the file first; add it if not. */
static void print_error(const char *file, const char *msg)
{
    size_t fl = strlen(file);
    if (!strncmp(msg, file, fl) && msg[fl] == ':') fprintf(stderr, "ckptkit: %s\n", msg);
    else fprintf(stderr, "ckptkit: %s: %s\n", file, msg);
}

/* GGUF metadata holding chat templates (tokenizer.chat_template*): Jinja
 * programs that some loaders render (CVE-2024-34359). They are reported with
 * their sizes, never rendered or printed. Text mode prints one line each; JSON
 * mode an array of {"key", "bytes"}. */
static void report_templates(ck_ctx *ctx, const char *file, int json)
{
    char magic[4];
    FILE *f = fopen(file, "rb");
    ck_model *m = NULL;
    int n = 0;
    if (!f) return;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "GGUF", 4) != 0) {
        fclose(f);
        if (json) printf(", \"templates\": []");
        return;
    }
    fclose(f);
    if (json) printf(", \"templates\": [");
    if (!ck_model_open(ctx, file, NULL, &m)) {
        for (size_t i = 0; i < ck_model_meta_count(m); i++) {
            const char *k, *v;
            ck_model_meta(m, i, &k, &v);
            if (strncmp(k, "tokenizer.chat_template", 23) != 0) continue;
            if (json) {
                printf("%s{\"key\": ", n ? ", " : "");
                cli_json_str(stdout, k);
                printf(", \"bytes\": %zu}", strlen(v));
            } else {
                printf("template   %s  (%zu bytes of Jinja in the metadata; not rendered)\n", k,
                       strlen(v));
            }
            n++;
        }
    }
    ck_model_close(m);
    if (json) printf("]");
}

static void print_json_file(const char *file, const char *status, const char *err,
                            const collect *c, int first, ck_ctx *ctx)
{
    printf("%s\n  {\"file\": ", first ? "" : ",");
    cli_json_str(stdout, file);
    printf(", \"status\": \"%s\"", status);
    if (err) {
        printf(", \"error\": ");
        cli_json_str(stdout, err);
    }
    printf(", \"globals\": [");
    for (size_t i = 0; i < c->n; i++) {
        const found *f = &c->v[i];
        printf("%s\n    {\"module\": ", i ? "," : "");
        cli_json_str(stdout, f->module);
        printf(", \"name\": ");
        cli_json_str(stdout, f->name);
        printf(", \"verdict\": \"%s\", \"where\": ", verdict_name(f->verdict));
        cli_json_str(stdout, f->where);
        printf(", \"offset\": %llu}", (unsigned long long)f->offset);
    }
    printf("%s]", c->n ? "\n  " : "");
    if (!err) report_templates(ctx, file, 1);
    printf("}");
}

int cmd_scan(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"json", no_argument, 0, 'O'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_ctx *ctx;
    int c, any_error = 0, any_unsafe = 0, recursive = 0, jobs = 0, folders = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hqrj:", lopts, NULL)) != -1) {
        switch (c) {
        case 'r': recursive = 1; break;
        case 'j':
            if (cli_parse_jobs("scan", optarg, &jobs)) return EXIT_USAGE;
            break;
        case 'O': o.json = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error("scan", "invalid option");
        }
    }
    if (optind >= argc) return cli_usage_error("scan", "expected at least one FILE");
    for (int i = optind; i < argc; i++) {
        struct stat sb;
        /* a folder holding *.index.json is one sharded checkpoint, scanned as before */
        folders += stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode) && !batch_is_sharded(argv[i]);
    }
    if (folders || recursive || jobs) {
        if (o.json) return cli_usage_error("scan", "--json goes with files, not -r, -j or folders");
        return batch_scan(argv + optind, argc - optind, recursive,
                          jobs ? jobs : batch_default_jobs(), &o);
    }
    ctx = cli_ctx(&o);
    if (o.json) printf("{\"files\": [");
    for (int i = optind; i < argc; i++) {
        const char *file = argv[i];
        collect col;
        ck_verdict worst = CK_VERDICT_ALLOWED;
        ck_status st;
        size_t counts[3] = {0, 0, 0};
        int unsafe;
        memset(&col, 0, sizeof col);
        st = ck_scan(ctx, file, on_item, &col, &worst);
        if (col.oom && !st) st = CK_ENOMEM;
        for (size_t k = 0; k < col.n; k++) counts[col.v[k].verdict]++;
        /* a dangerous global found wins over a failure met before or after it */
        unsafe = worst == CK_VERDICT_DANGEROUS || counts[CK_VERDICT_DANGEROUS] > 0;
        if (unsafe) any_unsafe = 1;
        else if (st) any_error = 1;
        if (o.json) {
            print_json_file(file, unsafe ? "unsafe" : st ? "error" : "clean",
                            st ? (col.oom ? "out of memory" : ck_errmsg(ctx)) : NULL, &col,
                            i == optind, ctx);
        } else {
            for (size_t k = 0; k < col.n; k++) {
                const found *f = &col.v[k];
                if (o.quiet && f->verdict != CK_VERDICT_DANGEROUS) continue;
                printf("%-9s  %s.%s  (%s @ %llu)\n", verdict_name(f->verdict), f->module, f->name,
                       f->where, (unsigned long long)f->offset);
            }
            if (st) print_error(file, col.oom ? "out of memory" : ck_errmsg(ctx));
            if (!st && !o.quiet) report_templates(ctx, file, 0);
            if ((!st || unsafe) && !o.quiet)
                printf("%s: %s (%zu globals: %zu allowed, %zu unknown, %zu dangerous)%s\n", file,
                       unsafe ? "unsafe" : "clean", col.n, counts[CK_VERDICT_ALLOWED],
                       counts[CK_VERDICT_UNKNOWN], counts[CK_VERDICT_DANGEROUS],
                       st ? "; not fully parsed (see the error)" : "");
        }
        fflush(stdout);
        collect_free(&col);
    }
    if (o.json) printf("\n]}\n");
    ck_ctx_free(ctx);
    return any_unsafe ? EXIT_DIFFER : any_error ? EXIT_ERROR : EXIT_SAME;
}
