/*
 * ggml_oracle.c -- the C side of tests/interop/test_gguf_quants.py: runs
 * ckptkit's ggml block codecs on a file.
 *
 *   ggml_oracle dequant TYPE IN OUT   IN: whole blocks of TYPE; OUT: float32
 *   ggml_oracle quant TYPE IN OUT     IN: float32 (whole blocks); OUT: blocks
 *
 * TYPE as ggml spells it (Q4_0, Q6_K, ...). Exit 0 on success; 1 when the
 * input holds a non-finite value (the index is printed); 2 on bad arguments,
 * an unsupported type or an i/o failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ggml_codec.h"

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
    ck_dtype dt;
    unsigned bb, blk;
    size_t len = 0, nb, outlen;
    uint8_t *in, *out;
    FILE *f;
    int quant;
    if (argc != 5 || (strcmp(argv[1], "quant") && strcmp(argv[1], "dequant")) ||
        ck_dtype_parse(argv[2], &dt) || !ck_dtype_is_quantized(dt)) {
        fprintf(stderr, "usage: ggml_oracle quant|dequant TYPE IN OUT\n");
        return 2;
    }
    quant = !strcmp(argv[1], "quant");
    if (quant ? !cki_ggml_can_quant(dt) : !cki_ggml_can_dequant(dt)) {
        fprintf(stderr, "%s: unsupported\n", argv[2]);
        return 2;
    }
    blk = ck_dtype_block(dt, &bb);
    if (!(in = slurp(argv[3], &len))) return 2;
    nb = quant ? len / 4 / blk : len / bb;
    if ((quant ? nb * blk * 4 : nb * bb) != len) {
        fprintf(stderr, "input is not whole blocks\n");
        return 2;
    }
    outlen = quant ? nb * bb : nb * blk * 4;
    out = malloc(outlen + 1);
    if (!out) return 2;
    if (quant) {
        int64_t bad = cki_ggml_quant(dt, (const float *)in, nb, out);
        if (bad >= 0) {
            printf("%lld\n", (long long)bad);
            return 1;
        }
    } else {
        cki_ggml_dequant(dt, in, nb, (float *)out);
    }
    if (!(f = fopen(argv[4], "wb")) || fwrite(out, 1, outlen, f) != outlen || fclose(f)) return 2;
    free(in);
    free(out);
    return 0;
}
