// ggml's own reference for bench/gguf/dequant_check.py, linked against llama.cpp's built
// libggml-base (ggml-quants.c):
//   ggml_ref dequant FILE.gguf OUT.f32      every tensor through ggml's to_float, float32, in
//                                           the file's tensor order
//   ggml_ref requant IN.f32 ROWS COLS       relative error (Frobenius) of quantising a float32
//                                           matrix to each type and back (ggml_quantize_chunk)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "gguf.h"

static int dequant(const char *path, const char *out_path) {
    struct ggml_context *ctx = NULL;
    struct gguf_init_params params = { .no_alloc = false, .ctx = &ctx };
    struct gguf_context *gguf = gguf_init_from_file(path, params);
    if (gguf == NULL) { fprintf(stderr, "cannot read %s\n", path); return 1; }
    FILE *out = fopen(out_path, "wb");
    if (out == NULL) { perror(out_path); return 1; }
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf); i++) {
        struct ggml_tensor *t = ggml_get_tensor(ctx, gguf_get_tensor_name(gguf, i));
        int64_t n = ggml_nelements(t);
        float *values = malloc(n * sizeof(float));
        if (t->type == GGML_TYPE_F32) memcpy(values, t->data, n * sizeof(float));
        else ggml_get_type_traits(t->type)->to_float(t->data, values, n);
        fwrite(values, sizeof(float), n, out);
        free(values);
    }
    fclose(out);
    gguf_free(gguf);
    ggml_free(ctx);
    return 0;
}

static int requant(const char *path, long rows, long cols) {
    enum ggml_type types[] = { GGML_TYPE_Q8_0, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q4_K,
                               GGML_TYPE_Q5_1, GGML_TYPE_Q5_0, GGML_TYPE_Q4_1, GGML_TYPE_Q4_0 };
    long n = rows * cols;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    FILE *in = fopen(path, "rb");
    if (in == NULL || fread(x, sizeof(float), n, in) != (size_t) n) { fprintf(stderr, "cannot read %s\n", path); return 1; }
    fclose(in);
    ggml_quantize_init(GGML_TYPE_COUNT);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        enum ggml_type t = types[i];
        if (cols % ggml_blck_size(t)) continue;  // a K-quant on a row that is not a multiple of 256
        void *q = malloc(ggml_row_size(t, cols) * rows);
        ggml_quantize_chunk(t, x, q, 0, rows, cols, NULL);
        ggml_get_type_traits(t)->to_float(q, y, n);
        double err = 0, norm = 0;
        for (long j = 0; j < n; j++) { err += (y[j] - x[j]) * (y[j] - x[j]); norm += x[j] * x[j]; }
        printf("%s %.6f\n", ggml_type_name(t), sqrt(err / norm));
        free(q);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "dequant") == 0) return dequant(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "requant") == 0) return requant(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: %s dequant FILE.gguf OUT.f32 | requant IN.f32 ROWS COLS\n", argv[0]);
    return 2;
}
