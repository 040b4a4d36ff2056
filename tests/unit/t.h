/*
 * t.h -- the unit-test harness: TEST(name) registers a test at load time, so
 * every t_<module>.c adds itself to the one runner (runner.c) without a list.
 * CHECK(cond) records a failure with file and line and goes on.
 */
#ifndef T_H
#define T_H

#include <stdio.h>

typedef void (*t_fn)(void);
void t_register(const char *name, t_fn fn);
extern int t_failed_checks;

#define TEST(name)                                                                                \
    static void test_##name(void);                                                                \
    __attribute__((constructor)) static void reg_##name(void) { t_register(#name, test_##name); } \
    static void test_##name(void)

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
            t_failed_checks++;                                                                    \
        }                                                                                         \
    } while (0)

/* Path of the repository root (tests run from it); fixtures are under ../shared. */
#define T_FIXTURES "../shared/fixtures/real"

#endif
