/* fusedopt: the Adam family (template over FO_T, see fo_common.h).
 *
 * Per element: g = g*sign (maximize); weight decay (fo_decay) on g or p; then one of the
 * four update forms (fo_adam_form, formulas in fusedopt.h and fusedopt.reference), each
 * in its own function below.  The scalars of a call are resolved once, in the element
 * type, before the loop (fo_adam_args: computed by the binding per convention).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it): the update forms and the step's scalars. */
enum fo_adam_form {
    FO_ADAM_TORCH = 0,   /* m=lerp(m,g,1-b1); v=v*b2+((1-b2)*g)*g; p+=(-lr/bc1*m)/(sqrt(v)/sqrt(bc2)+eps) */
    FO_ADAM_EPSHAT = 1,  /* TF1/Keras: m+=(g-m)*(1-b1); v+=(g*g-v)*(1-b2); p-=(m*alpha)/(sqrt(v)+eps) */
    FO_ADAM_SKLEARN = 2, /* m=b1*m+(1-b1)*g; v=b2*v+(1-b2)*(g*g); p+=(-alpha*m)/(sqrt(v)+eps) */
    FO_ADAM_OPTAX = 3    /* m,v as sklearn; u=(m/bc1)/(sqrt(v/bc2+eps_root)+eps) (+wd*p); p+=(-lr)*u */
};
enum fo_amsgrad { FO_AMS_NONE = 0, FO_AMS_RAW = 1 /* max of v */, FO_AMS_HAT = 2 /* max of v/bc2 */ };

typedef struct {
    int form, decay, amsgrad, maximize;
    double beta1, beta2;                 /* as the convention rounds them */
    double one_minus_beta1, one_minus_beta2;
    double eps, eps_root;
    double wd, lr;
    double decay_factor;                 /* FO_DECAY_MUL */
    double step_size;                    /* torch: lr/bc1; eps-hat forms: alpha */
    double bc2_sqrt;                     /* torch */
    double bc1, bc2;                     /* optax */
    double grad_scale;                   /* the clip coefficient (1: none) */
} fo_adam_args;
#else

/* max(a, b) that propagates NaN from either side (torch.maximum, np.maximum). */
FO_INLINE FO_T FO_NAME(nanmax)(FO_T a, FO_T b)
{
    FO_T r = a > b ? a : b;
    return a != a ? a : r;
}

typedef struct {
    FO_T b1, b2, omb1, omb2, omw, eps, eps_root, wd, lr, dfac, sgn;
    FO_T step_size, neg_step_size, bc2_sqrt, bc1, bc2;
    int lerp_lo;
} FO_NAME(adam_k);

FO_INLINE FO_NAME(adam_k) FO_NAME(adam_consts)(const fo_adam_args *a)
{
    FO_NAME(adam_k) k;
    k.b1 = (FO_T)a->beta1; k.b2 = (FO_T)a->beta2;
    k.omb1 = (FO_T)a->one_minus_beta1; k.omb2 = (FO_T)a->one_minus_beta2;
    k.eps = (FO_T)a->eps; k.eps_root = (FO_T)a->eps_root;
    k.wd = (FO_T)a->wd; k.lr = (FO_T)a->lr; k.dfac = (FO_T)a->decay_factor;
    k.sgn = FO_GRAD_FACTOR(a);
    k.step_size = (FO_T)a->step_size; k.neg_step_size = (FO_T)(-a->step_size);
    k.bc2_sqrt = (FO_T)a->bc2_sqrt; k.bc1 = (FO_T)a->bc1; k.bc2 = (FO_T)a->bc2;
    /* torch's lerp: |w| < 0.5 ? m + w*(g-m) : g - (g-m)*(1-w) */
    k.lerp_lo = k.omb1 < (FO_T)0.5;
    k.omw = (FO_T)1 - k.omb1;
    return k;
}

/* The moments, per form (m and v in and out). */
FO_INLINE void FO_NAME(adam_moments)(const FO_NAME(adam_k) *k, FO_T g, FO_T *m, FO_T *v,
                                     const int form)
{
    if (form == FO_ADAM_TORCH) {          /* m = lerp(m, g, 1-b1); v = v*b2 + ((1-b2)*g)*g */
        *m = k->lerp_lo ? *m + k->omb1 * (g - *m) : g - (g - *m) * k->omw;
        *v = *v * k->b2 + (k->omb2 * g) * g;
    } else if (form == FO_ADAM_EPSHAT) {  /* TF1/Keras: m += (g-m)*(1-b1); v += (g*g-v)*(1-b2) */
        *m = *m + (g - *m) * k->omb1;
        *v = *v + (g * g - *v) * k->omb2;
    } else {                              /* sklearn, optax: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*(g*g) */
        *m = k->b1 * *m + k->omb1 * g;
        *v = k->b2 * *v + k->omb2 * (g * g);
    }
}

/* The new parameter, per form, from m and vu (v, or its AMSGrad max; optax: of v/bc2). */
FO_INLINE FO_T FO_NAME(adam_update)(const FO_NAME(adam_k) *k, FO_T p, FO_T m, FO_T vu,
                                    const int form, const int optax_wd)
{
    if (form == FO_ADAM_TORCH)            /* p += (-lr/bc1*m)/(sqrt(v)/sqrt(bc2) + eps) */
        return p + (k->neg_step_size * m) / (FO_SQRT(vu) / k->bc2_sqrt + k->eps);
    if (form == FO_ADAM_EPSHAT)           /* p -= (m*alpha)/(sqrt(v) + eps) */
        return p - (m * k->step_size) / (FO_SQRT(vu) + k->eps);
    if (form == FO_ADAM_SKLEARN)          /* p += (-alpha*m)/(sqrt(v) + eps) */
        return p + (k->neg_step_size * m) / (FO_SQRT(vu) + k->eps);
    /* optax: u = (m/bc1)/(sqrt(v/bc2 + eps_root) + eps) (+ wd*p); p += (-lr)*u */
    FO_T u = (m / k->bc1) / (FO_SQRT(vu + k->eps_root) + k->eps);
    if (optax_wd) u = u + k->wd * p;
    return p + (-k->lr) * u;
}

/* The loop: decay, moments, AMSGrad max (of raw v, or optax's v/bc2), update.  Line by
 * line, prefetching 2 KiB ahead: with a sqrt and a division per element the hardware
 * prefetchers alone left 1e7 floats at ~91 % of the bandwidth ceiling (~100 % with
 * this; measured, bench/RESULTS.md). */
FO_INLINE void FO_NAME(adam_loop)(const fo_adam_args *a, FO_T *restrict p,
                                  const FO_T *restrict g, FO_T *restrict m,
                                  FO_T *restrict v, FO_T *restrict vmax, fo_index n,
                                  const int form, const int decay, const int ams)
{
    const FO_NAME(adam_k) k = FO_NAME(adam_consts)(a);
    for (fo_index i0 = 0; i0 < n; i0 += FO_LINE_ELEMS) {
        FO_AHEAD_W(p, i0);
        FO_AHEAD_R(g, i0);
        FO_AHEAD_W(m, i0);
        FO_AHEAD_W(v, i0);
        if (ams != FO_AMS_NONE) FO_AHEAD_W(vmax, i0);
        const fo_index i1 = FO_LINE_END(i0, n);
        for (fo_index i = i0; i < i1; i++) {
            FO_T gi = g[i] * k.sgn, pi = p[i], mi = m[i], vi = v[i];
            if (decay == FO_DECAY_L2) gi = gi + k.wd * pi;
            else if (decay == FO_DECAY_MUL) pi = pi * k.dfac;
            else if (decay == FO_DECAY_SUB) pi = pi - (pi * k.wd) * k.lr;
            FO_NAME(adam_moments)(&k, gi, &mi, &vi, form);
            m[i] = mi;
            v[i] = vi;
            FO_T vu = form == FO_ADAM_OPTAX ? vi / k.bc2 : vi;
            if (ams != FO_AMS_NONE) { vu = FO_NAME(nanmax)(vu, vmax[i]); vmax[i] = vu; }
            p[i] = FO_NAME(adam_update)(&k, pi, mi, vu, form, decay == FO_DECAY_OPTAX);
        }
    }
}

/* The combinations the conventions produce, each compiled as its own loop; anything else
 * runs the same loop with run-time flags. */
void FO_NAME(adam)(const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)
{
    const fo_adam_args *a = args;
    FO_T *m = s[0], *v = s[1], *vmax = s[2];
    const int form = a->form, decay = a->decay, ams = a->amsgrad;
#define FO_ADAM_CASE(F, D, A) \
    if (form == F && decay == D && ams == A) { FO_NAME(adam_loop)(a, p, g, m, v, vmax, n, F, D, A); return; }
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
#undef FO_ADAM_CASE
    FO_NAME(adam_loop)(a, p, g, m, v, vmax, n, form, decay, ams);
}
#endif
