/*
 * lint-analyzer.h -- force-included by scripts/lint.sh into every file that
 * clang-tidy analyses (never into a build). The static analyzer looks at one
 * file at a time, so it cannot see that cki_fail and cki_vfail return their
 * status argument; it then follows `if ((st = f(...))) return st;` as if a
 * failing f could return CK_OK with its outputs unset, and reports garbage
 * values that cannot happen. These macros tell it what the functions return.
 * error.c, which defines them, is analysed without this header.
 */
#include "common/cki.h"

#define cki_fail(ctx, st, ...) (cki_fail((ctx), (st), __VA_ARGS__), (st))
#define cki_vfail(ctx, st, fmt, ap) (cki_vfail((ctx), (st), (fmt), (ap)), (st))
