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
/* The phases of a row split across threads (sce_part), and the chunk they split by. */
enum fo_sce_phase { FO_SCE_MAX = 0, FO_SCE_SUMS = 1, FO_SCE_FINISH = 2, FO_SCE_GRAD = 3 };
#ifndef FO_SCE_CHUNK
#define FO_SCE_CHUNK 1024
#endif
#else
#include <math.h>

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

/* The sums of a row's chunks [c0, c1) (element offsets, c0 a multiple of FO_SCE_CHUNK)
 * once m is known: added into sums[0..3] (each chunk's in turn), or with per_chunk each
 * chunk's own four written to sums[4*j..] (j: the chunk's index from c0; zeros on entry).
 * With `next`, each chunk prefetches the same chunk of the next row. */
FO_INLINE void FO_NAME(sce_sums_range)(const fo_sce_args *a, fo_index row, FO_T m,
                                       fo_index c0, fo_index c1, double *sums,
                                       const int per_chunk, const int next, const int dense,
                                       const int has_w, const int lin, const int want_grad)
{
    const fo_index C = a->ncols;
    const FO_T *x = (const FO_T *)a->x + row * C;
    const FO_T *q = dense ? (const FO_T *)a->q + row * C : NULL;
    const FO_T *w = has_w ? (const FO_T *)a->w : NULL;
    FO_T *g = want_grad ? (FO_T *)a->grad + row * C : NULL;
    const double lsc = a->smooth / (double)C;
    const FO_T sa = (FO_T)(1.0 - a->smooth), sb = (FO_T)lsc;
    FO_T eb[FO_SCE_CHUNK];
    for (fo_index k = c0; k < c1; k += FO_SCE_CHUNK) {
        fo_index n = c1 - k < FO_SCE_CHUNK ? c1 - k : FO_SCE_CHUNK;
        double *out = per_chunk ? sums + 4 * ((k - c0) / FO_SCE_CHUNK) : sums;
        FO_NAME(sce_sums)(x + k, dense ? q + k : NULL, has_w ? w + k : NULL,
                          want_grad ? g + k : eb, n, m, sa, sb, out,
                          next && row + 1 < a->nrows ? x + C + k : NULL, dense, has_w, lin);
    }
}

/* A row's loss from its maximum and sums; A and B of sce_grad go to ab[0..1], r and s
 * to ab[2..3] (for sce_label). */
FO_INLINE double FO_NAME(sce_finish)(const fo_sce_args *a, fo_index row, FO_T m,
                                     const double *sums, double *ab, const int dense,
                                     const int has_w, const int lin)
{
    const fo_index C = a->ncols;
    const double ls = a->smooth, gs = a->grad_scale, lsc = ls / (double)C;
    const double r = sums[0] + (sums[1] - 1.0), s = 1.0 + r, l1p = log1p(r);
    double loss, T;
    if (dense) {
        T = sums[2];
        loss = sums[3] + T * l1p;
    } else {
        const FO_T *x = (const FO_T *)a->x + row * C;
        const int64_t y = a->index[row];
        const double wy = has_w ? (double)((const FO_T *)a->w)[y] : 1.0;
        const double nll = ((double)m - (double)x[y]) + l1p;
        T = (1.0 - ls) * wy + lsc * a->w_sum;
        loss = (1.0 - ls) * wy * nll;
        if (lin) loss += lsc * (sums[3] + a->w_sum * l1p);
    }
    ab[0] = (double)(FO_T)(T / s * gs);
    ab[1] = (double)(FO_T)(dense ? gs : lsc * gs);
    ab[2] = r;
    ab[3] = s;
    return loss;
}

/* The gradient of chunks [c0, c1) of a row, from A = ab[0] and B = ab[1]. */
FO_INLINE void FO_NAME(sce_grad_range)(const fo_sce_args *a, fo_index row, fo_index c0,
                                       fo_index c1, const double *ab, const int dense,
                                       const int has_w)
{
    const fo_index C = a->ncols;
    const FO_T *q = dense ? (const FO_T *)a->q + row * C : NULL;
    const FO_T *w = has_w ? (const FO_T *)a->w : NULL;
    FO_T *g = (FO_T *)a->grad + row * C;
    const double lsc = a->smooth / (double)C;
    const FO_T sa = (FO_T)(1.0 - a->smooth), sb = (FO_T)lsc;
    const FO_T A = (FO_T)ab[0], B = (FO_T)ab[1];
    for (fo_index k = c0; k < c1; k += FO_SCE_CHUNK) {
        fo_index n = c1 - k < FO_SCE_CHUNK ? c1 - k : FO_SCE_CHUNK;
        FO_NAME(sce_grad)(g + k, dense ? q + k : NULL, has_w ? w + k : NULL, n, A, B, sa, sb,
                          dense, has_w);
    }
}

/* A class index row's label element of the gradient, after sce_grad_range, from r and s
 * (ab[2..3]). */
FO_INLINE void FO_NAME(sce_label)(const fo_sce_args *a, fo_index row, FO_T m,
                                  const double *ab, const int has_w)
{
    const fo_index C = a->ncols;
    const FO_T *x = (const FO_T *)a->x + row * C;
    FO_T *g = (FO_T *)a->grad + row * C;
    const int64_t y = a->index[row];
    const double ls = a->smooth, lsc = ls / (double)C, r = ab[2], s = ab[3];
    const double wy = has_w ? (double)((const FO_T *)a->w)[y] : 1.0;
    const double ey = (double)FO_EXPNEG(m - x[y]);
    /* s - e_y; e_y is 1 at a maximum (NaN in a row of -inf only) */
    const double rest = x[y] == m ? r + (ey - 1.0) : s - ey;
    double gy = (1.0 - ls) * wy * (-rest / s);
    if (ls != 0.0) gy += lsc * (a->w_sum * (ey / s) - wy);
    g[y] = (FO_T)(gy * a->grad_scale);
}

/* Whether a row counts (probabilities, or a class index other than ignore_index). */
FO_INLINE int FO_NAME(sce_live)(const fo_sce_args *a, fo_index row, const int dense)
{
    return dense || a->index[row] != a->ignore_index;
}

/* One row: returns its loss (double) and writes its gradient. */
FO_INLINE double FO_NAME(sce_row)(const fo_sce_args *a, fo_index row, const int dense,
                                  const int has_w, const int lin, const int want_grad)
{
    const fo_index C = a->ncols;
    if (!FO_NAME(sce_live)(a, row, dense)) {
        if (want_grad) {
            FO_T *g = (FO_T *)a->grad + row * C;
            for (fo_index k = 0; k < C; k++) g[k] = (FO_T)0;
        }
        return 0.0;
    }
    const FO_T m = FO_NAME(sce_max)((const FO_T *)a->x + row * C, C);
    double sums[4] = {0, 0, 0, 0}, ab[4];
    FO_NAME(sce_sums_range)(a, row, m, 0, C, sums, 0, 1, dense, has_w, lin, want_grad);
    const double loss = FO_NAME(sce_finish)(a, row, m, sums, ab, dense, has_w, lin);
    if (want_grad) {
        FO_NAME(sce_grad_range)(a, row, 0, C, ab, dense, has_w);
        if (!dense) FO_NAME(sce_label)(a, row, m, ab, has_w);
    }
    return loss;
}
#undef FO_SCE_TQ

/* A row that counts, split across threads by fo_sce (fo_driver.c), phase by phase over
 * its chunks [k0, k1) (in chunks of FO_SCE_CHUNK):
 *   FO_SCE_MAX:    returns the maximum of those chunks' logits;
 *   FO_SCE_SUMS:   each chunk's four sums to io[4*(k - k0)..] (zeros on entry), given
 *                  m = par[0];
 *   FO_SCE_FINISH: (the whole row, k0 = k1 = 0) returns the loss from m = par[0] and
 *                  the row's sums par[1..4], writes it to a->loss[row] when wanted, and
 *                  A, B, r, s to io[0..3];
 *   FO_SCE_GRAD:   the gradient of those chunks from par = io of FO_SCE_FINISH, and the
 *                  label's element when the label lies in them (m = par[4]).
 * Every chunk's values are those sce_row computes, whatever the split. */
FO_INLINE double FO_NAME(sce_part_v)(const fo_sce_args *a, fo_index row, int phase,
                                     fo_index k0, fo_index k1, const double *par, double *io,
                                     const int dense, const int has_w, const int lin,
                                     const int want_grad)
{
    const fo_index C = a->ncols;
    const fo_index c0 = k0 * FO_SCE_CHUNK, c1 = k1 * FO_SCE_CHUNK < C ? k1 * FO_SCE_CHUNK : C;
    if (phase == FO_SCE_MAX)
        return c1 > c0 ? (double)FO_NAME(sce_max)((const FO_T *)a->x + row * C + c0, c1 - c0)
                       : -INFINITY;
    if (phase == FO_SCE_SUMS) {
        if (c1 > c0)
            FO_NAME(sce_sums_range)(a, row, (FO_T)par[0], c0, c1, io, 1, 0, dense, has_w, lin,
                                    want_grad);
        return 0.0;
    }
    if (phase == FO_SCE_FINISH) {
        const double l = FO_NAME(sce_finish)(a, row, (FO_T)par[0], par + 1, io, dense,
                                             has_w, lin);
        if (a->loss) ((FO_T *)a->loss)[row] = (FO_T)l;
        return l;
    }
    if (want_grad && c1 > c0) {               /* FO_SCE_GRAD */
        FO_NAME(sce_grad_range)(a, row, c0, c1, par, dense, has_w);
        if (!dense && a->index[row] >= c0 && a->index[row] < c1)
            FO_NAME(sce_label)(a, row, (FO_T)par[4], par, has_w);
    }
    return 0.0;
}

/* Compiled variants: probabilities or class indices, weighted or not, with the linear sum
 * of smoothing (class indices) or not, gradient or not; each a loop without run-time
 * flags.  FO_SCE_VARIANTS(V) lists them for a dispatcher's V(D, W, L, G). */
#define FO_SCE_VARIANTS(V) \
    V(0, 0, 0, 1); V(0, 0, 0, 0); V(0, 1, 0, 1); V(0, 1, 0, 0); \
    V(0, 0, 1, 1); V(0, 0, 1, 0); V(0, 1, 1, 1); V(0, 1, 1, 0); \
    V(1, 0, 0, 1); V(1, 0, 0, 0); V(1, 1, 0, 1); V(1, 1, 0, 0)
#define FO_SCE_FLAGS(a) \
    const int dense = (a)->q != NULL, hw = (a)->w != NULL, gr = (a)->grad != NULL; \
    const int lin = !dense && (a)->smooth != 0.0
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
    FO_SCE_FLAGS(a);
#define FO_SCE_V(D, W, L, G) \
    if (dense == D && hw == W && lin == L && gr == G) return FO_NAME(sce_rows_v)(a, r0, r1, D, W, L, G)
    FO_SCE_VARIANTS(FO_SCE_V);
#undef FO_SCE_V
    return 0.0;     /* not reached: every combination is listed */
}

double FO_NAME(sce_part)(const fo_sce_args *a, fo_index row, int phase, fo_index k0,
                         fo_index k1, const double *par, double *io)
{
    FO_SCE_FLAGS(a);
#define FO_SCE_V(D, W, L, G) \
    if (dense == D && hw == W && lin == L && gr == G) \
        return FO_NAME(sce_part_v)(a, row, phase, k0, k1, par, io, D, W, L, G)
    FO_SCE_VARIANTS(FO_SCE_V);
#undef FO_SCE_V
    return 0.0;     /* not reached */
}
#endif
