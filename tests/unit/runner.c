/*
 * runner.c -- runs every registered unit test (or those whose name contains
 * argv[1]) and prints "N passed, N failed". Exit status 1 if any failed.
 */
#include <stdlib.h>
#include <string.h>

#include "t.h"

#define MAX_TESTS 4096

static struct {
    const char *name;
    t_fn fn;
} tests[MAX_TESTS];
static int ntests;
int t_failed_checks;

void t_register(const char *name, t_fn fn)
{
    if (ntests < MAX_TESTS) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    qsort(tests, (size_t)ntests, sizeof tests[0], by_name);
    for (int i = 0; i < ntests; i++) {
        int before = t_failed_checks;
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        tests[i].fn();
        if (t_failed_checks != before) {
            fprintf(stderr, "FAIL %s\n", tests[i].name);
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
