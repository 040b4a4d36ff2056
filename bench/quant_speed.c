/*
 * quant_speed.c -- times ckptkit's ggml encoders alone (no file i/o), for
 * bench/gguf_bench.py's compute-only rows:
 *
 *     quant_speed TYPE IN OUT [THREADS]     IN: float32 values (whole blocks)
 *
 * encodes IN into OUT with cki_ggml_quant and prints two numbers: the CPU
 * seconds the encoding took (CLOCK_PROCESS_CPUTIME_ID, all threads: on a
 * shared machine wall time measures the neighbours too) and its wall seconds
 * (CLOCK_MONOTONIC), reading and writing the files excluded. THREADS (1, the
 * default, or 2) splits the blocks in two halves on two threads, as a
 * conversion does for large tensors. The output buffer is written once before
 * the clocks start, so the first-touch page faults of a fresh allocation are
 * not counted: a conversion encodes into buffers it reuses.
 * Built by gguf_bench.py against build/libckptkit.a.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/ggml_codec.h"

typedef struct job {
    ck_dtype dt;
    const float *x;
    size_t nb;
    uint8_t *y;
    int64_t r;
} job;

static void *run(void *arg)
{
    job *j = arg;
    j->r = cki_ggml_quant(j->dt, j->x, j->nb, j->y);
    return NULL;
}

static double secs(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    ck_dtype dt;
    unsigned bb, blk;
    long n;
    size_t nb, half;
    int threads = argc == 5 ? atoi(argv[4]) : 1;
    float *x;
    uint8_t *y;
    FILE *f;
    struct timespec a, b, wa, wb;
    job j[2];
    pthread_t th;
    if ((argc != 4 && argc != 5) || (threads != 1 && threads != 2) || ck_dtype_parse(argv[1], &dt) ||
        !cki_ggml_can_quant(dt))
        return 2;
    blk = ck_dtype_block(dt, &bb);
    if (!(f = fopen(argv[2], "rb")) || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0) return 2;
    rewind(f);
    nb = (size_t)n / 4 / blk;
    x = malloc(nb * blk * 4);
    y = malloc(nb * bb);
    if (!x || !y || fread(x, 4, nb * blk, f) != nb * blk) return 2;
    fclose(f);
    memset(y, 0, nb * bb);
    half = threads == 2 ? nb / 2 : nb;
    j[0] = (job){dt, x, half, y, 0};
    j[1] = (job){dt, x + half * blk, nb - half, y + half * bb, -1};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    clock_gettime(CLOCK_MONOTONIC, &wa);
    if (threads == 2 && pthread_create(&th, NULL, run, &j[1])) return 2;
    run(&j[0]);
    if (threads == 2) pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &wb);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    if (j[0].r != -1 || j[1].r != -1) return 1;
    printf("%.6f %.6f\n", secs(&a, &b), secs(&wa, &wb));
    if (!(f = fopen(argv[3], "wb")) || fwrite(y, 1, nb * bb, f) != nb * bb || fclose(f)) return 2;
    free(x);
    free(y);
    return 0;
}
