/* Runs a few kernels on every CPU path this build has and prints one FNV-1a hash of the
 * output bytes per (kernel, path): tests/test_build.py compiles it with each compiler and
 * checks that every path, and every compiler, gives the same bits. */
#include "fusedopt.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define N 4099

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

static float p[N], g[N], m[N], v[N], vmax[N], x[N], y[N], w[N], out[N];

static void init(void)
{
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        float r = (float)(s >> 8) / 16777216.0f - 0.5f;
        p[i] = r; g[i] = 0.1f * r * (float)(i % 7); m[i] = v[i] = vmax[i] = 0.0f;
        x[i] = 16.0f * r; y[i] = (float)((s >> 3) & 1); w[i] = 0.5f + r;
    }
}

int main(void)
{
    for (int isa = FO_ISA_BASELINE; isa < FO_ISA_COUNT; isa++) {
        if (!fo_isa_available(isa)) continue;
        fo_select_isa(isa);
        init();
        fo_adam_args a = {0};
        a.form = FO_ADAM_TORCH; a.amsgrad = FO_AMS_RAW; a.beta1 = 0.9; a.beta2 = 0.999;
        a.one_minus_beta1 = 0.1; a.one_minus_beta2 = 0.001; a.eps = 1e-8; a.lr = 1e-3;
        a.bc2_sqrt = 0.0316; a.step_size = 1e-2;
        void *ps[1] = {p}, *ms[1] = {m}, *vs[1] = {v}, *xs[1] = {vmax};
        const void *gs[1] = {g};
        void *const *st[3] = {ms, vs, xs};
        fo_index n = N;
        for (int t = 0; t < 20; t++) fo_step(FO_OPT_adam, FO_F32, &a, 1, ps, gs, 3, st, &n, 1);
        uint64_t h = fnv(fnv(fnv(14695981039346656037ull, p, sizeof p), m, sizeof m), v, sizeof v);
        printf("adam %d %016llx\n", isa, (unsigned long long)fnv(h, vmax, sizeof vmax));

        fo_sgd_args sa = {0};
        sa.form = FO_SGD_TORCH; sa.nesterov = 1; sa.lr = 0.01; sa.momentum = 0.9;
        sa.one_minus_dampening = 1.0; sa.first_step = 1;
        void *const *sst[1] = {ms};
        fo_step(FO_OPT_sgd, FO_F32, &sa, 1, ps, gs, 1, sst, &n, 1);
        sa.first_step = 0;
        fo_step(FO_OPT_sgd, FO_F32, &sa, 1, ps, gs, 1, sst, &n, 1);
        printf("sgd %d %016llx\n", isa, (unsigned long long)fnv(fnv(14695981039346656037ull, p, sizeof p), m, sizeof m));

        fo_bce_args b = {0};
        b.x = x; b.y = y; b.y_dtype = FO_F32; b.w = w; b.w_mode = FO_BC_FULL;
        b.pw_scalar = 2.0; b.smooth_a = 0.9f; b.smooth_b = 0.05f; b.grad_scale = 1.0 / N;
        b.grad = out; b.ncols = 1;
        double loss = fo_bce(FO_F32, &b, N, 1);
        printf("bce %d %016llx %a\n", isa, (unsigned long long)fnv(14695981039346656037ull, out, sizeof out), loss);
    }
    return 0;
}
