/* fusedopt: public C interface of the kernels.
 *
 * Plain C99, no Python.h, no allocation, no error reporting beyond the return value:
 * every argument has been validated by the binding (src/fusedopt/_core.pyx) before a
 * function here is called.  Scalars arrive as doubles that are exactly representable in
 * the kernel's element type whenever the convention computes them in that type, so each
 * kernel casts them once and every CPU path does identical arithmetic.
 */
#ifndef FUSEDOPT_H
#define FUSEDOPT_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fo_index;

/* Elements per work block: the unit of threading and of loss accumulation.  Fixed, so a
 * reduction is summed in the same order whatever the thread count or CPU path. */
#define FO_BLOCK ((fo_index)16384)
/* Independent double accumulators inside a block (lane i%FO_LANES). */
#define FO_LANES 16

enum fo_dtype { FO_F32 = 0, FO_F64 = 1, FO_U8 = 2 };

/* ---------------------------------------------------------------- Adam family */
enum fo_adam_form {
    FO_ADAM_TORCH = 0,   /* m=lerp(m,g,1-b1); v=v*b2+((1-b2)*g)*g; p+=(-lr/bc1*m)/(sqrt(v)/sqrt(bc2)+eps) */
    FO_ADAM_EPSHAT = 1,  /* TF1/Keras: m+=(g-m)*(1-b1); v+=(g*g-v)*(1-b2); p-=(m*alpha)/(sqrt(v)+eps) */
    FO_ADAM_SKLEARN = 2, /* m=b1*m+(1-b1)*g; v=b2*v+(1-b2)*(g*g); p+=(-alpha*m)/(sqrt(v)+eps) */
    FO_ADAM_OPTAX = 3    /* m,v as sklearn; u=(m/bc1)/(sqrt(v/bc2+eps_root)+eps) (+wd*p); p+=(-lr)*u */
};
enum fo_decay {
    FO_DECAY_NONE = 0,
    FO_DECAY_L2 = 1,     /* g = g + wd*p (before the moments) */
    FO_DECAY_MUL = 2,    /* p = p*decay_factor, decay_factor = 1-lr*wd (torch AdamW) */
    FO_DECAY_SUB = 3,    /* p = p - (p*wd)*lr (Keras, every optimizer) */
    FO_DECAY_OPTAX = 4   /* u = u + wd*p inside the update (optax add_decayed_weights) */
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
} fo_adam_args;

/* ---------------------------------------------------------------- SGD family */
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
} fo_sgd_args;

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

enum fo_reg_kind { FO_REG_L1 = 0, FO_REG_L2 = 1 };
typedef struct {
    int kind;
    const void *pred, *target;
    const void *w;          /* full-size weight (pred's dtype) or NULL */
    double grad_scale;      /* mean: 1/n (L2 folds its 2 in here) */
    void *grad, *loss;
} fo_reg_args;

/* ---------------------------------------------------------------- entry points
 * n_threads <= 0 means "the library default" (fo_default_threads()).  Every entry point
 * splits the work into FO_BLOCK blocks; results never depend on n_threads. */
void fo_adam(int dtype, const fo_adam_args *a, void *p, const void *g, void *m, void *v,
             void *vmax, fo_index n, int n_threads);
void fo_sgd(int dtype, const fo_sgd_args *a, void *p, const void *g, void *buf,
            fo_index n, int n_threads);
/* Returns the sum of the elementwise losses (in double, block order). */
double fo_bce(int dtype, const fo_bce_args *a, fo_index n, int n_threads);
double fo_reg(int dtype, const fo_reg_args *a, fo_index n, int n_threads);

/* Multi-tensor steps: one call walks a list of tensors.  ps[i], gs[i], ... point to
 * tensor i's arrays, ns[i] its size; bufs may hold NULL where a tensor has no buffer. */
void fo_adam_multi(int dtype, const fo_adam_args *a, int ntensors, void *const *ps,
                   const void *const *gs, void *const *ms, void *const *vs,
                   void *const *vmaxs, const fo_index *ns, int n_threads);
void fo_sgd_multi(int dtype, const fo_sgd_args *a, int ntensors, void *const *ps,
                  const void *const *gs, void *const *bufs, const fo_index *ns,
                  int n_threads);

/* Bandwidth probes with the access pattern of each kernel (see fusedopt bench). */
enum fo_stream { FO_STREAM_COPY = 0, FO_STREAM_TRIAD = 1, FO_STREAM_ADAM = 2,
                 FO_STREAM_SGD = 3, FO_STREAM_LOSS = 4 };
void fo_stream(int dtype, int pattern, void *a, const void *b, void *c, void *d, fo_index n,
               int n_threads);

/* Non-finite check of a list of gradients, optionally unscaling them first (g *= scale)
 * in the same pass (mixed-precision loss scaling).  Returns 1 when any element, after
 * scaling, is NaN or infinite. */
int fo_unscale_check(int dtype, int ntensors, void *const *gs, const fo_index *ns,
                     double scale, int do_scale, int n_threads);

/* Elementwise math, exposed for the ulp tests (serial, current CPU path). */
void fo_exp_neg(int dtype, const void *a, void *out, fo_index n);
void fo_log1p_unit(int dtype, const void *e, void *out, fo_index n);

/* ---------------------------------------------------------------- runtime */
enum fo_isa { FO_ISA_BASELINE = 0, FO_ISA_AVX2 = 1, FO_ISA_AVX512 = 2 };
/* Detects the CPU and selects the best path not above `cap` (-1: no cap). Returns it. */
int fo_select_isa(int cap);
int fo_current_isa(void);
int fo_detected_isa(void);      /* best path this CPU supports (and this build has) */
int fo_openmp(void);            /* 1 when built with OpenMP */
int fo_max_threads(void);       /* OpenMP's omp_get_max_threads(), 1 without OpenMP */
void fo_set_default_threads(int n);
int fo_default_threads(void);
fo_index fo_parallel_threshold(void);
void fo_set_parallel_threshold(fo_index n);
/* 1 in a child forked after the parent ran threaded kernels: calls run single-threaded. */
int fo_forked_single_threaded(void);

#endif
