/* fusedopt: the non-finite check, the bandwidth probes and the math kernels for the ulp
 * tests (template over FO_T, see fo_common.h). */
#ifndef FO_API

/* acc += g*0 stays 0 for finite g and becomes NaN at the first NaN or infinity: a
 * branch-free reduction gcc vectorises; returns 1 when any element (after g *= scale,
 * when do_scale) is NaN or infinite. */
int FO_NAME(unscale_check)(FO_T *restrict g, fo_index n, FO_T scale, int do_scale)
{
    FO_T acc[FO_LANES] = {0};
    fo_index i = 0;
    if (do_scale) {
        for (; i + FO_LANES <= n; i += FO_LANES)
            for (int j = 0; j < FO_LANES; j++) {
                FO_T v = g[i + j] * scale;
                g[i + j] = v;
                acc[j] += v * (FO_T)0;
            }
        for (; i < n; i++) { FO_T v = g[i] * scale; g[i] = v; acc[0] += v * (FO_T)0; }
    } else {
        for (; i + FO_LANES <= n; i += FO_LANES)
            for (int j = 0; j < FO_LANES; j++) acc[j] += g[i + j] * (FO_T)0;
        for (; i < n; i++) acc[0] += g[i] * (FO_T)0;
    }
    FO_T t = 0;
    for (int j = 0; j < FO_LANES; j++) t += acc[j];
    return t != t;
}

/* x's sum of squares in double lanes (the reductions' read of the bandwidth probes). */
static double FO_NAME(stream_sumsq)(const FO_T *restrict x, fo_index n)
{
    double acc[FO_LANES] = {0};
    fo_index i = 0;
    for (; i + FO_LANES <= n; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; i++) acc[0] += (double)x[i] * (double)x[i];
    FO_FOLD_LANES(acc);
    return acc[0];
}

/* The memory access patterns of the kernels with trivial arithmetic: what the memory
 * system allows, measured in the same run as the kernels (fusedopt bench).  READ stores
 * its block's sum in d[0] (clip_grad_norm_'s pattern); the other reductions keep theirs
 * in a volatile local, out of the arrays that later passes read. */
void FO_NAME(stream)(int pattern, FO_T *restrict a, const FO_T *restrict b,
                     FO_T *restrict c, FO_T *restrict d, fo_index n)
{
    const FO_T s = (FO_T)0.5;
    if (n <= 0)
        return;
    switch (pattern) {
    case FO_STREAM_COPY:      /* 1 read, 1 write */
        for (fo_index i = 0; i < n; i++) c[i] = b[i];
        break;
    case FO_STREAM_TRIAD:     /* 2 reads, 1 write */
        for (fo_index i = 0; i < n; i++) c[i] = a[i] + s * b[i];
        break;
    case FO_STREAM_ADAM:      /* 4 reads, 3 writes, in place */
        for (fo_index i = 0; i < n; i++) {
            FO_T g = b[i];
            a[i] = a[i] + s * g; c[i] = c[i] * s + g; d[i] = d[i] * s + g * g;
        }
        break;
    case FO_STREAM_SGD:       /* 3 reads, 2 writes, in place */
        for (fo_index i = 0; i < n; i++) { FO_T bb = c[i] * s + b[i]; c[i] = bb; a[i] = a[i] - s * bb; }
        break;
    case FO_STREAM_READ:      /* 1 read: b's sum of squares */
        d[0] = (FO_T)FO_NAME(stream_sumsq)(b, n);
        break;
    case FO_STREAM_READ2: {   /* 2 reads: a's and b's sums of squares (kept out of the
                               * arrays: a later pass reads them) */
        volatile double sink = FO_NAME(stream_sumsq)(a, n) + FO_NAME(stream_sumsq)(b, n);
        (void)sink;
        break;
    }
    case FO_STREAM_AXPY:      /* 2 reads, 1 write, in place */
        for (fo_index i = 0; i < n; i++) a[i] = a[i] + s * b[i];
        break;
    case FO_STREAM_ACC: {     /* 3 reads, 1 write: c updated, a's sum of squares */
        for (fo_index i = 0; i < n; i++) c[i] = c[i] * s + b[i] * b[i];
        volatile double sink = FO_NAME(stream_sumsq)(a, n);
        (void)sink;
        break;
    }
    case FO_STREAM_APPLY:     /* 3 reads, 1 write, in place */
        for (fo_index i = 0; i < n; i++) a[i] = a[i] - s * b[i] * c[i];
        break;
    case FO_STREAM_MOMENTS: { /* 4 reads, 2 writes: c and d updated, a's sum of squares */
        for (fo_index i = 0; i < n; i++) { c[i] = c[i] * s + b[i]; d[i] = d[i] * s + b[i] * b[i]; }
        volatile double sink = FO_NAME(stream_sumsq)(a, n);
        (void)sink;
        break;
    }
    case FO_STREAM_APPLY_CD:  /* 3 reads, 1 write, in place */
        for (fo_index i = 0; i < n; i++) a[i] = a[i] - s * c[i] * d[i];
        break;
    case FO_STREAM_SCALE: {   /* 1 read, 1 write, in place (by 1: values stay put) */
        volatile FO_T one_ = 1;
        const FO_T k = one_;
        for (fo_index i = 0; i < n; i++) a[i] = a[i] * k;
        break;
    }
    default:                  /* FO_STREAM_LOSS: 2 reads, 1 write */
        for (fo_index i = 0; i < n; i++) c[i] = a[i] - b[i];
        break;
    }
}

void FO_NAME(exp_neg)(const FO_T *a, FO_T *out, fo_index n)
{
    for (fo_index i = 0; i < n; i++) out[i] = FO_EXPNEG(a[i]);
}

void FO_NAME(log1p_unit)(const FO_T *e, FO_T *out, fo_index n)
{
    for (fo_index i = 0; i < n; i++) out[i] = FO_LOG1P(e[i]);
}
#endif
