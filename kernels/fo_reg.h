/* fusedopt: L1 and squared-error losses with their gradient (template over FO_T).
 *
 * L1: loss = |d|*w, grad = (sgn(d)*w)*gs with sgn(0) = 0 (torch), d = pred - target.
 * L2: loss = (d*d)*w, grad = (d*w)*gs (gs already holds the 2 of the derivative).
 * Element k of a block adds its loss to lane k % FO_LANES (in double).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): one call's arrays and scalars. */
enum fo_reg_kind { FO_REG_L1 = 0, FO_REG_L2 = 1 };
typedef struct {
    int kind;
    const void *pred, *target;
    const void *w;          /* full-size weight (pred's dtype) or NULL */
    double grad_scale;      /* mean: 1/n (L2 folds its 2 in here) */
    void *grad, *loss;
} fo_reg_args;
/* Returns the sum of the elementwise losses (in double, block order). */
double fo_reg(int dtype, const fo_reg_args *a, fo_index n, int n_threads);
#else
FO_INLINE void FO_NAME(reg_loop)(const fo_reg_args *a, fo_index i0, fo_index i1, double *acc,
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
        FO_T lk, gk;                                                                  \
        if (kind == FO_REG_L1) {                                                      \
            lk = d < (FO_T)0 ? -d : d;                                                \
            gk = d > (FO_T)0 ? (FO_T)1 : (d < (FO_T)0 ? (FO_T)-1 : d * (FO_T)0);     \
        } else {                                                                      \
            lk = d * d;                                                               \
            gk = d;                                                                   \
        }                                                                             \
        if (has_w) { lk = lk * w[k]; gk = gk * w[k]; }                                \
        if (want_grad) grad[k] = gk * gs;                                             \
        if (want_lout) lout[k] = lk;                                                  \
        else acc[LANE] += (double)lk;                                                 \
    } while (0)
    for (; i + FO_LANES <= len; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) FO_REG_ELEM(i + j, j);
    for (int j = 0; i < len; i++, j++) FO_REG_ELEM(i, j);
#undef FO_REG_ELEM
}

/* Every combination of (L1/L2, weighted, gradient, elementwise loss) is compiled: the
 * bodies are short, and a run-time flag in them would stop the vectoriser. */
double FO_NAME(reg_block)(const fo_reg_args *a, fo_index i0, fo_index i1)
{
    double acc[FO_LANES] = {0};
    const int k = a->kind, hw = a->w != NULL, gr = a->grad != NULL, lo = a->loss != NULL;
#define FO_REG_V(K, HW, GR, LO) \
    if (k == K && hw == HW && gr == GR && lo == LO) { FO_NAME(reg_loop)(a, i0, i1, acc, K, HW, GR, LO); goto done; }
#define FO_REG_V4(K, HW) FO_REG_V(K, HW, 1, 0) FO_REG_V(K, HW, 0, 0) FO_REG_V(K, HW, 1, 1) FO_REG_V(K, HW, 0, 1)
    FO_REG_V4(FO_REG_L1, 0) FO_REG_V4(FO_REG_L1, 1) FO_REG_V4(FO_REG_L2, 0) FO_REG_V4(FO_REG_L2, 1)
#undef FO_REG_V4
#undef FO_REG_V
    FO_NAME(reg_loop)(a, i0, i1, acc, k, hw, gr, lo);
done:
    FO_FOLD_LANES(acc);
    return acc[0];
}
#endif
