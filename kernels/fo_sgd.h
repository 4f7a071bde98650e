/* fusedopt: the SGD family (template over FO_T, see fo_common.h).
 *
 * Per element: g = g*sign (maximize); weight decay (L2 on g, or Keras' p -= (p*wd)*lr);
 * then one momentum form (fo_sgd_form, formulas in fusedopt.h), each in its own function.
 * `b` is the momentum buffer element (read and written), the return value the new p.
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the momentum forms and the step's scalars. */
enum fo_sgd_form {
    FO_SGD_TORCH = 0,    /* buf = first ? g : buf*mu+(1-d)*g; g = nesterov ? g+mu*buf : buf; p += (-lr)*g */
    FO_SGD_TF1 = 1,      /* accum = accum*mu+g; p -= nesterov ? g*lr+(accum*mu)*lr : accum*lr */
    FO_SGD_KERAS = 2,    /* m = m*mu-g*lr; p += nesterov ? m*mu-g*lr : m */
    FO_SGD_OPTAX = 3,    /* t = g+mu*t; u = nesterov ? g+mu*t : t; p += (-lr)*u */
    FO_SGD_SKLEARN = 4,  /* v = mu*v-lr*g; p += nesterov ? mu*v-lr*g : v */
    FO_SGD_PLAIN = 5     /* no momentum buffer: p += (-lr)*g (torch, optax) */
};
typedef struct {
    int form, decay, nesterov, maximize, first_step;
    double lr, momentum, one_minus_dampening, wd;
    double grad_scale;                   /* the clip coefficient (1: none) */
} fo_sgd_args;
#else
typedef struct { FO_T lr, neg_lr, mu, omd, wd, sgn; } FO_NAME(sgd_k);

/* torch: buf = first ? g : buf*mu + (1-dampening)*g; p += (-lr)*(nesterov ? g + mu*buf : buf) */
FO_INLINE FO_T FO_NAME(sgd_torch)(const FO_NAME(sgd_k) *k, FO_T p, FO_T g, FO_T *b,
                                  const int nesterov, const int first)
{
    FO_T bi = first ? g : *b * k->mu + k->omd * g;
    *b = bi;
    return p + k->neg_lr * (nesterov ? g + k->mu * bi : bi);
}

/* TF1 MomentumOptimizer: accum = accum*mu + g; p -= nesterov ? g*lr + (accum*mu)*lr : accum*lr */
FO_INLINE FO_T FO_NAME(sgd_tf1)(const FO_NAME(sgd_k) *k, FO_T p, FO_T g, FO_T *b, const int nesterov)
{
    FO_T bi = *b * k->mu + g;
    *b = bi;
    return nesterov ? p - (g * k->lr + (bi * k->mu) * k->lr) : p - bi * k->lr;
}

/* Keras: m = m*mu - g*lr; p += nesterov ? m*mu - g*lr : m */
FO_INLINE FO_T FO_NAME(sgd_keras)(const FO_NAME(sgd_k) *k, FO_T p, FO_T g, FO_T *b, const int nesterov)
{
    FO_T bi = *b * k->mu - g * k->lr;
    *b = bi;
    return nesterov ? p + (bi * k->mu - g * k->lr) : p + bi;
}

/* optax: t = g + mu*t; p += (-lr)*(nesterov ? g + mu*t : t) */
FO_INLINE FO_T FO_NAME(sgd_optax)(const FO_NAME(sgd_k) *k, FO_T p, FO_T g, FO_T *b, const int nesterov)
{
    FO_T bi = g + k->mu * *b;
    *b = bi;
    return p + k->neg_lr * (nesterov ? g + k->mu * bi : bi);
}

/* scikit-learn: v = mu*v - lr*g; p += nesterov ? mu*v - lr*g : v */
FO_INLINE FO_T FO_NAME(sgd_sklearn)(const FO_NAME(sgd_k) *k, FO_T p, FO_T g, FO_T *b, const int nesterov)
{
    FO_T bi = k->mu * *b - k->lr * g;
    *b = bi;
    return p + (nesterov ? k->mu * bi - k->lr * g : bi);
}

FO_INLINE void FO_NAME(sgd_loop)(const fo_sgd_args *a, FO_T *restrict p,
                                 const FO_T *restrict g, FO_T *restrict buf, fo_index n,
                                 const int form, const int decay, const int nesterov,
                                 const int first)
{
    FO_NAME(sgd_k) k;
    k.lr = (FO_T)a->lr; k.neg_lr = (FO_T)(-a->lr); k.mu = (FO_T)a->momentum;
    k.omd = (FO_T)a->one_minus_dampening; k.wd = (FO_T)a->wd;
    k.sgn = FO_GRAD_FACTOR(a);
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_AHEAD_W(p, i0);
        FO_AHEAD_R(g, i0);
        if (form != FO_SGD_PLAIN) FO_AHEAD_W(buf, i0);
        const fo_index i1 = FO_LINE_END(i0, n);
        for (fo_index i = i0; i < i1; i++) {
            FO_T gi = g[i] * k.sgn, pi = p[i];
            if (decay == FO_DECAY_L2) gi = gi + k.wd * pi;
            else if (decay == FO_DECAY_SUB) pi = pi - (pi * k.wd) * k.lr;
            if (form == FO_SGD_PLAIN) p[i] = pi + k.neg_lr * gi;
            else if (form == FO_SGD_TORCH) p[i] = FO_NAME(sgd_torch)(&k, pi, gi, buf + i, nesterov, first);
            else if (form == FO_SGD_TF1) p[i] = FO_NAME(sgd_tf1)(&k, pi, gi, buf + i, nesterov);
            else if (form == FO_SGD_KERAS) p[i] = FO_NAME(sgd_keras)(&k, pi, gi, buf + i, nesterov);
            else if (form == FO_SGD_OPTAX) p[i] = FO_NAME(sgd_optax)(&k, pi, gi, buf + i, nesterov);
            else p[i] = FO_NAME(sgd_sklearn)(&k, pi, gi, buf + i, nesterov);
        }
    }
}

/* The combinations the conventions produce, each compiled as its own loop; anything else
 * runs the same loop with run-time flags. */
void FO_NAME(sgd)(const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)
{
    const fo_sgd_args *a = args;
    FO_T *buf = s[0];
    const int form = a->form, decay = a->decay, nest = a->nesterov, first = a->first_step;
#define FO_SGD_CASE(F, D, N, FIRST) \
    if (form == F && decay == D && nest == N && first == FIRST) { \
        FO_NAME(sgd_loop)(a, p, g, buf, n, F, D, N, FIRST); return; }
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
#undef FO_SGD_CASE
    FO_NAME(sgd_loop)(a, p, g, buf, n, form, decay, nest, first);
}
#endif
