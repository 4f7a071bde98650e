/* fusedopt: the Lion family (template over FO_T, see fo_common.h).
 *
 * Per element (Chen et al. 2023, as optax.lion and keras.optimizers.Lion compute it):
 *     c = (1-b1)*g + b1*m;  p -= lr*sign(c) (with weight decay);  m = (1-b2)*g + b2*m
 * sign(0) = 0 and sign(NaN) = NaN (jnp.sign, ops.sign).  The conventions differ in the
 * weight decay (fo_decay: optax adds wd*p to the sign before scaling by -lr, Keras
 * decays p first) and in how 1-b is rounded (the binding resolves those scalars).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the step's scalars. */
typedef struct {
    int decay;                           /* FO_DECAY_NONE, _OPTAX or _SUB */
    double lr, beta1, beta2, one_minus_beta1, one_minus_beta2, wd;
    double grad_scale;                   /* the clip coefficient (1: none) */
    int maximize;                        /* (always 0: Lion has no maximize) */
} fo_lion_args;
#else
typedef struct { FO_T lr, neg_lr, b1, b2, omb1, omb2, wd, gs; } FO_NAME(lion_k);

/* jnp.sign: -1, 0 or 1, and NaN for NaN (c itself when it is 0 or NaN) */
FO_INLINE FO_T FO_NAME(lion_sign)(FO_T c)
{
    return c > (FO_T)0 ? (FO_T)1 : c < (FO_T)0 ? (FO_T)-1 : c;
}

/* optax (and the torch convention): p += (-lr)*(sign(c) + wd*p); Keras: p = p - (p*wd)*lr,
 * then p -= lr*sign(c) */
FO_INLINE FO_T FO_NAME(lion_update)(const FO_NAME(lion_k) *k, FO_T p, FO_T s, const int decay)
{
    if (decay == FO_DECAY_SUB) return (p - (p * k->wd) * k->lr) - k->lr * s;
    return p + k->neg_lr * (decay == FO_DECAY_OPTAX ? s + k->wd * p : s);
}

FO_INLINE void FO_NAME(lion_loop)(const fo_lion_args *a, FO_T *restrict p,
                                  const FO_T *restrict g, FO_T *restrict m, fo_index n,
                                  const int decay)
{
    FO_NAME(lion_k) k;
    k.lr = (FO_T)a->lr; k.neg_lr = (FO_T)(-a->lr); k.wd = (FO_T)a->wd;
    k.b1 = (FO_T)a->beta1; k.b2 = (FO_T)a->beta2;
    k.omb1 = (FO_T)a->one_minus_beta1; k.omb2 = (FO_T)a->one_minus_beta2;
    k.gs = FO_GRAD_FACTOR(a);
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_AHEAD_W(p, i0);
        FO_AHEAD_R(g, i0);
        FO_AHEAD_W(m, i0);
        const fo_index i1 = FO_LINE_END(i0, n);
        for (fo_index i = i0; i < i1; i++) {
            const FO_T gi = g[i] * k.gs, mi = m[i];
            p[i] = FO_NAME(lion_update)(&k, p[i], FO_NAME(lion_sign)(k.omb1 * gi + k.b1 * mi),
                                        decay);
            m[i] = k.omb2 * gi + k.b2 * mi;
        }
    }
}

/* Each weight decay compiled as its own loop (three: no run-time flag left). */
void FO_NAME(lion)(const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)
{
    const fo_lion_args *a = args;
    if (a->decay == FO_DECAY_OPTAX) FO_NAME(lion_loop)(a, p, g, s[0], n, FO_DECAY_OPTAX);
    else if (a->decay == FO_DECAY_SUB) FO_NAME(lion_loop)(a, p, g, s[0], n, FO_DECAY_SUB);
    else FO_NAME(lion_loop)(a, p, g, s[0], n, FO_DECAY_NONE);
}
#endif
