/* fusedopt kernel harness: times the C entry points directly, without Python, beside the
 * `stream` probe of the same access pattern.  Used to study the loss and Adam loops (see
 * bench/RESULTS.md, "What changed the loss and Adam rows"); the published figures come
 * from `python -m fusedopt bench`.
 *
 * Build with the extension's flags (setup.py), from the repository root:
 *   gcc -std=gnu99 -O3 -fno-math-errno -fno-trapping-math -ffp-contract=off -fopenmp \
 *       -Ikernels kernels/fo_driver.c kernels/fo_isa_baseline.c \
 *       kernels/fo_isa_avx2.c kernels/fo_isa_avx512.c bench/c/kernel_harness.c \
 *       -o /tmp/kernel_harness -lm
 * Run:
 *   /tmp/kernel_harness N THREADS          e.g. 1e5 (in cache) and 1e7 (from DRAM), 1 thread
 * Environment: FUSEDOPT_HARNESS_CPU=0|1|2 caps the path (baseline, AVX2, AVX-512);
 *   FUSEDOPT_HARNESS_U8=1 uses uint8 labels for the loss.
 * Prints the best of 15 calls for each kernel. */
#define _ISOC11_SOURCE
#include "fusedopt.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs STMT once, keeping the shortest time seen in BEST (alternating with the probe). */
#define FO_TIME_MIN(best, stmt) do {                       \
        double t0_ = now();                                \
        stmt;                                              \
        double dt_ = now() - t0_;                          \
        if (dt_ < (best)) (best) = dt_;                    \
    } while (0)

static float *falloc(fo_index n)
{
    size_t bytes = ((size_t)n * sizeof(float) + 4095) / 4096 * 4096 + 4096;
    float *p = aligned_alloc(4096, bytes);
    if (!p) { perror("aligned_alloc"); exit(1); }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: %s N THREADS\n", argv[0]); return 2; }
    const char *cap = getenv("FUSEDOPT_HARNESS_CPU");
    int isa = fo_select_isa(cap ? atoi(cap) : -1);
    fo_index n = (fo_index)atof(argv[1]);
    int nt = atoi(argv[2]), u8 = getenv("FUSEDOPT_HARNESS_U8") != NULL;
    float *x = falloc(n), *y = falloc(n), *g = falloc(n), *m = falloc(n), *v = falloc(n);
    uint8_t *yb = (uint8_t *)falloc(n);
    srand(1);
    for (fo_index i = 0; i < n; i++) {
        x[i] = (float)((rand() / (double)RAND_MAX - 0.5) * 8);
        yb[i] = (uint8_t)(rand() & 1);
        y[i] = yb[i];
        g[i] = 0.01f * (float)(i % 7);
        m[i] = v[i] = 0.0f;
    }
    const int reps = 15;

    fo_bce_args b = {0};
    b.x = x; b.y = u8 ? (const void *)yb : (const void *)y; b.y_dtype = u8 ? FO_U8 : FO_F32;
    b.w_scalar = b.pw_scalar = b.smooth_a = 1.0; b.grad_scale = 1.0 / (double)n;
    b.grad = m; b.ncols = 1;
    double t_bce = 1e30, t_s3 = 1e30, sum = 0;
    for (int r = 0; r < reps; r++) {
        FO_TIME_MIN(t_bce, sum += fo_bce(FO_F32, &b, n, nt));
        FO_TIME_MIN(t_s3, fo_stream(FO_F32, FO_STREAM_LOSS, x, y, m, NULL, n, nt));
    }
    printf("path %d, n=%ld, %d thread(s)\n", isa, (long)n, nt);
    printf("sigmoid CE f32 (%s labels): %7.0f M elem/s   (loss-pattern stream %7.0f M elem/s; "
           "mean loss %.9g)\n", u8 ? "uint8" : "float32", (double)n / t_bce / 1e6,
           (double)n / t_s3 / 1e6, sum / reps / (double)n);

    fo_adam_args a = {0};
    a.form = FO_ADAM_TORCH; a.beta1 = 0.9; a.beta2 = 0.999;
    a.one_minus_beta1 = 0.1; a.one_minus_beta2 = 0.001; a.eps = 1e-8; a.lr = 1e-3;
    a.step_size = 1e-2; a.bc2_sqrt = 0.0316;
    for (fo_index i = 0; i < n; i++) { m[i] = 0.0f; x[i] = 1.0f; }
    void *px = x, *pm = m, *pv = v, *ms[1] = {pm}, *vs[1] = {pv};
    const void *pg = g;
    void *const *st[2] = {ms, vs};
    double t_adam = 1e30, t_s7 = 1e30;
    for (int r = 0; r < reps; r++) {
        FO_TIME_MIN(t_adam, fo_step(FO_OPT_adam, FO_F32, &a, 1, &px, &pg, 2, st, &n, nt));
        FO_TIME_MIN(t_s7, fo_stream(FO_F32, FO_STREAM_ADAM, x, g, m, v, n, nt));
    }
    printf("Adam f32: %7.2f ms, %5.1f GB/s = %3.0f %% of the 4-read/3-write stream "
           "(%5.1f GB/s)\n", t_adam * 1e3, 28.0 * (double)n / t_adam / 1e9,
           100.0 * t_s7 / t_adam, 28.0 * (double)n / t_s7 / 1e9);
    free(x); free(y); free(g); free(m); free(v); free(yb);
    return 0;
}
