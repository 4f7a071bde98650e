/* fusedopt: sigmoid cross-entropy with logits, loss and gradient in one pass (template
 * over FO_T, see fo_common.h).
 *
 * One element: y' = y*sa + sb and 1-y' = (1-y)*sa + sb (label smoothing, sa + 2 sb = 1),
 * pw = pos_weight, lw = (pw-1)*y' + 1 = (1-y') + pw*y', e = exp(-|x|),
 *   loss = (x >= 0 ? (1-y')*x : pw*y'*(-x)) + lw*log1p(e)
 *   grad = (x >= 0 ? (1-y') - pw*y'*e : (1-y')*e - pw*y') / (1+e)   (= lw*sigmoid(x) - pw*y')
 * The loss is the textbook (1-y')*x + lw*(max(-x,0) + log1p(e)) with the first two terms
 * added by hand: for x < 0 they are pw*y'*|x|, which the textbook form gets by cancelling
 * two terms of size |x| (400 ulp lost in float32 at x = -8, y = 8e-4; TensorFlow and
 * scikit-learn do not lose them).  For labels in [0, 1] every term above is then
 * non-negative, so each element is accurate to a few ulp relative, and y' = 0 gives an
 * exact 0 for x < 0.  1-y' and lw are likewise sums of non-negative terms.  The gradient
 * is sigmoid(x) - y' written without the cancellation of 1/(1+e) - 1 (as scikit-learn's
 * HalfBinomialLoss does).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): one call's arrays and scalars. */
/* ---------------------------------------------------------------- losses */
enum fo_bcast { FO_BC_SCALAR = 0, FO_BC_FULL = 1, FO_BC_COL = 2 /* along the last axis */ };

typedef struct {
    const void *x;          /* logits, FO_F32 or FO_F64 */
    const void *y;          /* labels: same dtype as x, or FO_U8 (bool/uint8) */
    int y_dtype;
    const void *w;          /* element weight (x's dtype) or NULL */
    int w_mode;             /* fo_bcast */
    const void *pw;         /* pos_weight (x's dtype) or NULL */
    int pw_mode;            /* FO_BC_SCALAR or FO_BC_COL */
    fo_index ncols;         /* length of the last axis (for FO_BC_COL) */
    double w_scalar, pw_scalar;
    double smooth_a, smooth_b;   /* y' = y*a + b (label smoothing: a = 1-ls, b = ls/2) */
    double grad_scale;      /* 1/n for mean, 1 otherwise */
    void *grad;             /* out: d loss / d x, or NULL */
    void *loss;             /* out: elementwise loss (reduction none), or NULL */
} fo_bce_args;
/* Returns the sum of the elementwise losses (in double, block order). */
double fo_bce(int dtype, const fo_bce_args *a, fo_index n, int n_threads);
#else
FO_INLINE FO_T FO_NAME(bce_point)(FO_T x, FO_T e, FO_T y, FO_T omy, FO_T pw, FO_T *grad,
                                  const int plain)
{
    FO_T pwy = plain ? y : pw * y;                      /* plain: pos_weight = 1 */
    FO_T num = x >= (FO_T)0 ? omy - pwy * e : omy * e - pwy;
    FO_T lin = x >= (FO_T)0 ? omy * x : pwy * -x;       /* (1-y')*x + lw*max(-x, 0) */
    /* One division serves both the gradient's 1/(1+e) and log1p's s = f/(2+f): with
     * q = 1/((1+e)(2+f)), s = f*((1+e)*q) and 1/(1+e) = (2+f)*q (two more roundings
     * each; s only enters a correction term of log1p, see fo_math.h). */
    int big = e >= (FO_T)0.5;
    FO_T f = big ? (e - (FO_T)1) * (FO_T)0.5 : e;
    FO_T d1 = (FO_T)1 + e, d2 = (FO_T)2 + f;
    FO_T q = (FO_T)1 / (d1 * d2);
    FO_T l = FO_CAT(fo_log1p_finish, FO_TS)(f, f * (d1 * q), big);
    *grad = num * (d2 * q);
    if (plain) return lin + l;
    return lin + (omy + pwy) * l;
}

/* Elements are computed in chunks of FO_CHUNK, in two plain loops that gcc vectorises at
 * full width: e = exp(-|x|) into a buffer, then the rest.  Why two loops (measured,
 * bench/RESULTS.md): one element is a single dependency chain of ~180 cycles (exp, a
 * division, log1p), longer than the out-of-order window holds for one vector per
 * iteration; split, each loop's chain is short enough for several iterations to overlap
 * (+30-40 % on every path).  With this much work per cache line the hardware prefetchers
 * fall behind out of cache: the exp loop prefetches every input and output line 4 KiB
 * ahead.  Neither changes a result. */
#define FO_CHUNK 256

/* The chunk's arrays: x, y (FO_T or uint8), per-element pos_weight and weight (a vector
 * of the caller's or a chunk filled with the scalar), and where the gradient and the
 * losses go (the caller's arrays, or scratch chunks). */
typedef struct {
    const FO_T *x; const void *y; const FO_T *pw, *w;
    FO_T *grad, *loss;
} FO_NAME(bce_chunk);

FO_INLINE void FO_NAME(bce_elems)(const FO_NAME(bce_chunk) *c, const FO_T *restrict eb,
                                  FO_T sa, FO_T sb, FO_T gs, fo_index cn, const int ytype,
                                  const int plain)
{
    const FO_T *restrict x = c->x, *restrict pw = c->pw, *restrict w = c->w;
    FO_T *restrict grad = c->grad, *restrict loss = c->loss;
    for (fo_index k = 0; k < cn; k++) {
        FO_T yk = ytype == FO_U8 ? (FO_T)((const uint8_t *)c->y)[k] : ((const FO_T *)c->y)[k];
        FO_T gk;
        if (plain) {                          /* no weights, no pos_weight, no smoothing */
            loss[k] = FO_NAME(bce_point)(x[k], eb[k], yk, (FO_T)1 - yk, (FO_T)1, &gk, 1);
            grad[k] = gk * gs;
        } else {
            FO_T ys = yk * sa + sb, omy = ((FO_T)1 - yk) * sa + sb;
            loss[k] = FO_NAME(bce_point)(x[k], eb[k], ys, omy, pw[k], &gk, 0) * w[k];
            grad[k] = (gk * w[k]) * gs;
        }
    }
}

#define FO_PREFETCH(p, rw) FO_PREFETCH_AT(p, 4096, rw)
/* exp(-|x|) of a chunk; a full chunk also prefetches every stream's line 4 KiB ahead. */
FO_INLINE void FO_NAME(bce_exp)(const FO_NAME(bce_chunk) *c, FO_T *restrict eb, fo_index cn,
                                size_t ysz, int w_vec, int want_grad, int want_loss)
{
    const FO_T *restrict x = c->x;
    if (cn < FO_CHUNK) {
        for (fo_index k = 0; k < cn; k++) eb[k] = FO_EXPNEG(x[k] < (FO_T)0 ? -x[k] : x[k]);
        return;
    }
    for (fo_index k0 = 0; k0 < FO_CHUNK; k0 += FO_LINE_ELEMS) {
        FO_PREFETCH(x + k0, 0);
        FO_PREFETCH((const char *)c->y + (size_t)k0 * ysz, 0);
        if (w_vec) FO_PREFETCH(c->w + k0, 0);
        if (want_grad) FO_PREFETCH(c->grad + k0, 1);
        if (want_loss) FO_PREFETCH(c->loss + k0, 1);
        for (fo_index k = k0; k < k0 + FO_LINE_ELEMS; k++)
            eb[k] = FO_EXPNEG(x[k] < (FO_T)0 ? -x[k] : x[k]);
    }
}

/* A run of `len` elements from index i (inside one row when a vector is per column). */
FO_INLINE void FO_NAME(bce_run)(const fo_bce_args *a, fo_index i, fo_index len, fo_index col,
                                const FO_T *pwfill, const FO_T *wfill, double *restrict acc,
                                const int ytype, const int plain)
{
    const size_t ysz = ytype == FO_U8 ? 1 : sizeof(FO_T);
    const int pw_vec = a->pw_mode == FO_BC_COL, w_vec = a->w_mode != FO_BC_SCALAR;
    const int w_col = a->w_mode == FO_BC_COL;
    const int want_grad = a->grad != NULL, want_loss = a->loss != NULL;
    const FO_T sa = (FO_T)a->smooth_a, sb = (FO_T)a->smooth_b, gs = (FO_T)a->grad_scale;
    FO_T lbuf[FO_CHUNK], gbuf[FO_CHUNK], eb[FO_CHUNK];
    for (fo_index c0 = 0; c0 < len; c0 += FO_CHUNK) {
        const fo_index cn = len - c0 < FO_CHUNK ? len - c0 : FO_CHUNK, at = i + c0;
        FO_NAME(bce_chunk) c;
        c.x = (const FO_T *)a->x + at;
        c.y = (const char *)a->y + (size_t)at * ysz;
        c.pw = pw_vec ? (const FO_T *)a->pw + col + c0 : pwfill;
        c.w = w_vec ? (const FO_T *)a->w + (w_col ? col : i) + c0 : wfill;
        c.grad = want_grad ? (FO_T *)a->grad + at : gbuf;
        c.loss = want_loss ? (FO_T *)a->loss + at : lbuf;
        FO_NAME(bce_exp)(&c, eb, cn, ysz, w_vec, want_grad, want_loss);
        FO_NAME(bce_elems)(&c, eb, sa, sb, gs, cn, ytype, plain);
        if (!want_loss) {
            fo_index k = 0;
            for (; k + FO_LANES <= cn; k += FO_LANES)
                for (int j = 0; j < FO_LANES; j++) acc[j] += (double)lbuf[k + j];
            for (int j = 0; k < cn; k++, j++) acc[j] += (double)lbuf[k];
        }
    }
}

/* Compiled variants: plain or weighted, times FO_T or uint8 labels.  Everything else (which
 * weights are vectors, whether the gradient and the elementwise loss are written) is
 * chosen per chunk by pointers, outside the element loop. */
FO_INLINE void FO_NAME(bce_runs)(const fo_bce_args *a, fo_index i0, fo_index i1, double *acc,
                                 const int ytype, const int plain)
{
    FO_T pwfill[FO_CHUNK], wfill[FO_CHUNK];
    for (int k = 0; k < FO_CHUNK; k++) {
        pwfill[k] = (FO_T)a->pw_scalar;
        wfill[k] = (FO_T)a->w_scalar;
    }
    const int col = a->pw_mode == FO_BC_COL || a->w_mode == FO_BC_COL;
    fo_index i = i0;
    while (i < i1) {
        /* A run ends at the end of the block or, for per-column vectors, of the row. */
        fo_index c = col ? i % a->ncols : 0;
        fo_index len = col ? a->ncols - c : i1 - i;
        if (len > i1 - i) len = i1 - i;
        FO_NAME(bce_run)(a, i, len, c, pwfill, wfill, acc, ytype, plain);
        i += len;
    }
}

double FO_NAME(bce_block)(const fo_bce_args *a, fo_index i0, fo_index i1)
{
    double acc[FO_LANES] = {0};
    const int u8 = a->y_dtype == FO_U8;
    const int plain = a->pw_mode == FO_BC_SCALAR && a->w_mode == FO_BC_SCALAR &&
                      a->pw_scalar == 1.0 && a->w_scalar == 1.0 &&
                      a->smooth_a == 1.0 && a->smooth_b == 0.0;
    if (plain) {
        if (u8) FO_NAME(bce_runs)(a, i0, i1, acc, FO_U8, 1);
        else FO_NAME(bce_runs)(a, i0, i1, acc, 0, 1);
    } else {
        if (u8) FO_NAME(bce_runs)(a, i0, i1, acc, FO_U8, 0);
        else FO_NAME(bce_runs)(a, i0, i1, acc, 0, 0);
    }
    FO_FOLD_LANES(acc);
    return acc[0];
}
#undef FO_PREFETCH
#undef FO_CHUNK
#endif
