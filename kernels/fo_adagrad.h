/* fusedopt: the Adagrad family (template over FO_T, see fo_common.h).
 *
 * Per element (Duchi et al. 2011): g = g*sign (maximize); weight decay (fo_decay: L2 on g,
 * or Keras' p -= (p*wd)*lr first); s = s + g*g; then one of three updates, which differ in
 * where eps sits and how the division is rounded:
 *   FO_ADAGRAD_TORCH  p -= (lr*g)/(sqrt(s) + eps)              torch.optim.Adagrad, TF1
 *   FO_ADAGRAD_KERAS  p -= (lr*g)/sqrt(s + eps)                keras.optimizers.Adagrad
 *   FO_ADAGRAD_OPTAX  p += (-lr)*(g*r), r = s > 0 ? 1/sqrt(s + eps) : 0     optax.adagrad
 * lr is the step's (torch's lr / (1 + (step-1)*lr_decay), resolved by the binding).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the update forms and the step's scalars. */
enum fo_adagrad_form { FO_ADAGRAD_TORCH = 0, FO_ADAGRAD_KERAS = 1, FO_ADAGRAD_OPTAX = 2 };

typedef struct {
    int form, decay, maximize;           /* decay: FO_DECAY_NONE, _L2 or _SUB */
    double lr, eps, wd;
    double grad_scale;                   /* the clip coefficient (1: none) */
} fo_adagrad_args;
#else
typedef struct { FO_T lr, neg_lr, eps, wd, sgn; } FO_NAME(adagrad_k);

FO_INLINE FO_T FO_NAME(adagrad_update)(const FO_NAME(adagrad_k) *k, FO_T p, FO_T g, FO_T s,
                                       const int form)
{
    if (form == FO_ADAGRAD_TORCH) return p - (k->lr * g) / (FO_SQRT(s) + k->eps);
    if (form == FO_ADAGRAD_KERAS) return p - (k->lr * g) / FO_SQRT(s + k->eps);
    const FO_T r = s > (FO_T)0 ? (FO_T)1 / FO_SQRT(s + k->eps) : (FO_T)0;
    return p + k->neg_lr * (g * r);
}

FO_INLINE void FO_NAME(adagrad_loop)(const fo_adagrad_args *a, FO_T *restrict p,
                                     const FO_T *restrict g, FO_T *restrict s, fo_index n,
                                     const int form, const int decay)
{
    FO_NAME(adagrad_k) k;
    k.lr = (FO_T)a->lr; k.neg_lr = (FO_T)(-a->lr); k.eps = (FO_T)a->eps; k.wd = (FO_T)a->wd;
    k.sgn = FO_GRAD_FACTOR(a);
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_AHEAD_W(p, i0);
        FO_AHEAD_R(g, i0);
        FO_AHEAD_W(s, i0);
        const fo_index i1 = FO_LINE_END(i0, n);
        for (fo_index i = i0; i < i1; i++) {
            FO_T gi = g[i] * k.sgn, pi = p[i];
            if (decay == FO_DECAY_L2) gi = gi + k.wd * pi;
            else if (decay == FO_DECAY_SUB) pi = pi - (pi * k.wd) * k.lr;
            const FO_T si = s[i] + gi * gi;
            s[i] = si;
            p[i] = FO_NAME(adagrad_update)(&k, pi, gi, si, form);
        }
    }
}

/* The combinations the conventions produce, each compiled as its own loop. */
void FO_NAME(adagrad)(const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)
{
    const fo_adagrad_args *a = args;
    const int form = a->form, decay = a->decay;
#define FO_ADAGRAD_CASE(F, D) \
    if (form == F && decay == D) { FO_NAME(adagrad_loop)(a, p, g, s[0], n, F, D); return; }
    FO_ADAGRAD_CASE(FO_ADAGRAD_TORCH, FO_DECAY_NONE)
    FO_ADAGRAD_CASE(FO_ADAGRAD_TORCH, FO_DECAY_L2)
    FO_ADAGRAD_CASE(FO_ADAGRAD_KERAS, FO_DECAY_NONE)
    FO_ADAGRAD_CASE(FO_ADAGRAD_KERAS, FO_DECAY_SUB)
    FO_ADAGRAD_CASE(FO_ADAGRAD_OPTAX, FO_DECAY_NONE)
#undef FO_ADAGRAD_CASE
    FO_NAME(adagrad_loop)(a, p, g, s[0], n, form, decay);
}
#endif
