// Writes ggml's own reference quantization of a fixed set of rows, for the tests of
// src/kernels/quant: for each type, the blocks ggml's quantize_row_*_ref makes and what its
// dequantize_row_* gives back. Built against ggml's sources by make-fixtures.sh; the output is
// committed (test/fixtures/ggml-quants.safetensors), so neither ggml nor a C compiler is needed
// to run the tests.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "ggml-quants.h"

// ggml's validation helpers, which the reference functions do not use.
void ggml_abort(const char *file, int line, const char *fmt, ...) { fprintf(stderr, "ggml_abort at %s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char *ggml_type_name(enum ggml_type type) { (void)type; return "?"; }
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }

enum { ROWS = 4, COLS = 512 };

static uint64_t state = 0x9e3779b97f4a7c15ull;
static double uniform(void) {  // xorshift64*, in [0, 1)
  state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
  return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static double normal(void) { return sqrt(-2 * log(1 - uniform())) * cos(6.283185307179586 * uniform()); }

static void write_file(const char *name, const void *bytes, size_t n) {
  FILE *f = fopen(name, "wb");
  if (!f || fwrite(bytes, 1, n, f) != n) { perror(name); exit(1); }
  fclose(f);
}

#define TYPE(name, block_t, per_block)                                                        \
  {                                                                                           \
    size_t blocks = (size_t)ROWS * COLS / (per_block);                                        \
    block_t *q = calloc(blocks, sizeof(block_t));                                             \
    float out[ROWS * COLS];                                                                   \
    for (int r = 0; r < ROWS; r++) {                                                          \
      quantize_row_##name##_ref(x + r * COLS, q + (size_t)r * COLS / (per_block), COLS);      \
      dequantize_row_##name(q + (size_t)r * COLS / (per_block), out + r * COLS, COLS);        \
    }                                                                                         \
    write_file(#name ".blocks", q, blocks * sizeof(block_t));                                 \
    write_file(#name ".dequant", out, sizeof out);                                            \
    free(q);                                                                                  \
  }

int main(void) {
  static float x[ROWS * COLS];
  for (int i = 0; i < COLS; i++) {
    x[0 * COLS + i] = (float)(0.02 * normal());                              // a weight row
    x[1 * COLS + i] = (float)(2 * uniform() - 1) * (i % 97 == 0 ? 40 : 1);   // outliers
    x[2 * COLS + i] = (float)(1e-6 * normal());                              // tiny: scales near f16's subnormals
    x[3 * COLS + i] = i < 256 ? 0.0f : (float)(i % 7) - 3;                   // an all-zero half, then small integers
  }
  write_file("input", x, sizeof x);
  TYPE(q4_0, block_q4_0, 32)
  TYPE(q4_1, block_q4_1, 32)
  TYPE(q5_0, block_q5_0, 32)
  TYPE(q5_1, block_q5_1, 32)
  TYPE(q8_0, block_q8_0, 32)
  TYPE(q4_K, block_q4_K, 256)
  TYPE(q5_K, block_q5_K, 256)
  TYPE(q6_K, block_q6_K, 256)
  return 0;
}
