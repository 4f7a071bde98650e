/* fusedopt: the loop bodies, one copy per element type and CPU path.
 *
 * Included by fo_isa_*.c with
 *   FO_T      element type (float or double)
 *   FO_TS     type suffix (f32 or f64), selects the fo_math.h functions
 *   FO_NAME   macro building the function name for this type and path
 * Each formula lives in one always-inline function; the flags that choose a convention
 * are arguments that the switch in each range function passes as constants, so gcc
 * specialises (and vectorises) one loop per variant: no branch inside a hot loop.
 */
#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)
#define FO_EXPNEG FO_CAT(fo_exp_neg, FO_TS)
#define FO_LOG1P FO_CAT(fo_log1p_unit, FO_TS)
#define FO_INLINE static inline __attribute__((always_inline))
/* Elements per 64-byte cache line, and a prefetch `bytes` past p (rw 1: for writing).
 * Integer arithmetic: the address may lie past the array (prefetches never fault). */
#define FO_LINE_ELEMS ((fo_index)(64 / sizeof(FO_T)))
#define FO_PREFETCH_AT(p, bytes, rw) \
    __builtin_prefetch((const void *)((uintptr_t)(p) + (bytes)), rw, 3)

/* ------------------------------------------------------------------ Adam */
/* max(a, b) that propagates NaN from either side (torch.maximum, np.maximum). */
FO_INLINE FO_T FO_NAME(nanmax)(FO_T a, FO_T b)
{
    FO_T r = a > b ? a : b;
    return a != a ? a : r;
}

FO_INLINE void FO_NAME(adam_body)(const fo_adam_args *a, FO_T *restrict p,
                                  const FO_T *restrict g, FO_T *restrict m,
                                  FO_T *restrict v, FO_T *restrict vmax, fo_index n,
                                  const int form, const int decay, const int ams)
{
    const FO_T b1 = (FO_T)a->beta1, b2 = (FO_T)a->beta2;
    const FO_T omb1 = (FO_T)a->one_minus_beta1, omb2 = (FO_T)a->one_minus_beta2;
    const FO_T eps = (FO_T)a->eps, eps_root = (FO_T)a->eps_root;
    const FO_T wd = (FO_T)a->wd, lr = (FO_T)a->lr, dfac = (FO_T)a->decay_factor;
    const FO_T sgn = a->maximize ? (FO_T)-1 : (FO_T)1;
    const FO_T step_size = (FO_T)a->step_size, neg_step_size = (FO_T)(-a->step_size);
    const FO_T bc2_sqrt = (FO_T)a->bc2_sqrt, bc1 = (FO_T)a->bc1, bc2 = (FO_T)a->bc2;
    /* torch's lerp: |w| < 0.5 ? m + w*(g-m) : g - (g-m)*(1-w) */
    const int lerp_lo = omb1 < (FO_T)0.5;
    const FO_T omw = (FO_T)1 - omb1;
    /* Line by line, prefetching 2 KiB ahead: with a sqrt and a division per element the
     * hardware prefetchers alone left 1e7 floats at ~91 % of the bandwidth ceiling
     * (~100 % with this; measured, bench/RESULTS.md).  Nothing else changes. */
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_PREFETCH_AT(p + i0, 2048, 1);
        FO_PREFETCH_AT(g + i0, 2048, 0);
        FO_PREFETCH_AT(m + i0, 2048, 1);
        FO_PREFETCH_AT(v + i0, 2048, 1);
        if (ams != FO_AMS_NONE) FO_PREFETCH_AT(vmax + i0, 2048, 1);
        const fo_index i1 = n - i0 < FO_LINE_ELEMS ? n : i0 + FO_LINE_ELEMS;
        for (fo_index i = i0; i < i1; i++) {
            FO_T gi = g[i] * sgn, pi = p[i], mi = m[i], vi = v[i];
            if (decay == FO_DECAY_L2) gi = gi + wd * pi;
            else if (decay == FO_DECAY_MUL) pi = pi * dfac;
            else if (decay == FO_DECAY_SUB) pi = pi - (pi * wd) * lr;
            if (form == FO_ADAM_TORCH) {
                mi = lerp_lo ? mi + omb1 * (gi - mi) : gi - (gi - mi) * omw;
                vi = vi * b2 + (omb2 * gi) * gi;
            } else if (form == FO_ADAM_EPSHAT) {
                mi = mi + (gi - mi) * omb1;
                vi = vi + (gi * gi - vi) * omb2;
            } else {
                mi = b1 * mi + omb1 * gi;
                vi = b2 * vi + omb2 * (gi * gi);
            }
            m[i] = mi;
            v[i] = vi;
            FO_T vu = vi;
            if (form == FO_ADAM_OPTAX) {
                FO_T mhat = mi / bc1;
                vu = vi / bc2;
                if (ams == FO_AMS_HAT) { vu = FO_NAME(nanmax)(vu, vmax[i]); vmax[i] = vu; }
                FO_T u = mhat / (FO_SQRT(vu + eps_root) + eps);
                if (decay == FO_DECAY_OPTAX) u = u + wd * pi;
                p[i] = pi + (-lr) * u;
            } else {
                if (ams == FO_AMS_RAW) { vu = FO_NAME(nanmax)(vu, vmax[i]); vmax[i] = vu; }
                if (form == FO_ADAM_TORCH)
                    p[i] = pi + (neg_step_size * mi) / (FO_SQRT(vu) / bc2_sqrt + eps);
                else if (form == FO_ADAM_EPSHAT)
                    p[i] = pi - (mi * step_size) / (FO_SQRT(vu) + eps);
                else
                    p[i] = pi + (neg_step_size * mi) / (FO_SQRT(vu) + eps);
            }
        }
    }
}

#define FO_ADAM_CASE(F, D, A) \
    if (form == F && decay == D && ams == A) { FO_NAME(adam_body)(a, p, g, m, v, vmax, n, F, D, A); return; }

void FO_NAME(adam_range)(const fo_adam_args *a, FO_T *p, const FO_T *g, FO_T *m, FO_T *v,
                         FO_T *vmax, fo_index n)
{
    const int form = a->form, decay = a->decay, ams = a->amsgrad;
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_NONE, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_L2, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_MUL, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_NONE, FO_AMS_RAW)
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_L2, FO_AMS_RAW)
    FO_ADAM_CASE(FO_ADAM_TORCH, FO_DECAY_MUL, FO_AMS_RAW)
    FO_ADAM_CASE(FO_ADAM_EPSHAT, FO_DECAY_NONE, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_EPSHAT, FO_DECAY_SUB, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_EPSHAT, FO_DECAY_NONE, FO_AMS_RAW)
    FO_ADAM_CASE(FO_ADAM_EPSHAT, FO_DECAY_SUB, FO_AMS_RAW)
    FO_ADAM_CASE(FO_ADAM_SKLEARN, FO_DECAY_NONE, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_OPTAX, FO_DECAY_NONE, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_OPTAX, FO_DECAY_OPTAX, FO_AMS_NONE)
    FO_ADAM_CASE(FO_ADAM_OPTAX, FO_DECAY_NONE, FO_AMS_HAT)
    FO_ADAM_CASE(FO_ADAM_OPTAX, FO_DECAY_OPTAX, FO_AMS_HAT)
    /* The binding only builds the combinations above. */
}

/* ------------------------------------------------------------------ SGD */
FO_INLINE void FO_NAME(sgd_body)(const fo_sgd_args *a, FO_T *restrict p,
                                 const FO_T *restrict g, FO_T *restrict buf, fo_index n,
                                 const int form, const int decay, const int nesterov,
                                 const int first)
{
    const FO_T lr = (FO_T)a->lr, neg_lr = (FO_T)(-a->lr), mu = (FO_T)a->momentum;
    const FO_T omd = (FO_T)a->one_minus_dampening, wd = (FO_T)a->wd;
    const FO_T sgn = a->maximize ? (FO_T)-1 : (FO_T)1;
    for (fo_index i = 0; i < n; i++) {
        FO_T gi = g[i] * sgn, pi = p[i];
        if (decay == FO_DECAY_L2) gi = gi + wd * pi;
        else if (decay == FO_DECAY_SUB) pi = pi - (pi * wd) * lr;
        if (form == FO_SGD_PLAIN) {
            p[i] = pi + neg_lr * gi;
        } else if (form == FO_SGD_TORCH) {
            FO_T b = first ? gi : buf[i] * mu + omd * gi;
            buf[i] = b;
            gi = nesterov ? gi + mu * b : b;
            p[i] = pi + neg_lr * gi;
        } else if (form == FO_SGD_TF1) {
            FO_T b = buf[i] * mu + gi;
            buf[i] = b;
            p[i] = nesterov ? pi - (gi * lr + (b * mu) * lr) : pi - b * lr;
        } else if (form == FO_SGD_KERAS) {
            FO_T b = buf[i] * mu - gi * lr;
            buf[i] = b;
            p[i] = nesterov ? pi + (b * mu - gi * lr) : pi + b;
        } else if (form == FO_SGD_OPTAX) {
            FO_T b = gi + mu * buf[i];
            buf[i] = b;
            FO_T u = nesterov ? gi + mu * b : b;
            p[i] = pi + neg_lr * u;
        } else { /* FO_SGD_SKLEARN */
            FO_T b = mu * buf[i] - lr * gi;
            buf[i] = b;
            p[i] = pi + (nesterov ? mu * b - lr * gi : b);
        }
    }
}

#define FO_SGD_CASE(F, D, N, FIRST) \
    if (form == F && decay == D && nest == N && first == FIRST) { \
        FO_NAME(sgd_body)(a, p, g, buf, n, F, D, N, FIRST); return; }

void FO_NAME(sgd_range)(const fo_sgd_args *a, FO_T *p, const FO_T *g, FO_T *buf, fo_index n)
{
    const int form = a->form, decay = a->decay, nest = a->nesterov, first = a->first_step;
    FO_SGD_CASE(FO_SGD_PLAIN, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_PLAIN, FO_DECAY_L2, 0, 0)
    FO_SGD_CASE(FO_SGD_PLAIN, FO_DECAY_SUB, 0, 0)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_NONE, 1, 0)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_NONE, 0, 1)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_NONE, 1, 1)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_L2, 0, 0)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_L2, 1, 0)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_L2, 0, 1)
    FO_SGD_CASE(FO_SGD_TORCH, FO_DECAY_L2, 1, 1)
    FO_SGD_CASE(FO_SGD_TF1, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_TF1, FO_DECAY_NONE, 1, 0)
    FO_SGD_CASE(FO_SGD_KERAS, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_KERAS, FO_DECAY_NONE, 1, 0)
    FO_SGD_CASE(FO_SGD_KERAS, FO_DECAY_SUB, 0, 0)
    FO_SGD_CASE(FO_SGD_KERAS, FO_DECAY_SUB, 1, 0)
    FO_SGD_CASE(FO_SGD_OPTAX, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_OPTAX, FO_DECAY_NONE, 1, 0)
    FO_SGD_CASE(FO_SGD_SKLEARN, FO_DECAY_NONE, 0, 0)
    FO_SGD_CASE(FO_SGD_SKLEARN, FO_DECAY_NONE, 1, 0)
}

/* ------------------------------------------------------------------ sigmoid CE
 * One element: y' = y*sa + sb (label smoothing), lw = (pw-1)*y' + 1, e = exp(-|x|),
 *   loss = ((1-y')*x + lw*max(-x,0)) + lw*log1p(e)
 *   grad = (x >= 0 ? (1-y') - pw*y'*e : (1-y')*e - pw*y') / (1+e)   (= lw*sigmoid(x) - pw*y')
 * The loss groups (1-y')*x with lw*max(-x,0) first so that they cancel exactly when
 * they should (x < 0, y' = 0), and the gradient is sigmoid(x) - y' written without the
 * cancellation of 1/(1+e) - 1 (as scikit-learn's HalfBinomialLoss does). */
FO_INLINE FO_T FO_NAME(bce_point)(FO_T x, FO_T e, FO_T y, FO_T pw, FO_T *grad, const int plain)
{
    FO_T omy = (FO_T)1 - y;
    FO_T pwy = plain ? y : pw * y;                      /* plain: pos_weight = 1 */
    FO_T mx = -x > (FO_T)0 ? -x : (FO_T)0;
    FO_T num = x >= (FO_T)0 ? omy - pwy * e : omy * e - pwy;
    /* One division serves both the gradient's 1/(1+e) and log1p's s = f/(2+f): with
     * q = 1/((1+e)(2+f)), s = f*((1+e)*q) and 1/(1+e) = (2+f)*q (two more roundings
     * each; s only enters a correction term of log1p, see fo_math.h). */
    int big = e >= (FO_T)0.5;
    FO_T f = big ? (e - (FO_T)1) * (FO_T)0.5 : e;
    FO_T d1 = (FO_T)1 + e, d2 = (FO_T)2 + f;
    FO_T q = (FO_T)1 / (d1 * d2);
    FO_T l = FO_CAT(fo_log1p_finish, FO_TS)(f, f * (d1 * q), big);
    *grad = num * (d2 * q);
    if (plain) return (omy * x + mx) + l;
    FO_T lw = (pw - (FO_T)1) * y + (FO_T)1;
    return (omy * x + lw * mx) + lw * l;
}

/* One element of a run (see bce_run): the loss goes to lk_out[k], the gradient to grad[i]. */
FO_INLINE void FO_NAME(bce_elem)(const FO_T *restrict x, const FO_T *restrict eb, const void *yv,
                                 const FO_T *restrict pwv, const FO_T *restrict wv, FO_T pws,
                                 FO_T ws, FO_T sa, FO_T sb, FO_T gs, FO_T *restrict grad,
                                 FO_T *restrict lk_out, fo_index i, fo_index k, const int ytype,
                                 const int pw_vec, const int w_vec, const int want_grad,
                                 const int plain)
{
    FO_T yk = ytype == FO_U8 ? (FO_T)((const uint8_t *)yv)[i] : ((const FO_T *)yv)[i];
    FO_T gk, lk;
    if (plain) {                          /* no weights, no pos_weight, no smoothing */
        lk = FO_NAME(bce_point)(x[i], eb[k], yk, (FO_T)1, &gk, 1);
        if (want_grad) grad[i] = gk * gs;
    } else {
        yk = yk * sa + sb;
        FO_T pwk = pw_vec ? pwv[i] : pws;
        FO_T wk = w_vec ? wv[i] : ws;
        lk = FO_NAME(bce_point)(x[i], eb[k], yk, pwk, &gk, 0) * wk;
        if (want_grad) grad[i] = (gk * wk) * gs;
    }
    lk_out[k] = lk;
}

/* A run of `len` elements starting at x; pw and w are either scalars (stride 0) or
 * vectors aligned with x (stride 1), fixed per specialisation.  Elements are computed in
 * chunks of FO_CHUNK, in two plain loops that gcc vectorises at full width: e = exp(-|x|)
 * into a buffer, then the rest; the chunk's losses go to a second buffer and element k
 * is added to acc[k % FO_LANES] in double.
 * Why two loops (measured, bench/RESULTS.md): one element is a single dependency chain
 * of ~180 cycles (exp, a division, log1p), longer than the out-of-order window holds
 * for one vector per iteration, so a one-loop body ran latency-bound (830 M elem/s float
 * on AVX-512).  Split, each loop's chain is short enough for several iterations to
 * overlap (+30-40 % on every path).  And with this much work per cache line the hardware
 * prefetchers fall behind out of cache (1e7 elements ran 25 % slower than in cache): the
 * exp loop prefetches every input and output line 4 KiB ahead.  Neither
 * changes a result. */
#define FO_CHUNK 256
#define FO_PREFETCH(p, rw) FO_PREFETCH_AT(p, 4096, rw)
FO_INLINE void FO_NAME(bce_run)(const FO_T *restrict x, const void *yv, const FO_T *restrict pwv,
                                const FO_T *restrict wv, FO_T pws, FO_T ws, FO_T sa, FO_T sb,
                                FO_T gs, FO_T *restrict grad, FO_T *restrict lout,
                                double *restrict acc, fo_index len, const int ytype,
                                const int pw_vec, const int w_vec, const int want_grad,
                                const int want_lout, const int plain)
{
    const size_t ysz = ytype == FO_U8 ? 1 : sizeof(FO_T);
    FO_T buf[FO_CHUNK], eb[FO_CHUNK];
    for (fo_index c0 = 0; c0 < len; c0 += FO_CHUNK) {
        const fo_index cn = len - c0 < FO_CHUNK ? len - c0 : FO_CHUNK;
        FO_T *lk_out = want_lout ? lout + c0 : buf;
        if (cn == FO_CHUNK) {
            for (fo_index k0 = 0; k0 < FO_CHUNK; k0 += FO_LINE_ELEMS) {
                const fo_index i = c0 + k0;
                FO_PREFETCH(x + i, 0);
                FO_PREFETCH((const char *)yv + (size_t)i * ysz, 0);
                if (w_vec) FO_PREFETCH(wv + i, 0);
                if (want_grad) FO_PREFETCH(grad + i, 1);
                if (want_lout) FO_PREFETCH(lk_out + k0, 1);
                for (fo_index k = k0; k < k0 + FO_LINE_ELEMS; k++) {
                    FO_T xk = x[c0 + k];
                    eb[k] = FO_EXPNEG(xk < (FO_T)0 ? -xk : xk);
                }
            }
        } else {
            for (fo_index k = 0; k < cn; k++) {
                FO_T xk = x[c0 + k];
                eb[k] = FO_EXPNEG(xk < (FO_T)0 ? -xk : xk);
            }
        }
        for (fo_index k = 0; k < cn; k++)
            FO_NAME(bce_elem)(x, eb, yv, pwv, wv, pws, ws, sa, sb, gs, grad, lk_out, c0 + k,
                              k, ytype, pw_vec, w_vec, want_grad, plain);
        if (!want_lout) {
            fo_index k = 0;
            for (; k + FO_LANES <= cn; k += FO_LANES)
                for (int j = 0; j < FO_LANES; j++) acc[j] += (double)buf[k + j];
            for (int j = 0; k < cn; k++, j++) acc[j] += (double)buf[k];
        }
    }
}

FO_INLINE void FO_NAME(bce_block_v)(const fo_bce_args *a, fo_index i0, fo_index i1, double *acc,
                                    const int ytype, const int pw_vec, const int w_vec,
                                    const int want_grad, const int want_lout, const int plain)
{
    const FO_T *x = (const FO_T *)a->x;
    const FO_T *pw = (const FO_T *)a->pw, *w = (const FO_T *)a->w;
    const size_t ysz = ytype == FO_U8 ? 1 : sizeof(FO_T);
    const char *y = (const char *)a->y;
    FO_T *grad = (FO_T *)a->grad, *lout = (FO_T *)a->loss;
    const FO_T pws = (FO_T)a->pw_scalar, ws = (FO_T)a->w_scalar;
    const FO_T sa = (FO_T)a->smooth_a, sb = (FO_T)a->smooth_b, gs = (FO_T)a->grad_scale;
    const int full_w = a->w_mode == FO_BC_FULL;
    const int col = pw_vec || (w_vec && !full_w);
    fo_index i = i0;
    while (i < i1) {
        /* A run ends at the end of the block or, for per-column vectors, of the row. */
        fo_index c = col ? i % a->ncols : 0;
        fo_index len = col ? a->ncols - c : i1 - i;
        if (len > i1 - i) len = i1 - i;
        FO_NAME(bce_run)(x + i, y + (size_t)i * ysz, pw_vec ? pw + c : NULL,
                         w_vec ? (full_w ? w + i : w + c) : NULL, pws, ws, sa, sb, gs,
                         want_grad ? grad + i : NULL, want_lout ? lout + i : NULL, acc, len,
                         ytype, pw_vec, w_vec, want_grad, want_lout, plain);
        i += len;
    }
}

double FO_NAME(bce_block)(const fo_bce_args *a, fo_index i0, fo_index i1)
{
    double acc[FO_LANES] = {0};
    const int yt = a->y_dtype == FO_U8 ? FO_U8 : 0;
    const int pwv = a->pw_mode == FO_BC_COL;
    const int wv = a->w_mode != FO_BC_SCALAR;
    const int gr = a->grad != NULL, lo = a->loss != NULL;
    const int plain = !pwv && !wv && a->pw_scalar == 1.0 && a->w_scalar == 1.0 &&
                      a->smooth_a == 1.0 && a->smooth_b == 0.0;
    /* Specialise on what changes the loop body. */
#define FO_BCE_V(YT, PWV, WV, GR, LO, PL)                                               \
    if (yt == YT && pwv == PWV && wv == WV && gr == GR && lo == LO && plain == PL) {    \
        FO_NAME(bce_block_v)(a, i0, i1, acc, YT, PWV, WV, GR, LO, PL); goto done; }
#define FO_BCE_V4(YT, PWV, WV, PL) \
    FO_BCE_V(YT, PWV, WV, 1, 0, PL) FO_BCE_V(YT, PWV, WV, 0, 0, PL) \
    FO_BCE_V(YT, PWV, WV, 1, 1, PL) FO_BCE_V(YT, PWV, WV, 0, 1, PL)
    FO_BCE_V4(0, 0, 0, 1) FO_BCE_V4(FO_U8, 0, 0, 1)
    FO_BCE_V4(0, 0, 0, 0) FO_BCE_V4(0, 1, 0, 0) FO_BCE_V4(0, 0, 1, 0) FO_BCE_V4(0, 1, 1, 0)
    FO_BCE_V4(FO_U8, 0, 0, 0) FO_BCE_V4(FO_U8, 1, 0, 0) FO_BCE_V4(FO_U8, 0, 1, 0)
    FO_BCE_V4(FO_U8, 1, 1, 0)
#undef FO_BCE_V4
#undef FO_BCE_V
done:;
    /* Fixed pairwise order over the lanes. */
    for (int w = FO_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* ------------------------------------------------------------------ L1 / L2
 * L1: loss = |d|*w, grad = (sgn(d)*w)*gs with sgn(0) = 0 (torch), d = pred - target.
 * L2: loss = (d*d)*w, grad = (d*w)*gs (gs already holds the 2 of the derivative). */
FO_INLINE void FO_NAME(reg_v)(const fo_reg_args *a, fo_index i0, fo_index i1, double *acc,
                              const int kind, const int has_w, const int want_grad,
                              const int want_lout)
{
    const FO_T *x = (const FO_T *)a->pred + i0, *t = (const FO_T *)a->target + i0;
    const FO_T *w = has_w ? (const FO_T *)a->w + i0 : NULL;
    FO_T *grad = want_grad ? (FO_T *)a->grad + i0 : NULL;
    FO_T *lout = want_lout ? (FO_T *)a->loss + i0 : NULL;
    const FO_T gs = (FO_T)a->grad_scale;
    const fo_index len = i1 - i0;
    fo_index i = 0;
#define FO_REG_ELEM(k, LANE)                                                          \
    do {                                                                              \
        FO_T d = x[k] - t[k];                                                         \
        FO_T wk = has_w ? w[k] : (FO_T)1;                                             \
        FO_T lk, gk;                                                                  \
        if (kind == FO_REG_L1) {                                                      \
            lk = d < (FO_T)0 ? -d : d;                                                \
            gk = d > (FO_T)0 ? (FO_T)1 : (d < (FO_T)0 ? (FO_T)-1 : d * (FO_T)0);     \
        } else {                                                                      \
            lk = d * d;                                                               \
            gk = d;                                                                   \
        }                                                                             \
        if (has_w) { lk = lk * wk; gk = gk * wk; }                                    \
        if (want_grad) grad[k] = gk * gs;                                             \
        if (want_lout) lout[k] = lk;                                                  \
        else acc[LANE] += (double)lk;                                                 \
    } while (0)
    for (; i + FO_LANES <= len; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) FO_REG_ELEM(i + j, j);
    for (int j = 0; i < len; i++, j++) FO_REG_ELEM(i, j);
#undef FO_REG_ELEM
}

double FO_NAME(reg_block)(const fo_reg_args *a, fo_index i0, fo_index i1)
{
    double acc[FO_LANES] = {0};
    const int k = a->kind, hw = a->w != NULL, gr = a->grad != NULL, lo = a->loss != NULL;
#define FO_REG_V(K, HW, GR, LO) \
    if (k == K && hw == HW && gr == GR && lo == LO) { FO_NAME(reg_v)(a, i0, i1, acc, K, HW, GR, LO); goto done; }
#define FO_REG_V4(K, HW) FO_REG_V(K, HW, 1, 0) FO_REG_V(K, HW, 0, 0) FO_REG_V(K, HW, 1, 1) FO_REG_V(K, HW, 0, 1)
    FO_REG_V4(FO_REG_L1, 0) FO_REG_V4(FO_REG_L1, 1) FO_REG_V4(FO_REG_L2, 0) FO_REG_V4(FO_REG_L2, 1)
#undef FO_REG_V4
#undef FO_REG_V
done:;
    for (int w = FO_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* ------------------------------------------------------------------ non-finite check
 * acc += g*0 stays 0 for finite g and becomes NaN at the first NaN or infinity: a
 * branch-free reduction gcc vectorises; the caller tests acc != acc. */
int FO_NAME(unscale_check_range)(FO_T *restrict g, fo_index n, FO_T scale, int do_scale)
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

/* ------------------------------------------------------------------ bandwidth probes
 * The memory access patterns of the kernels with trivial arithmetic: what the memory
 * system allows, measured in the same run as the kernels (fusedopt bench). */
void FO_NAME(stream_range)(int pattern, FO_T *restrict a, const FO_T *restrict b,
                           FO_T *restrict c, FO_T *restrict d, fo_index n)
{
    const FO_T s = (FO_T)0.5;
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
    default:                  /* FO_STREAM_LOSS: 2 reads, 1 write */
        for (fo_index i = 0; i < n; i++) c[i] = a[i] - b[i];
        break;
    }
}

/* ------------------------------------------------------------------ math (for tests) */
void FO_NAME(exp_neg_range)(const FO_T *a, FO_T *out, fo_index n)
{
    for (fo_index i = 0; i < n; i++) out[i] = FO_EXPNEG(a[i]);
}
void FO_NAME(log1p_unit_range)(const FO_T *e, FO_T *out, fo_index n)
{
    for (fo_index i = 0; i < n; i++) out[i] = FO_LOG1P(e[i]);
}

#undef FO_ADAM_CASE
#undef FO_SGD_CASE
