/* fusedopt: LAMB (template over FO_T, see fo_common.h).
 *
 * You et al. 2020, as optax.lamb computes it (scale_by_adam, add_decayed_weights,
 * scale_by_trust_ratio, scale_by_learning_rate), or Keras' Lamb: per tensor, with the
 * moments of fo_adam.h (optax's form, or Keras' "m += (g - m)*(1 - b1)" form):
 *     u = (m/bc1) / (sqrt(v/bc2 + eps_root) + eps)     (+ wd*p: optax's weight decay)
 *     r = ||p|| / ||u||, 1 when either norm is 0 (optax; Keras also when one is NaN)
 *     optax:  p = p + (u*r)*(-lr)
 *     Keras:  p = p - (p*wd)*lr first (its norm is of that p), then p - (r*lr)*u
 * Two passes (the trust ratio needs both norms before any element moves): read p, g, m,
 * v and write m, v (the norms), then read p, m, v and write p, u recomputed from m and v:
 * 40 bytes per float32 element.  The sums are in double, each block's lanes folded
 * pairwise, blocks added in order (fo_driver.c), so results do not depend on the thread
 * count or the CPU path; fusedopt.reference follows the same order.
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it). */
enum fo_lamb_trust { FO_LAMB_OPTAX = 0, FO_LAMB_KERAS = 1 };

typedef struct {
    fo_adam_args adam;   /* the moments and u: form FO_ADAM_OPTAX (optax's moments) or
                          * FO_ADAM_EPSHAT (Keras'), bc1, bc2, eps, eps_root; decay
                          * FO_DECAY_OPTAX (wd*p in u) or FO_DECAY_SUB (Keras' first) */
    int trust;           /* fo_lamb_trust */
} fo_lamb_args;

/* One LAMB step over a list of tensors (each its own trust ratio), in one call. */
void fo_lamb(int dtype, const fo_lamb_args *a, int ntensors, void *const *ps,
             const void *const *gs, void *const *ms, void *const *vs, const fo_index *ns,
             int n_threads);
#else

/* p after Keras' weight decay (p unchanged otherwise) */
FO_INLINE FO_T FO_NAME(lamb_p)(const FO_NAME(adam_k) *k, FO_T p, const int decay)
{
    return decay == FO_DECAY_SUB ? p - (p * k->wd) * k->lr : p;
}

/* u from the new moments (and p, for optax's weight decay) */
FO_INLINE FO_T FO_NAME(lamb_u)(const FO_NAME(adam_k) *k, FO_T p, FO_T m, FO_T v,
                               const int decay)
{
    FO_T u = (m / k->bc1) / (FO_SQRT(v / k->bc2 + k->eps_root) + k->eps);
    return decay == FO_DECAY_OPTAX ? u + k->wd * p : u;
}

/* A block of n elements: the moments updated; *psum = sum of p*p (p after Keras'
 * decay), *usum = sum of u*u (lanes folded). */
FO_INLINE void FO_NAME(lamb_stats_loop)(const fo_lamb_args *a, const FO_T *restrict p,
                                        const FO_T *restrict g, FO_T *restrict m,
                                        FO_T *restrict v, fo_index n, double *psum,
                                        double *usum, const int form, const int decay)
{
    const FO_NAME(adam_k) k = FO_NAME(adam_consts)(&a->adam);
    double pl[FO_LANES] = {0}, ul[FO_LANES] = {0};
#define FO_LAMB_STATS(i, j)                                                             \
    do {                                                                                \
        FO_T mi = m[i], vi = v[i];                                                      \
        const FO_T pi = FO_NAME(lamb_p)(&k, p[i], decay);                               \
        FO_NAME(adam_moments)(&k, g[i] * k.sgn, &mi, &vi, form);                        \
        m[i] = mi;                                                                      \
        v[i] = vi;                                                                      \
        const double u = (double)FO_NAME(lamb_u)(&k, p[i], mi, vi, decay);              \
        pl[j] += (double)pi * (double)pi;                                               \
        ul[j] += u * u;                                                                 \
    } while (0)
    fo_index i = 0;
    for (; i + FO_LANES <= n; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) FO_LAMB_STATS(i + j, j);
    for (int j = 0; i < n; i++, j++) FO_LAMB_STATS(i, j);
#undef FO_LAMB_STATS
    FO_FOLD_LANES(pl);
    FO_FOLD_LANES(ul);
    *psum = pl[0];
    *usum = ul[0];
}

/* The update of a block (its moments already updated by lamb_stats): coef is the trust
 * ratio r (optax) or r*lr (Keras), in the element type. */
FO_INLINE void FO_NAME(lamb_apply_loop)(const fo_lamb_args *a, FO_T *restrict p,
                                        const FO_T *restrict m, const FO_T *restrict v,
                                        fo_index n, double coef, const int trust,
                                        const int decay)
{
    const FO_NAME(adam_k) k = FO_NAME(adam_consts)(&a->adam);
    const FO_T c = (FO_T)coef, nlr = (FO_T)(-a->adam.lr);
    for (fo_index i = 0; i < n; i++) {
        if (trust == FO_LAMB_OPTAX) {
            p[i] = p[i] + (FO_NAME(lamb_u)(&k, p[i], m[i], v[i], decay) * c) * nlr;
        } else {
            const FO_T pi = FO_NAME(lamb_p)(&k, p[i], decay);
            p[i] = pi - c * FO_NAME(lamb_u)(&k, pi, m[i], v[i], decay);
        }
    }
}

/* The combinations the conventions produce, each compiled as its own loop. */
#define FO_LAMB_CASES(CASE)                                                             \
    CASE(FO_ADAM_OPTAX, FO_DECAY_NONE, FO_LAMB_OPTAX)                                   \
    CASE(FO_ADAM_OPTAX, FO_DECAY_OPTAX, FO_LAMB_OPTAX)                                  \
    CASE(FO_ADAM_EPSHAT, FO_DECAY_NONE, FO_LAMB_KERAS)                                  \
    CASE(FO_ADAM_EPSHAT, FO_DECAY_SUB, FO_LAMB_KERAS)

void FO_NAME(lamb_stats)(const fo_lamb_args *a, const FO_T *p, const FO_T *g, FO_T *m,
                         FO_T *v, fo_index n, double *psum, double *usum)
{
    const int form = a->adam.form, decay = a->adam.decay;
#define FO_LAMB_STATS_CASE(F, D, T) \
    if (form == F && decay == D) { FO_NAME(lamb_stats_loop)(a, p, g, m, v, n, psum, usum, F, D); return; }
    FO_LAMB_CASES(FO_LAMB_STATS_CASE)
#undef FO_LAMB_STATS_CASE
    FO_NAME(lamb_stats_loop)(a, p, g, m, v, n, psum, usum, form, decay);
}

void FO_NAME(lamb_apply)(const fo_lamb_args *a, FO_T *p, const FO_T *m, const FO_T *v,
                         fo_index n, double coef)
{
    const int trust = a->trust, decay = a->adam.decay;
#define FO_LAMB_APPLY_CASE(F, D, T) \
    if (trust == T && decay == D) { FO_NAME(lamb_apply_loop)(a, p, m, v, n, coef, T, D); return; }
    FO_LAMB_CASES(FO_LAMB_APPLY_CASE)
#undef FO_LAMB_APPLY_CASE
    FO_NAME(lamb_apply_loop)(a, p, m, v, n, coef, trust, decay);
}
#undef FO_LAMB_CASES
#endif
