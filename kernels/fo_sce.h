/* fusedopt: softmax cross-entropy with logits, loss and gradient in one call (template
 * over FO_T, see fo_common.h).
 *
 * Row n holds C logits x_c.  Its target weights t_c come from the labels:
 *   class index y (weight w, smoothing ls):  t_c = (1-ls)*w_y*[c == y] + (ls/C)*w_c
 *   probabilities q:                          t_c = w_c*(q_c*(1-ls) + ls/C)
 * With m = max_c x_c, e_c = exp(-(m - x_c)) and s = sum_c e_c = 1 + r, where r sums every
 * e_c but one maximum's (an exact 1),
 *   -log p_c = (m - x_c) + log1p(r)               two non-negative terms: no cancellation
 *   loss     = sum_c t_c*(-log p_c)               a zero t_c adds nothing, even at x_c = -inf
 *   grad_c   = (T*p_c - t_c)*gs,  T = sum_c t_c, p_c = e_c/s, gs = 1/den for "mean"
 * and for a class index the label's own element is computed in double as
 * (1-ls)*w_y*(-(s - e_y)/s) + (ls/C)*(W*p_y - w_y), W = sum_c w_c, where s - e_y is r
 * when x_y is the maximum: p_y - 1 without its cancellation.
 *
 * Three passes over a row: its maximum; exp, the row sums, and e_c stored in the gradient
 * row; the gradient from e_c.  A row of C float32 logits up to a few 100 k stays in L2
 * between the passes, so memory sees one read of the logits (and labels) and one write
 * of the gradient.  Sums run in double (pairs of summands, all >= 0, added in FO_T
 * first), over chunks of FO_SCE_CHUNK elements in FO_LANES lanes folded in a fixed
 * order, chunks added in row order: the same on every CPU path and for every thread
 * count.
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): one call's arrays and scalars. */
typedef struct {
    const void *x;          /* logits (nrows, ncols), C-contiguous, FO_F32 or FO_F64 */
    fo_index nrows, ncols;
    const int64_t *index;   /* class indices (nrows,), or NULL: probabilities in q */
    int64_t ignore_index;   /* rows with this index have loss 0 and gradient 0 */
    const void *q;          /* probabilities (nrows, ncols) in x's dtype, or NULL */
    const void *w;          /* class weights (ncols,) in x's dtype, or NULL */
    double w_sum;           /* sum of w (ncols without weights) */
    double smooth;          /* label smoothing ls in [0, 1] */
    double grad_scale;      /* gs: 1/den for "mean", else 1 */
    void *grad;             /* out: (nrows, ncols), or NULL */
    void *loss;             /* out: per-row loss (nrows,), or NULL */
} fo_sce_args;
/* Returns the sum of the row losses (in double, in row order). */
double fo_sce(int dtype, const fo_sce_args *a, int n_threads);
#else
#include <math.h>
#ifndef FO_SCE_CHUNK
#define FO_SCE_CHUNK 1024
#endif

/* Maximum of a row (exact: the order does not matter, and a NaN, whether selected or
 * not, reaches every result through exp; -0 and +0 give the same results).  gcc
 * vectorises a max reduction only when told that its order is free. */
FO_INLINE FO_T FO_NAME(sce_max)(const FO_T *restrict x, fo_index n)
{
    FO_T m = -(FO_T)INFINITY;
#ifdef _OPENMP
#pragma omp simd reduction(max : m)
#endif
    for (fo_index k = 0; k < n; k++) m = x[k] > m ? x[k] : m;
    return m;
}

/* A target weight of the probability form. */
#define FO_SCE_TQ(k) ((has_w ? w[k] : (FO_T)1) * (q[k] * sa + sb))

/* Sums of one chunk of a row, once m is known: out[0] += r (every e but the maxima's),
 * out[1] += the number of maxima, out[2] += T (probabilities), out[3] += the loss's
 * linear part: sum t_c*(m - x_c) (probabilities) or sum w_c*(m - x_c) (class index with
 * smoothing).  e_c goes to e (the gradient row, or a scratch chunk).  xn, when not NULL,
 * is the same chunk of the next row: it is prefetched, so that the next row's maximum
 * pass reads from cache instead of waiting on memory.  Two loops, as in
 * the sigmoid loss: one computes exp and every summand into chunk buffers (selects and
 * all, it vectorises at full width), the other adds the buffers into double lanes. */
FO_INLINE void FO_NAME(sce_sums)(const FO_T *restrict x, const FO_T *restrict q,
                                 const FO_T *restrict w, FO_T *restrict e, fo_index n, FO_T m,
                                 FO_T sa, FO_T sb, double *out, const FO_T *xn,
                                 const int dense, const int has_w, const int lin)
{
    FO_T er[FO_SCE_CHUNK], et[FO_SCE_CHUNK], el[FO_SCE_CHUNK];
    int tops = 0;
    if (xn)
        for (fo_index k = 0; k < n; k += FO_LINE_ELEMS) FO_PREFETCH_AT(xn + k, 0, 0);
    for (fo_index k = 0; k < n; k++) {
        const FO_T d = m - x[k], ek = FO_EXPNEG(d);
        const int top = x[k] == m;
        e[k] = ek;
        er[k] = top ? (FO_T)0 : ek;
        tops += top;
        if (dense) {
            const FO_T tk = FO_SCE_TQ(k);
            et[k] = tk;
            el[k] = tk != (FO_T)0 ? tk * d : (FO_T)0;
        } else if (lin) {
            el[k] = has_w ? w[k] * d : d;
        }
    }
    double ar[FO_LANES] = {0}, at[FO_LANES] = {0}, al[FO_LANES] = {0};
    fo_index i = 0;
    /* pairs added in FO_T first: every summand is >= 0, so a pair is within u of its
     * exact sum (and the conversions to double, the costly part, are halved) */
    for (; i + 2 * FO_LANES <= n; i += 2 * FO_LANES)
        for (int j = 0; j < FO_LANES; j++) {
            const fo_index a = i + j, b = i + j + FO_LANES;
            ar[j] += (double)(er[a] + er[b]);
            if (dense) at[j] += (double)(et[a] + et[b]);
            if (dense || lin) al[j] += (double)(el[a] + el[b]);
        }
    for (; i + FO_LANES <= n; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) {
            ar[j] += (double)er[i + j];
            if (dense) at[j] += (double)et[i + j];
            if (dense || lin) al[j] += (double)el[i + j];
        }
    for (int j = 0; i < n; i++, j++) {
        ar[j] += (double)er[i];
        if (dense) at[j] += (double)et[i];
        if (dense || lin) al[j] += (double)el[i];
    }
    FO_FOLD_LANES(ar); FO_FOLD_LANES(at); FO_FOLD_LANES(al);
    out[0] += ar[0]; out[1] += (double)tops; out[2] += at[0]; out[3] += al[0];
}

/* grad_c = e_c*A - t_c*gs over a chunk, e_c read from the gradient row itself. */
FO_INLINE void FO_NAME(sce_grad)(FO_T *restrict g, const FO_T *restrict q,
                                 const FO_T *restrict w, fo_index n, FO_T A, FO_T B, FO_T sa,
                                 FO_T sb, const int dense, const int has_w)
{
    for (fo_index k = 0; k < n; k++) {
        FO_T tb = dense ? FO_SCE_TQ(k) * B : (has_w ? w[k] * B : B);
        g[k] = g[k] * A - tb;
    }
}

/* One row: returns its loss (double) and writes its gradient. */
FO_INLINE double FO_NAME(sce_row)(const fo_sce_args *a, fo_index row, const int dense,
                                  const int has_w, const int lin, const int want_grad)
{
    const fo_index C = a->ncols;
    const FO_T *x = (const FO_T *)a->x + row * C;
    const FO_T *q = dense ? (const FO_T *)a->q + row * C : NULL;
    const FO_T *w = has_w ? (const FO_T *)a->w : NULL;
    FO_T *g = want_grad ? (FO_T *)a->grad + row * C : NULL;
    const double ls = a->smooth, gs = a->grad_scale, lsc = ls / (double)C;
    int64_t y = 0;
    if (!dense) {
        y = a->index[row];
        if (y == a->ignore_index) {
            if (want_grad) for (fo_index k = 0; k < C; k++) g[k] = (FO_T)0;
            return 0.0;
        }
    }
    const FO_T sa = (FO_T)(1.0 - ls), sb = (FO_T)lsc;
    const double wy = !dense && has_w ? (double)w[y] : 1.0;     /* the label's weight */
    FO_T m = FO_NAME(sce_max)(x, C);
    double sums[4] = {0, 0, 0, 0};
    FO_T eb[FO_SCE_CHUNK];
    for (fo_index c0 = 0; c0 < C; c0 += FO_SCE_CHUNK) {
        fo_index n = C - c0 < FO_SCE_CHUNK ? C - c0 : FO_SCE_CHUNK;
        FO_NAME(sce_sums)(x + c0, dense ? q + c0 : NULL, has_w ? w + c0 : NULL,
                          want_grad ? g + c0 : eb, n, m, sa, sb, sums,
                          row + 1 < a->nrows ? x + C + c0 : NULL, dense, has_w, lin);
    }
    const double r = sums[0] + (sums[1] - 1.0), s = 1.0 + r, l1p = log1p(r);
    double loss, T;
    if (dense) {
        T = sums[2];
        loss = sums[3] + T * l1p;
    } else {
        const double nll = ((double)m - (double)x[y]) + l1p;
        T = (1.0 - ls) * wy + lsc * a->w_sum;
        loss = (1.0 - ls) * wy * nll;
        if (lin) loss += lsc * (sums[3] + a->w_sum * l1p);
    }
    if (want_grad) {
        const FO_T A = (FO_T)(T / s * gs), B = (FO_T)(dense ? gs : lsc * gs);
        for (fo_index c0 = 0; c0 < C; c0 += FO_SCE_CHUNK) {
            fo_index n = C - c0 < FO_SCE_CHUNK ? C - c0 : FO_SCE_CHUNK;
            FO_NAME(sce_grad)(g + c0, dense ? q + c0 : NULL, has_w ? w + c0 : NULL, n, A, B,
                              sa, sb, dense, has_w);
        }
        if (!dense) {
            const double ey = (double)FO_EXPNEG(m - x[y]);
            /* s - e_y; e_y is 1 at a maximum (NaN in a row of -inf only) */
            const double rest = x[y] == m ? r + (ey - 1.0) : s - ey;
            double gy = (1.0 - ls) * wy * (-rest / s);
            if (ls != 0.0) gy += lsc * (a->w_sum * (ey / s) - wy);
            g[y] = (FO_T)(gy * gs);
        }
    }
    return loss;
}
#undef FO_SCE_TQ

/* Compiled variants: probabilities or class indices, weighted or not, with the linear sum
 * of smoothing (class indices) or not, gradient or not; each a loop without run-time
 * flags. */
FO_INLINE double FO_NAME(sce_rows_v)(const fo_sce_args *a, fo_index r0, fo_index r1,
                                     const int dense, const int has_w, const int lin,
                                     const int want_grad)
{
    double total = 0.0;
    FO_T *loss = (FO_T *)a->loss;
    for (fo_index r = r0; r < r1; r++) {
        double l = FO_NAME(sce_row)(a, r, dense, has_w, lin, want_grad);
        if (loss) loss[r] = (FO_T)l;
        total += l;
    }
    return total;
}

double FO_NAME(sce_rows)(const fo_sce_args *a, fo_index r0, fo_index r1)
{
    const int dense = a->q != NULL, hw = a->w != NULL, gr = a->grad != NULL;
    const int lin = !dense && a->smooth != 0.0;
#define FO_SCE_V(D, W, L, G) \
    if (dense == D && hw == W && lin == L && gr == G) return FO_NAME(sce_rows_v)(a, r0, r1, D, W, L, G)
    FO_SCE_V(0, 0, 0, 1); FO_SCE_V(0, 0, 0, 0); FO_SCE_V(0, 1, 0, 1); FO_SCE_V(0, 1, 0, 0);
    FO_SCE_V(0, 0, 1, 1); FO_SCE_V(0, 0, 1, 0); FO_SCE_V(0, 1, 1, 1); FO_SCE_V(0, 1, 1, 0);
    FO_SCE_V(1, 0, 0, 1); FO_SCE_V(1, 0, 0, 0); FO_SCE_V(1, 1, 0, 1); FO_SCE_V(1, 1, 0, 0);
#undef FO_SCE_V
    return 0.0;     /* not reached: every combination is listed */
}
#endif
