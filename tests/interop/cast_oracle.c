/*
 * cast_oracle.c -- the C side of tests/interop/test_casts.py: converts a file
 * of raw host-order elements with cki_cast and writes the result.
 *
 *   cast_oracle FROM TO IN OUT     (dtypes by safetensors name, e.g. F32 BF16)
 *
 * Prints "OVERFLOW UNDERFLOW" (the cast counters) on stdout. Exit 0 on
 * success, 2 on bad arguments, an unsupported pair or an i/o failure.
 * CKPTKIT_NO_SIMD=1 in the environment selects the scalar loops.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tensor/cast.h"

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        p = malloc((size_t)n + 1);
        if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    ck_dtype from, to;
    size_t len = 0, n, ss, ds;
    uint8_t *in, *out;
    FILE *f;
    cki_cast_stats st = {0, 0};

    if (argc != 5 || ck_dtype_parse(argv[1], &from) || ck_dtype_parse(argv[2], &to)) {
        fprintf(stderr, "usage: cast_oracle FROM TO IN OUT\n");
        return 2;
    }
    if (!cki_cast_supported(from, to)) {
        fprintf(stderr, "cast_oracle: %s -> %s is not supported\n", argv[1], argv[2]);
        return 2;
    }
    ss = cki_dtype_size(from);
    ds = cki_dtype_size(to);
    in = slurp(argv[3], &len);
    if (!in || len % ss) {
        fprintf(stderr, "cast_oracle: %s: unreadable or not a whole number of %s\n", argv[3],
                argv[1]);
        return 2;
    }
    n = len / ss;
    out = malloc(n * ds + 1);
    if (!out) return 2;
    cki_cast(from, to, in, out, n, &st);
    f = fopen(argv[4], "wb");
    if (!f || fwrite(out, 1, n * ds, f) != n * ds || fclose(f) != 0) {
        fprintf(stderr, "cast_oracle: %s: write failed\n", argv[4]);
        return 2;
    }
    printf("%llu %llu\n", (unsigned long long)st.overflow, (unsigned long long)st.underflow);
    free(in);
    free(out);
    return 0;
}
