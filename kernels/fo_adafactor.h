/* fusedopt: the Adafactor family (template over FO_T, see fo_common.h).
 *
 * Shazeer & Stern 2018, as torch.optim.Adafactor computes it (_single_tensor_adafactor):
 * per tensor, at step t, with w = t**beta2_decay (the lerp weight, 1 - beta2_t),
 * rho = min(lr, 1/sqrt(t)) and g = g*sign (maximize, clipping):
 *     alpha = max(eps2, ||p|| / sqrt(numel)) * rho       (||p|| before the decay)
 *     p = p*(1 - lr*wd)                                  (weight_decay != 0)
 * A tensor of two or more dimensions is factored over its last two: as B matrices R x C,
 *     row_var = lerp(row_var, ||g_r||^2 / C, w)   per row r
 *     col_var = lerp(col_var, ||g_c||^2 / R, w)   per column c (of each matrix)
 *     V = (row_var[r]*col_var[c]) / max(mean(row_var), eps1)
 * any other tensor keeps a full variance,  V = variance = lerp(variance, g*g, w).  Then
 *     U = (1/sqrt(max(V, eps1*eps1))) * g;  denom = max(1, ||U|| / (sqrt(numel)*d))
 *     p = p + (-alpha/denom)*U
 * each value rounded to the element type as torch rounds it (torch's lerp, its clamp
 * that keeps NaN; Python's max/min for the scalars, whose norms torch reads as the
 * element type's value).
 *
 * Three passes over a factored tensor (the statistics need whole rows and columns, U's
 * norm needs the statistics, the update needs U's norm): read g (row and column sums of
 * g*g), read p and g (||U||, ||p||), read p and g and write p: 24 bytes per float32
 * element.  A vector takes two: read p, g, variance, write variance (||p||, ||U||), then
 * read p, g, variance, write p: 32 bytes per element.
 * optax (FO_AF_OPTAX) keeps Keras' statistics (g*g + eps1 averaged, b2*old + (1-b2)*mean)
 * over any two axes (fo_af_dims: rows of nq*nm*ns elements; a row's nq*ns statistics are
 * means over m), divides the statistic of the second largest axis by its mean, takes
 * U = (g*f1)*f2 with f = 1/sqrt of each, and p - ((((U/den)*lr)*prms) + wd*p): the same
 * three passes, walking the tensor in memory order in runs of nm (ns == 1) or ns
 * elements, whose lanes take the place of a row's.
 * Every sum is in double, in an order fixed by the shape alone (fo_driver.c cuts a
 * tensor into units; inside a unit, element c of a row, or i of a vector block, goes to
 * lane c % FO_LANES, lanes folded pairwise; units are added in order), so results do not
 * depend on the thread count or the CPU path; fusedopt.reference follows the same order.
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the step's scalars (Python floats as torch
 * computes them; the kernels round them to the element type where torch does). */
enum fo_af_form { FO_AF_TORCH = 0, FO_AF_KERAS = 1, FO_AF_OPTAX = 2 };

typedef struct {
    int form;                            /* fo_af_form */
    int maximize, decay;                 /* decay: FO_DECAY_NONE, FO_DECAY_MUL (torch),
                                          * FO_DECAY_SUB (Keras: p - (p*wd)*lr first) or
                                          * FO_DECAY_OPTAX (u + wd*p, after the scaling) */
    double grad_scale;                   /* the clip coefficient (1: none) */
    double w;                            /* torch: t**beta2_decay */
    double beta2_t, one_minus_beta2_t;   /* Keras, optax: 1 - t**beta2_decay and its
                                          * complement */
    double eps1, eps1_sq, eps2;          /* eps1_sq: eps1*eps1 (a Python float) */
    double rho;                          /* min(lr, 1/sqrt(t)) (optax: 1) */
    double decay_factor;                 /* torch: 1 - lr*wd */
    double wd, lr;                       /* Keras' decay (lr: its float32 variable);
                                          * optax's decay rate and learning rate */
    double d;
} fo_adafactor_args;

/* A tensor's shape as the kernels see it: nb x nr x nq x nm x ns elements, factored over
 * the nr and nm axes (torch and Keras: the last two, nq = ns = 1; optax: its two largest
 * axes, wherever they are).  Each of the nb matrices has nr rows of nc = nq*nm*ns
 * elements; a row's statistics (row_var, nq*ns per row) are means over m, a column's
 * (col_var, nc per matrix) means over the rows.  norm_cols (optax, when the nm axis is
 * the larger): the column statistics are the ones divided by their mean.  A vector
 * (unfactored) tensor is nb = nr = nq = ns = 1, nm = its size. */
typedef struct { fo_index nb, nr, nq, nm, ns; int norm_cols; } fo_af_dims;

/* One Adafactor step over a list of tensors, in one call.  Tensor k has the shape dims[k]
 * at ps[k] (its gradient at gs[k]); factored (vars[k] NULL) with rows[k] (nb*nr*nq*ns
 * elements) and cols[k] (nb*nc), else with its full variance vars[k].  `scratch` holds
 * at least the largest fo_adafactor_scratch() of the factored tensors. */
void fo_adafactor(int dtype, const fo_adafactor_args *a, int ntensors, void *const *ps,
                  const void *const *gs, void *const *rows, void *const *cols,
                  void *const *vars, const fo_af_dims *dims, double *scratch,
                  int n_threads);
/* The doubles of scratch a factored tensor of shape *d needs. */
fo_index fo_adafactor_scratch(const fo_af_dims *d);
#else
#include <math.h>

/* keras: the statistics' Keras (and optax) form; sub: Keras' decay; add: optax's */
typedef struct { FO_T sgn, w, omw, eps1_sq, e1, b2, omb2, wd, lr; int lerp_lo, keras, sub, add; }
    FO_NAME(af_k);

FO_INLINE FO_NAME(af_k) FO_NAME(af_consts)(const fo_adafactor_args *a)
{
    FO_NAME(af_k) k;
    k.sgn = FO_GRAD_FACTOR(a);
    k.w = (FO_T)a->w;
    k.omw = (FO_T)1 - k.w;
    k.lerp_lo = k.w < (FO_T)0.5;
    k.eps1_sq = (FO_T)a->eps1_sq;
    k.keras = a->form != FO_AF_TORCH;
    k.e1 = (FO_T)a->eps1;
    k.b2 = (FO_T)a->beta2_t;
    k.omb2 = (FO_T)a->one_minus_beta2_t;
    k.sub = a->decay == FO_DECAY_SUB;
    k.add = a->decay == FO_DECAY_OPTAX;
    k.wd = (FO_T)a->wd;
    k.lr = (FO_T)a->lr;
    return k;
}

/* Keras: p after its weight decay (the value its RMS and update read) */
FO_INLINE FO_T FO_NAME(af_p)(const FO_NAME(af_k) *k, FO_T p)
{
    return k->sub ? p - (p * k->wd) * k->lr : p;
}

/* The square a statistic averages: torch g*g exactly (in double), Keras and optax g*g +
 * eps1 in the element type. */
FO_INLINE double FO_NAME(af_sq)(const FO_NAME(af_k) *k, FO_T gv, const int keras)
{
    return keras ? (double)(gv * gv + k->e1) : (double)gv * (double)gv;
}

/* torch's lerp(a, b, w): |w| < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w) */
FO_INLINE FO_T FO_NAME(af_lerp)(const FO_NAME(af_k) *k, FO_T a, FO_T b)
{
    return k->lerp_lo ? a + k->w * (b - a) : b - (b - a) * k->omw;
}

/* clamp(v, min=e), NaN kept (torch's clamp) */
FO_INLINE FO_T FO_NAME(af_clamp)(FO_T v, FO_T e) { return v < e ? e : v; }

/* torch's rsqrt(v) is 1/sqrt(v) */
FO_INLINE FO_T FO_NAME(af_rsqrt)(FO_T v) { return (FO_T)1 / FO_SQRT(v); }

/* optax's update of one element: p - ((((U/den)*lr)*prms) + wd*p) (the decay term with
 * weight_decay_rate only). */
#define FO_AF_OSTEP(k, y, u, den, prms)                                                 \
    ((k).add ? (y) - (((((u) / (den)) * (k).lr) * (prms)) + (k).wd * (y))             \
             : (y) - ((((u) / (den)) * (k).lr) * (prms)))

/* A sum's norm squared as torch has it: the norm rounded, squared, divided by n. */
FO_INLINE FO_T FO_NAME(af_mean_sq)(double sum, fo_index n)
{
    const FO_T nrm = (FO_T)sqrt(sum);
    return (nrm * nrm) / (FO_T)n;
}

/* A row or column statistic from its sum of squares over n: torch's lerp to the mean
 * square, Keras' (and optax's) beta2_t*old + (1 - beta2_t)*mean (the sum rounded, then
 * / n). */
FO_INLINE FO_T FO_NAME(af_stat)(const FO_NAME(af_k) *k, FO_T old, double sum, fo_index n)
{
    if (k->keras)
        return k->b2 * old + k->omb2 * ((FO_T)sum / (FO_T)n);
    return FO_NAME(af_lerp)(k, old, FO_NAME(af_mean_sq)(sum, n));
}

/* The lane accumulators of a unit live in locals while it runs (out of memory that
 * might alias the arrays it writes, so they stay in registers): copied in, copied out,
 * the same additions in the same order. */
#define FO_AF_LANES_IN(loc, acc) double loc[FO_LANES]; \
    for (int j_ = 0; j_ < FO_LANES; j_++) loc[j_] = (acc)[j_]
#define FO_AF_LANES_OUT(loc, acc) for (int j_ = 0; j_ < FO_LANES; j_++) (acc)[j_] = loc[j_]

/* Element c of a row, lane j = c % FO_LANES: a loop over whole lanes, then the tail. */
#define FO_AF_COLS(cols, ...)                                                           \
    do {                                                                                \
        const fo_index full_ = (cols) - (cols) % FO_LANES;                              \
        for (fo_index c0_ = 0; c0_ < full_; c0_ += FO_LANES)                            \
            for (int j = 0; j < FO_LANES; j++) { const fo_index c = c0_ + j; __VA_ARGS__; } \
        for (fo_index c = full_, j = 0; c < (cols); c++, j++) { __VA_ARGS__; }          \
    } while (0)

/* Rows [0, rows) of one matrix (cols wide): each row's sum of squares updates its
 * row_var; colsum[c] += the square, row after row (the caller zeroes it).  Four rows at
 * a time, so that colsum is loaded and stored once per four rows: the same additions in
 * the same order. */
FO_INLINE void FO_NAME(af_rows_loop)(const FO_NAME(af_k) *kp, const FO_T *restrict g,
                                     FO_T *restrict row_var, double *restrict colsum,
                                     fo_index rows, fo_index cols, const int keras)
{
    const FO_NAME(af_k) k = *kp;
    fo_index r = 0;
    for (; r + 4 <= rows; r += 4) {
        const FO_T *restrict g0 = g + r * cols, *restrict g1 = g0 + cols;
        const FO_T *restrict g2 = g1 + cols, *restrict g3 = g2 + cols;
        double s0[FO_LANES] = {0}, s1[FO_LANES] = {0}, s2[FO_LANES] = {0},
               s3[FO_LANES] = {0};
        FO_AF_COLS(cols, {
            const double x0 = FO_NAME(af_sq)(&k, g0[c] * k.sgn, keras);
            const double x1 = FO_NAME(af_sq)(&k, g1[c] * k.sgn, keras);
            const double x2 = FO_NAME(af_sq)(&k, g2[c] * k.sgn, keras);
            const double x3 = FO_NAME(af_sq)(&k, g3[c] * k.sgn, keras);
            s0[j] += x0; s1[j] += x1; s2[j] += x2; s3[j] += x3;
            colsum[c] = (((colsum[c] + x0) + x1) + x2) + x3;
        });
        FO_FOLD_LANES(s0); FO_FOLD_LANES(s1); FO_FOLD_LANES(s2); FO_FOLD_LANES(s3);
        row_var[r] = FO_NAME(af_stat)(&k, row_var[r], s0[0], cols);
        row_var[r + 1] = FO_NAME(af_stat)(&k, row_var[r + 1], s1[0], cols);
        row_var[r + 2] = FO_NAME(af_stat)(&k, row_var[r + 2], s2[0], cols);
        row_var[r + 3] = FO_NAME(af_stat)(&k, row_var[r + 3], s3[0], cols);
    }
    for (; r < rows; r++) {
        const FO_T *restrict gr = g + r * cols;
        double s0[FO_LANES] = {0};
        FO_AF_COLS(cols, {
            const double x = FO_NAME(af_sq)(&k, gr[c] * k.sgn, keras);
            s0[j] += x;
            colsum[c] += x;
        });
        FO_FOLD_LANES(s0);
        row_var[r] = FO_NAME(af_stat)(&k, row_var[r], s0[0], cols);
    }
}

void FO_NAME(af_rows)(const fo_adafactor_args *a, const FO_T *g, FO_T *row_var,
                      double *colsum, fo_index rows, fo_index cols)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    if (k.keras)
        FO_NAME(af_rows_loop)(&k, g, row_var, colsum, rows, cols, 1);
    else
        FO_NAME(af_rows_loop)(&k, g, row_var, colsum, rows, cols, 0);
}

/* A matrix's column sums (over its `rows` rows) update its col_var. */
void FO_NAME(af_cols)(const fo_adafactor_args *a, const double *colsum, FO_T *col_var,
                      fo_index cols, fo_index rows)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    for (fo_index c = 0; c < cols; c++)
        col_var[c] = FO_NAME(af_stat)(&k, col_var[c], colsum[c], rows);
}

/* The mean of row_var, its sum in double in row order: torch's max(sum/rows rounded,
 * eps1); Keras' sum rounded, divided by rows in FO_T, not clamped. */
double FO_NAME(af_rmean)(const fo_adafactor_args *a, const FO_T *row_var, fo_index rows)
{
    double s = 0.0;
    for (fo_index r = 0; r < rows; r++) s += (double)row_var[r];
    if (a->form != FO_AF_TORCH)
        return (double)((FO_T)s / (FO_T)rows);
    return (double)FO_NAME(af_clamp)((FO_T)(s / (double)rows), (FO_T)a->eps1);
}

/* A matrix's column factors: binv[c] = 1/sqrt(col_var[c]); bounds = {min(col_var),
 * max(col_var)}, both NaN when any is NaN (cols >= 1). */
void FO_NAME(af_colinv)(const FO_T *col_var, FO_T *binv, fo_index cols, double *bounds)
{
    FO_T lo = col_var[0], hi = col_var[0];
    for (fo_index c = 0; c < cols; c++) {
        const FO_T v = col_var[c];
        binv[c] = FO_NAME(af_rsqrt)(v);
        if (v < lo || v != v) lo = v;           /* (a NaN stays) */
        if (v > hi || v != v) hi = v;
    }
    bounds[0] = (double)lo;
    bounds[1] = lo != lo ? (double)lo : (double)hi;
}

/* U of a factored matrix's row: the element type's value of torch's
 *     rsqrt(clamp(row_var*col_var / rmc, eps1*eps1)) * g
 * computed as g * ((1/sqrt(row_var/rmc)) * (1/sqrt(col_var))) when no element of the
 * row is clamped (q*min(col_var) >= eps1^2 with q = row_var/rmc; rounding is monotonic)
 * and none overflows (row_var*max(col_var)/rmc finite: torch's rsqrt of inf is 0),
 * two multiplications per element instead of a division, a square root and a division,
 * within a few ulps of torch's rounding of the same value (torch's float32 row and
 * column norms are further from the exact ones); a row with a clamped or NaN element
 * takes torch's formula itself.  Runs body with u set for element c (lane j). */
#define FO_AF_ROW(k, rv, rmc, cvlo, cvhi, col_var, binv, gr, cols, body)                 \
    do {                                                                                \
        const FO_T q_ = (rv) / (rmc), top_ = ((rv) * (cvhi)) / (rmc);                   \
        if ((k).keras) {      /* Keras: g / sqrt((row_var/mean)*col_var) */             \
            FO_AF_COLS(cols, const FO_T u = ((gr)[c] * (k).sgn) / FO_SQRT(q_ * (col_var)[c]); \
                       body);                                                           \
        } else if (q_ * (cvlo) >= (k).eps1_sq && top_ - top_ == 0) {                    \
            const FO_T ar_ = FO_NAME(af_rsqrt)(q_);                                     \
            FO_AF_COLS(cols, const FO_T u = ((gr)[c] * (k).sgn) * (ar_ * (binv)[c]); body); \
        } else {                                                                        \
            FO_AF_COLS(cols, const FO_T u = FO_NAME(af_rsqrt)(FO_NAME(af_clamp)(        \
                           ((rv) * (col_var)[c]) / (rmc), (k).eps1_sq)) * ((gr)[c] * (k).sgn); \
                       body);                                                           \
        }                                                                               \
    } while (0)

/* uacc[c % FO_LANES] += U*U and pacc[c % FO_LANES] += p*p (Keras: p after its decay)
 * over rows [0, rows) of one factored matrix. */
void FO_NAME(af_unorm)(const fo_adafactor_args *a, const FO_T *restrict p,
                       const FO_T *restrict g, const FO_T *restrict row_var,
                       const FO_T *restrict col_var, const FO_T *restrict binv, double rmc,
                       const double *cvb, fo_index rows, fo_index cols, double *restrict uacc,
                       double *restrict pacc)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const FO_T m = (FO_T)rmc, lo = (FO_T)cvb[0], hi = (FO_T)cvb[1];
    FO_AF_LANES_IN(ul, uacc);
    FO_AF_LANES_IN(pl, pacc);
    for (fo_index r = 0; r < rows; r++) {
        const FO_T *restrict gr = g + r * cols, *restrict pr = p + r * cols;
        FO_AF_ROW(k, row_var[r], m, lo, hi, col_var, binv, gr, cols,
                  const double y = (double)FO_NAME(af_p)(&k, pr[c]);
                  ul[j] += (double)u * (double)u; pl[j] += y * y);
    }
    FO_AF_LANES_OUT(ul, uacc);
    FO_AF_LANES_OUT(pl, pacc);
}

/* The update of rows [0, rows) of one factored matrix: torch p = p*decay_factor (with
 * weight decay), then p + coef*U; Keras p = p - (p*wd)*lr, then p - alpha*(U/coef). */
void FO_NAME(af_apply)(const fo_adafactor_args *a, FO_T *p, const FO_T *g,
                       const FO_T *row_var, const FO_T *col_var, const FO_T *binv,
                       double rmc, const double *cvb, fo_index rows, fo_index cols, double coef,
                       double alpha)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const FO_T m = (FO_T)rmc, lo = (FO_T)cvb[0], hi = (FO_T)cvb[1], cf = (FO_T)coef;
    const FO_T df = (FO_T)a->decay_factor;
    const FO_T al = (FO_T)alpha;
    const int decay = a->decay == FO_DECAY_MUL;
    for (fo_index r = 0; r < rows; r++) {
        FO_T *restrict pr = p + r * cols;
        const FO_T *restrict gr = g + r * cols;
        if (k.keras)
            FO_AF_ROW(k, row_var[r], m, lo, hi, col_var, binv, gr, cols,
                      pr[c] = FO_NAME(af_p)(&k, pr[c]) - al * (u / cf));
        else if (decay)
            FO_AF_ROW(k, row_var[r], m, lo, hi, col_var, binv, gr, cols,
                      pr[c] = pr[c] * df + cf * u);
        else
            FO_AF_ROW(k, row_var[r], m, lo, hi, col_var, binv, gr, cols, pr[c] = pr[c] + cf * u);
    }
}

/* A block of a vector (unfactored) tensor: variance = lerp(variance, g*g, w);
 * pacc[lane] += p*p, uacc[lane] += U*U. */
void FO_NAME(af_vec)(const fo_adafactor_args *a, const FO_T *restrict p,
                     const FO_T *restrict g, FO_T *restrict v, fo_index n,
                     double *restrict pacc, double *restrict uacc)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    fo_index i = 0;
    FO_AF_LANES_IN(pl, pacc);
    FO_AF_LANES_IN(ul, uacc);
#define FO_AF_VEC(i, j, keras)                                                          \
    do {                                                                                \
        const FO_T gi = g[i] * k.sgn;                                                   \
        FO_T vi;                                                                        \
        double u, y;                                                                    \
        if (keras) {          /* v = b2*v + (1 - b2)*(g*g + eps1); U = g/sqrt(v) */     \
            vi = k.b2 * v[i] + k.omb2 * (gi * gi + k.e1);                               \
            u = (double)(keras == 2 ? gi * FO_NAME(af_rsqrt)(vi) : gi / FO_SQRT(vi));   \
            y = (double)FO_NAME(af_p)(&k, p[i]);                                        \
        } else {                                                                        \
            vi = FO_NAME(af_lerp)(&k, v[i], gi * gi);                                   \
            u = (double)(FO_NAME(af_rsqrt)(FO_NAME(af_clamp)(vi, k.eps1_sq)) * gi);     \
            y = (double)p[i];                                                           \
        }                                                                               \
        v[i] = vi;                                                                      \
        pl[j] += y * y;                                                                 \
        ul[j] += u * u;                                                                 \
    } while (0)
    if (a->form == FO_AF_OPTAX) {     /* (U = g * v**-0.5) */
        for (; i + FO_LANES <= n; i += FO_LANES)
            for (int j = 0; j < FO_LANES; j++) FO_AF_VEC(i + j, j, 2);
        for (int j = 0; i < n; i++, j++) FO_AF_VEC(i, j, 2);
    } else if (k.keras) {
        for (; i + FO_LANES <= n; i += FO_LANES)
            for (int j = 0; j < FO_LANES; j++) FO_AF_VEC(i + j, j, 1);
        for (int j = 0; i < n; i++, j++) FO_AF_VEC(i, j, 1);
    } else {
        for (; i + FO_LANES <= n; i += FO_LANES)
            for (int j = 0; j < FO_LANES; j++) FO_AF_VEC(i + j, j, 0);
        for (int j = 0; i < n; i++, j++) FO_AF_VEC(i, j, 0);
    }
#undef FO_AF_VEC
    FO_AF_LANES_OUT(pl, pacc);
    FO_AF_LANES_OUT(ul, uacc);
}

/* The update of a vector block (its variance already updated by af_vec); coef and alpha
 * as af_apply's. */
void FO_NAME(af_vec_apply)(const fo_adafactor_args *a, FO_T *p, const FO_T *g,
                           const FO_T *v, fo_index n, double coef, double alpha)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const FO_T cf = (FO_T)coef, df = (FO_T)a->decay_factor, al = (FO_T)alpha;
    const int decay = a->decay == FO_DECAY_MUL;
    if (a->form == FO_AF_OPTAX) {     /* coef: the clipping denominator, alpha: prms */
        for (fo_index i = 0; i < n; i++)
            p[i] = FO_AF_OSTEP(k, p[i], (g[i] * k.sgn) * FO_NAME(af_rsqrt)(v[i]), cf, al);
        return;
    }
    if (k.keras) {
        for (fo_index i = 0; i < n; i++)
            p[i] = FO_NAME(af_p)(&k, p[i]) - al * (((g[i] * k.sgn) / FO_SQRT(v[i])) / cf);
        return;
    }
    for (fo_index i = 0; i < n; i++) {
        const FO_T gi = g[i] * k.sgn, pi = decay ? p[i] * df : p[i];
        p[i] = pi + cf * (FO_NAME(af_rsqrt)(FO_NAME(af_clamp)(v[i], k.eps1_sq)) * gi);
    }
}
/* ---- optax's factored statistics over any two axes (fo_af_dims: rows of nq*nm*ns
 * elements, element (q, m, s) of a row at (q*nm + m)*ns + s). */

/* Rows [0, rows) of one matrix: each row's nq*ns statistics (means over m of g*g + eps1)
 * update its row_var; colsum[c] += the square, row after row.  With ns == 1 statistic q
 * sums its run of nm elements in lanes (m % FO_LANES, folded); else statistic (q, s) sums
 * over m in order, in acc (nq*ns doubles). */
void FO_NAME(af_rows_gen)(const fo_adafactor_args *a, const FO_T *g, FO_T *row_var,
                          double *colsum, double *acc, fo_index rows, fo_index nq,
                          fo_index nm, fo_index ns)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const fo_index rs = nq * ns, cols = rs * nm;
    for (fo_index r = 0; r < rows; r++) {
        const FO_T *restrict gr = g + r * cols;
        FO_T *restrict rv = row_var + r * rs;
        if (ns == 1) {
            for (fo_index q = 0; q < nq; q++) {
                const FO_T *restrict gq = gr + q * nm;
                double *restrict cq = colsum + q * nm;
                double s0[FO_LANES] = {0};
                FO_AF_COLS(nm, {
                    const double x = FO_NAME(af_sq)(&k, gq[c] * k.sgn, 1);
                    s0[j] += x;
                    cq[c] += x;
                });
                FO_FOLD_LANES(s0);
                rv[q] = FO_NAME(af_stat)(&k, rv[q], s0[0], nm);
            }
            continue;
        }
        for (fo_index i = 0; i < rs; i++) acc[i] = 0.0;
        for (fo_index q = 0; q < nq; q++)
            for (fo_index m = 0; m < nm; m++) {
                const fo_index o = (q * nm + m) * ns;
                double *restrict aq = acc + q * ns;
                for (fo_index c = 0; c < ns; c++) {
                    const double x = FO_NAME(af_sq)(&k, gr[o + c] * k.sgn, 1);
                    aq[c] += x;
                    colsum[o + c] += x;
                }
            }
        for (fo_index i = 0; i < rs; i++) rv[i] = FO_NAME(af_stat)(&k, rv[i], acc[i], nm);
    }
}

/* One matrix's factors as optax has them: the statistic of the second largest axis
 * divided by its mean over that axis (per (q, s): row_var over the rows, or with
 * norm_cols col_var over m; the sum in double in order, rounded, divided by the count),
 * then rf = (row statistic)**-0.5 and cf = (column statistic)**-0.5, as 1/sqrt. */
void FO_NAME(af_ofactors)(const FO_T *row_var, const FO_T *col_var, FO_T *rf, FO_T *cf,
                          fo_index rows, fo_index nq, fo_index nm, fo_index ns,
                          int norm_cols)
{
    const fo_index rs = nq * ns, cols = rs * nm;
    for (fo_index i = 0; i < rows * rs; i++) rf[i] = row_var[i];
    for (fo_index c = 0; c < cols; c++) cf[c] = col_var[c];
    FO_T *x = norm_cols ? cf : rf;
    const fo_index n = norm_cols ? nm : rows, stride = norm_cols ? ns : rs;
    for (fo_index q = 0; q < nq; q++)
        for (fo_index c = 0; c < ns; c++) {
            FO_T *restrict xq = x + (norm_cols ? q * nm * ns : q * ns) + c;
            double sum = 0.0;
            for (fo_index i = 0; i < n; i++) sum += (double)xq[i * stride];
            const FO_T mean = (FO_T)sum / (FO_T)n;
            for (fo_index i = 0; i < n; i++) xq[i * stride] = xq[i * stride] / mean;
        }
    for (fo_index i = 0; i < rows * rs; i++) rf[i] = FO_NAME(af_rsqrt)(rf[i]);
    for (fo_index c = 0; c < cols; c++) cf[c] = FO_NAME(af_rsqrt)(cf[c]);
}

/* optax's U over one row (rfr: its nq*ns row factors): (g*f1)*f2, f1 the factor of the
 * normalized statistic.  With ns == 1 the row runs as nq runs of nm elements (rfr[q]
 * fixed), else as nq*nm runs of ns elements; element e of the row, lane j = its index in
 * the run % FO_LANES.  Runs body with u and e set. */
#define FO_AF_OROW(k, rfr, cf, gr, nq, nm, ns, norm_cols, body)                         \
    do {                                                                                \
        if ((ns) == 1) {                                                                \
            for (fo_index q_ = 0; q_ < (nq); q_++) {                                    \
                const fo_index o_ = q_ * (nm);                                          \
                const FO_T fr_ = (rfr)[q_];                                             \
                const FO_T *restrict cq_ = (cf) + o_, *restrict gq_ = (gr) + o_;        \
                if (norm_cols)                                                          \
                    FO_AF_COLS(nm, const fo_index e = o_ + c;                           \
                               const FO_T u = ((gq_[c] * (k).sgn) * cq_[c]) * fr_; body); \
                else                                                                    \
                    FO_AF_COLS(nm, const fo_index e = o_ + c;                           \
                               const FO_T u = ((gq_[c] * (k).sgn) * fr_) * cq_[c]; body); \
            }                                                                           \
        } else {                                                                        \
            for (fo_index q_ = 0; q_ < (nq); q_++)                                      \
                for (fo_index m_ = 0; m_ < (nm); m_++) {                                \
                    const fo_index o_ = (q_ * (nm) + m_) * (ns);                        \
                    const FO_T *restrict rq_ = (rfr) + q_ * (ns);                       \
                    const FO_T *restrict cq_ = (cf) + o_, *restrict gq_ = (gr) + o_;    \
                    if (norm_cols)                                                      \
                        FO_AF_COLS(ns, const fo_index e = o_ + c;                       \
                                   const FO_T u = ((gq_[c] * (k).sgn) * cq_[c]) * rq_[c]; body); \
                    else                                                                \
                        FO_AF_COLS(ns, const fo_index e = o_ + c;                       \
                                   const FO_T u = ((gq_[c] * (k).sgn) * rq_[c]) * cq_[c]; body); \
                }                                                                       \
        }                                                                               \
    } while (0)

/* uacc[lane] += U*U, pacc[lane] += p*p over rows [0, rows) of one optax matrix (rf: the
 * rows' factors, cf: the matrix's). */
void FO_NAME(af_onorm)(const fo_adafactor_args *a, const FO_T *restrict p,
                       const FO_T *restrict g, const FO_T *restrict rf,
                       const FO_T *restrict cf, fo_index rows, fo_index nq, fo_index nm,
                       fo_index ns, int norm_cols, double *restrict uacc,
                       double *restrict pacc)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const fo_index rs = nq * ns, cols = rs * nm;
    FO_AF_LANES_IN(ul, uacc);
    FO_AF_LANES_IN(pl, pacc);
    for (fo_index r = 0; r < rows; r++) {
        const FO_T *restrict gr = g + r * cols, *restrict pr = p + r * cols;
        FO_AF_OROW(k, rf + r * rs, cf, gr, nq, nm, ns, norm_cols,
                   const double y = (double)pr[e];
                   ul[j] += (double)u * (double)u; pl[j] += y * y);
    }
    FO_AF_LANES_OUT(ul, uacc);
    FO_AF_LANES_OUT(pl, pacc);
}

/* The update of rows [0, rows) of one optax matrix: den the clipping denominator, prms
 * the parameter's RMS (at least eps2). */
void FO_NAME(af_oapply)(const fo_adafactor_args *a, FO_T *p, const FO_T *g, const FO_T *rf,
                        const FO_T *cf, fo_index rows, fo_index nq, fo_index nm,
                        fo_index ns, int norm_cols, double den, double prms)
{
    const FO_NAME(af_k) k = FO_NAME(af_consts)(a);
    const fo_index rs = nq * ns, cols = rs * nm;
    const FO_T dn = (FO_T)den, pm = (FO_T)prms;
    for (fo_index r = 0; r < rows; r++) {
        FO_T *restrict pr = p + r * cols;
        const FO_T *restrict gr = g + r * cols;
        FO_AF_OROW(k, rf + r * rs, cf, gr, nq, nm, ns, norm_cols,
                   pr[e] = FO_AF_OSTEP(k, pr[e], u, dn, pm));
    }
}
#undef FO_AF_OROW
#undef FO_AF_OSTEP
#undef FO_AF_ROW
#undef FO_AF_COLS
#undef FO_AF_LANES_IN
#undef FO_AF_LANES_OUT
#endif
