/* fusedopt: the RMSprop family (template over FO_T, see fo_common.h).
 *
 * Per element (Hinton's lecture 6e; Graves 2013 for the centered form): g = g*sign
 * (maximize); weight decay (fo_decay: L2 on g, or Keras' p -= (p*wd)*lr first); the
 * running averages v of g*g (and, centered, ga of g); w = v (centered: v - ga*ga); then
 * the step, with or without a momentum buffer b.  The conventions differ in how the
 * averages are rounded, where eps sits and where lr meets the buffer:
 *   FO_RMSPROP_TORCH  v = v*a + ((1-a)*g)*g;  ga = lerp(ga, g, 1-a);  d = sqrt(w) + eps
 *                     b = b*mu + g/d;  p += (-lr)*b       (no momentum: p += ((-lr)*g)/d)
 *                     torch.optim.RMSprop (lr applied after the buffer)
 *   FO_RMSPROP_TF1    v = v + (g*g - v)*(1-a);  ga = ga + (g - ga)*(1-a)
 *                     i = (g*lr)/sqrt(w + eps);  b = b*mu + i;  p -= b   (no momentum: p -= i)
 *                     tf.compat.v1.train.RMSPropOptimizer (its ApplyRMSProp kernels)
 *   FO_RMSPROP_KERAS  v = a*v + (1-a)*(g*g);  ga = a*ga + (1-a)*g;  then as TF1
 *                     keras.optimizers.RMSprop
 *   FO_RMSPROP_OPTAX  v, ga as Keras;  u = (-lr)*(g*r), r = 1/sqrt(w + eps);  b = u + mu*b;  p += b
 *                     (no momentum: p += u)   optax.rmsprop (scale_by_rms / _stddev, trace)
 * optax's rsqrt is stated as 1/sqrt, as for Adagrad.  The binding rounds the scalars as
 * each convention does (fo_rmsprop_args).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the update forms and the step's scalars. */
enum fo_rmsprop_form {
    FO_RMSPROP_TORCH = 0, FO_RMSPROP_TF1 = 1, FO_RMSPROP_KERAS = 2, FO_RMSPROP_OPTAX = 3
};

typedef struct {
    int form, decay, maximize;           /* decay: FO_DECAY_NONE, _L2 or _SUB */
    int centered, momentum;              /* momentum: a buffer is kept (mu > 0) */
    double lr, alpha, one_minus_alpha, eps, mu, wd;
    double grad_scale;                   /* the clip coefficient (1: none) */
} fo_rmsprop_args;
#else
typedef struct { FO_T lr, neg_lr, a, oma, omw, eps, mu, wd, sgn; int lerp_lo; } FO_NAME(rmsprop_k);

/* The running averages of g*g and g, per form. */
FO_INLINE void FO_NAME(rmsprop_avgs)(const FO_NAME(rmsprop_k) *k, FO_T g, FO_T *v, FO_T *ga,
                                     const int form, const int centered)
{
    if (form == FO_RMSPROP_TORCH) {       /* mul_(a).addcmul_(g, g, 1-a); lerp_(g, 1-a) */
        *v = *v * k->a + (k->oma * g) * g;
        if (centered)
            *ga = k->lerp_lo ? *ga + k->oma * (g - *ga) : g - (g - *ga) * k->omw;
    } else if (form == FO_RMSPROP_TF1) {  /* ms += (g*g - ms)*(1-rho) */
        *v = *v + (g * g - *v) * k->oma;
        if (centered) *ga = *ga + (g - *ga) * k->oma;
    } else {                              /* Keras, optax: rho*v + (1-rho)*g^2 */
        *v = k->a * *v + k->oma * (g * g);
        if (centered) *ga = k->a * *ga + k->oma * g;
    }
}

/* The new parameter from g and w = v (centered: v - ga*ga), and the buffer b. */
FO_INLINE FO_T FO_NAME(rmsprop_update)(const FO_NAME(rmsprop_k) *k, FO_T p, FO_T g, FO_T w,
                                       FO_T *b, const int form, const int mom)
{
    if (form == FO_RMSPROP_TORCH) {
        const FO_T d = FO_SQRT(w) + k->eps;
        if (!mom) return p + (k->neg_lr * g) / d;
        *b = *b * k->mu + g / d;
        return p + k->neg_lr * *b;
    }
    if (form == FO_RMSPROP_OPTAX) {
        const FO_T u = k->neg_lr * (g * ((FO_T)1 / FO_SQRT(w + k->eps)));
        if (!mom) return p + u;
        *b = u + k->mu * *b;
        return p + *b;
    }
    const FO_T inc = (k->lr * g) / FO_SQRT(w + k->eps);     /* TF1, Keras */
    if (!mom) return p - inc;
    *b = *b * k->mu + inc;
    return p - *b;
}

FO_INLINE void FO_NAME(rmsprop_loop)(const fo_rmsprop_args *a, FO_T *restrict p,
                                     const FO_T *restrict g, FO_T *restrict v,
                                     FO_T *restrict buf, FO_T *restrict gavg, fo_index n,
                                     const int form, const int decay, const int centered,
                                     const int mom)
{
    FO_NAME(rmsprop_k) k;
    k.lr = (FO_T)a->lr; k.neg_lr = (FO_T)(-a->lr); k.a = (FO_T)a->alpha;
    k.oma = (FO_T)a->one_minus_alpha; k.eps = (FO_T)a->eps; k.mu = (FO_T)a->mu;
    k.wd = (FO_T)a->wd; k.sgn = FO_GRAD_FACTOR(a);
    /* torch's lerp: |w| < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w) */
    k.lerp_lo = k.oma < (FO_T)0.5;
    k.omw = (FO_T)1 - k.oma;
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_AHEAD_W(p, i0);
        FO_AHEAD_R(g, i0);
        FO_AHEAD_W(v, i0);
        if (mom) FO_AHEAD_W(buf, i0);
        if (centered) FO_AHEAD_W(gavg, i0);
        const fo_index i1 = FO_LINE_END(i0, n);
        for (fo_index i = i0; i < i1; i++) {
            FO_T gi = g[i] * k.sgn, pi = p[i], vi = v[i], ga = 0, bi = 0;
            if (decay == FO_DECAY_L2) gi = gi + k.wd * pi;
            else if (decay == FO_DECAY_SUB) pi = pi - (pi * k.wd) * k.lr;
            if (centered) ga = gavg[i];
            FO_NAME(rmsprop_avgs)(&k, gi, &vi, &ga, form, centered);
            v[i] = vi;
            if (centered) gavg[i] = ga;
            if (mom) bi = buf[i];
            p[i] = FO_NAME(rmsprop_update)(&k, pi, gi, centered ? vi - ga * ga : vi, &bi,
                                          form, mom);
            if (mom) buf[i] = bi;
        }
    }
}

/* The combinations the conventions' common settings produce, each compiled as its own
 * loop; anything else runs the same body with run-time flags. */
void FO_NAME(rmsprop)(const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)
{
    const fo_rmsprop_args *a = args;
    const int form = a->form, decay = a->decay, c = a->centered, m = a->momentum;
#define FO_RMSPROP_CASE(F, D, C, M) \
    if (form == F && decay == D && c == C && m == M) { \
        FO_NAME(rmsprop_loop)(a, p, g, s[0], s[1], s[2], n, F, D, C, M); return; }
    FO_RMSPROP_CASE(FO_RMSPROP_TORCH, FO_DECAY_NONE, 0, 0)
    FO_RMSPROP_CASE(FO_RMSPROP_TORCH, FO_DECAY_L2, 0, 0)
    FO_RMSPROP_CASE(FO_RMSPROP_TORCH, FO_DECAY_NONE, 0, 1)
    FO_RMSPROP_CASE(FO_RMSPROP_TORCH, FO_DECAY_NONE, 1, 0)
    FO_RMSPROP_CASE(FO_RMSPROP_TORCH, FO_DECAY_NONE, 1, 1)
    FO_RMSPROP_CASE(FO_RMSPROP_TF1, FO_DECAY_NONE, 0, 0)
    FO_RMSPROP_CASE(FO_RMSPROP_TF1, FO_DECAY_NONE, 0, 1)
    FO_RMSPROP_CASE(FO_RMSPROP_KERAS, FO_DECAY_NONE, 0, 0)
    FO_RMSPROP_CASE(FO_RMSPROP_OPTAX, FO_DECAY_NONE, 0, 0)
#undef FO_RMSPROP_CASE
    FO_NAME(rmsprop_loop)(a, p, g, s[0], s[1], s[2], n, form, decay, c, m);
}
#endif
