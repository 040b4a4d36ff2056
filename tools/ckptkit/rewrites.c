/*
 * rewrites.c -- printing what a whole-checkpoint rewrite changes: the lines
 * convert and sanitize report, and the preview info and ls --all show
 * ("hyper_parameters.loss_fn: torch.nn.modules.loss.MSELoss -> dict").
 */
#include <string.h>

#include "cli.h"

void cli_rewrite_line(void *user, const char *path, const char *what, const char *became)
{
    cli_rewrites *r = user;
    r->count++;
    if (!strncmp(became, "removed", 7)) r->removed++;
    if (r->quiet) return;
    fprintf(r->out ? r->out : stderr, "%s%s: %s -> %s\n", r->prefix ? r->prefix : "",
            *path ? path : "(root)", what, became);
}

typedef struct json_list {
    FILE *f;
    size_t n;
} json_list;

static void json_line(void *user, const char *path, const char *what, const char *became)
{
    json_list *j = user;
    fprintf(j->f, "%s{\"path\": ", j->n++ ? ", " : "");
    cli_json_str(j->f, path);
    fprintf(j->f, ", \"was\": ");
    cli_json_str(j->f, what);
    fprintf(j->f, ", \"becomes\": ");
    cli_json_str(j->f, became);
    fputc('}', j->f);
}

void cli_print_rewrites(ck_ctx *ctx, const ck_model *m, int json)
{
    const char *fmt = ck_model_format(m);
    if (!fmt || strncmp(fmt, "torch-", 6)) return;
    if (json) {
        json_list j = {stdout, 0};
        printf(", \"rewrites\": [");
        if (ck_model_rewrites(ctx, m, CK_UNKNOWN_DICT, json_line, &j)) {
            printf("], \"rewrites_error\": ");
            cli_json_str(stdout, ck_errmsg(ctx));
            return;
        }
        printf("]");
        return;
    }
    cli_rewrites r;
    memset(&r, 0, sizeof r);
    r.out = stdout;
    r.prefix = "  ";
    printf("rewrites:    what 'convert' (--unknown=dict) changes for torch.load(weights_only=True):\n");
    if (ck_model_rewrites(ctx, m, CK_UNKNOWN_DICT, cli_rewrite_line, &r)) {
        printf("  (cannot tell: %s)\n", ck_errmsg(ctx));
        return;
    }
    if (!r.count) printf("  (nothing: it loads as it is)\n");
}

int cli_parse_unknown(const char *s, int *out)
{
    if (!strcmp(s, "dict")) *out = CK_UNKNOWN_DICT;
    else if (!strcmp(s, "drop")) *out = CK_UNKNOWN_DROP;
    else if (!strcmp(s, "keep")) *out = CK_UNKNOWN_KEEP;
    else return 1;
    return 0;
}
