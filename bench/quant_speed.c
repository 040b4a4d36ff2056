/*
 * quant_speed.c -- times ckptkit's ggml encoders alone (no file i/o), for
 * bench/gguf_bench.py's compute-only rows:
 *
 *     quant_speed TYPE IN OUT     IN: float32 values (whole blocks)
 *
 * encodes IN into OUT on one thread with cki_ggml_quant and prints the CPU
 * seconds the encoding took (CLOCK_PROCESS_CPUTIME_ID: on a shared machine
 * wall time measures the neighbours), reading and writing excluded. The
 * output buffer is written once before the clock starts, so the first-touch
 * page faults of a fresh allocation are not counted: a conversion encodes
 * into buffers it reuses, tensor after tensor.
 * Built by gguf_bench.py against build/libckptkit.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/ggml_codec.h"

int main(int argc, char **argv)
{
    ck_dtype dt;
    unsigned bb, blk;
    long n;
    size_t nb;
    float *x;
    uint8_t *y;
    FILE *f;
    struct timespec a, b;
    if (argc != 4 || ck_dtype_parse(argv[1], &dt) || !cki_ggml_can_quant(dt)) return 2;
    blk = ck_dtype_block(dt, &bb);
    if (!(f = fopen(argv[2], "rb")) || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0) return 2;
    rewind(f);
    nb = (size_t)n / 4 / blk;
    x = malloc(nb * blk * 4);
    y = malloc(nb * bb);
    if (!x || !y || fread(x, 4, nb * blk, f) != nb * blk) return 2;
    fclose(f);
    memset(y, 0, nb * bb);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    if (cki_ggml_quant(dt, x, nb, y) != -1) return 1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    if (!(f = fopen(argv[3], "wb")) || fwrite(y, 1, nb * bb, f) != nb * bb || fclose(f)) return 2;
    free(x);
    free(y);
    return 0;
}
