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

/* Weight decay, as the optimizer families apply it. */
enum fo_decay {
    FO_DECAY_NONE = 0,
    FO_DECAY_L2 = 1,     /* g = g + wd*p (before the moments) */
    FO_DECAY_MUL = 2,    /* p = p*decay_factor, decay_factor = 1-lr*wd (torch AdamW) */
    FO_DECAY_SUB = 3,    /* p = p - (p*wd)*lr (Keras, every optimizer) */
    FO_DECAY_OPTAX = 4   /* u = u + wd*p inside the update (optax add_decayed_weights) */
};
/* The families' own types (argument structs, their forms): each family header's FO_API
 * part, in the order of fo_kernels.def. */
#define FO_API
#define FO_FAMILIES
#include "fo_kernels.def"
#undef FO_FAMILIES
#undef FO_API

/* ---------------------------------------------------------------- entry points
 * n_threads <= 0 means "the library default" (fo_default_threads()).  Every entry point
 * splits the work into FO_BLOCK blocks; results never depend on n_threads. */
/* The optimizers of fo_kernels.def, numbered FO_OPT_<name> (FO_OPT_adam, FO_OPT_sgd). */
enum fo_optimizer {
#define FO_OPTIMIZER(name) FO_OPT_##name,
#define FO_KERNEL(name, ret, params)
#include "fo_kernels.def"
#undef FO_OPTIMIZER
#undef FO_KERNEL
    FO_OPT_COUNT
};
#define FO_MAX_STATES 4

/* One step of optimizer `opt` over a list of tensors, in one call: tensor t has ns[t]
 * elements at ps[t] (updated in place), its gradient at gs[t] and its state k at
 * states[k][t] for k < nstates (a NULL list for a state this step does not use).  args
 * points to the optimizer's fo_<name>_args; every array has the element type dtype. */
void fo_step(int opt, int dtype, const void *args, int ntensors, void *const *ps,
             const void *const *gs, int nstates, void *const *const *states,
             const fo_index *ns, int n_threads);

/* Bandwidth probes with the access pattern of each kernel (see fusedopt bench). */
enum fo_stream { FO_STREAM_COPY = 0, FO_STREAM_TRIAD = 1, FO_STREAM_ADAM = 2,
                 FO_STREAM_SGD = 3, FO_STREAM_LOSS = 4,
                 FO_STREAM_READ = 5,      /* 1 read (sum of squares, one store per block) */
                 FO_STREAM_SCALE = 6,     /* 1 read, 1 write, in place */
                 FO_STREAM_READ2 = 7,     /* 2 reads (sums of squares) */
                 FO_STREAM_AXPY = 8,      /* 2 reads, 1 write, in place */
                 FO_STREAM_ACC = 9,       /* 3 reads (one summed), 1 write */
                 FO_STREAM_APPLY = 10,    /* 3 reads, 1 write, in place */
                 FO_STREAM_MOMENTS = 11,  /* 4 reads (one summed), 2 writes */
                 FO_STREAM_APPLY_CD = 12 }; /* 3 reads (a, c, d), 1 write, in place */
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
/* The CPU paths, slowest first on each architecture: x86-64 baseline (SSE2), AVX2,
 * AVX-512; aarch64 baseline (NEON), SVE. */
enum fo_isa { FO_ISA_BASELINE = 0, FO_ISA_AVX2 = 1, FO_ISA_AVX512 = 2, FO_ISA_SVE = 3,
              FO_ISA_COUNT = 4 };
/* Detects the CPU and selects the best path it runs that is not above `cap` (-1: no
 * cap; a path of another architecture caps to baseline). Returns it. */
int fo_select_isa(int cap);
int fo_current_isa(void);
int fo_detected_isa(void);      /* best path this CPU supports (and this build has) */
int fo_isa_built(int isa);      /* 1 when this build has path `isa` (its architecture's) */
int fo_isa_available(int isa);  /* 1 when this build has path `isa` and this CPU runs it */
int fo_openmp(void);            /* 1 when built with OpenMP */
int fo_max_threads(void);       /* OpenMP's omp_get_max_threads(), 1 without OpenMP */
void fo_set_default_threads(int n);
int fo_default_threads(void);
fo_index fo_parallel_threshold(void);
void fo_set_parallel_threshold(fo_index n);
/* 1 in a child forked after the parent ran threaded kernels: calls run single-threaded. */
int fo_forked_single_threaded(void);
/* Threads that never lose to one (fo_driver.c): when threads made recent calls slower
 * than one thread would have been (a worker kept waiting by a busy CPU), calls that leave
 * n_threads to the default run on the calling thread for a back-off period.  On (1) by
 * default; setting it clears the state.  fo_adapt_note and fo_adapt_serial are the rule
 * itself, with the time passed in (seconds, fo_now's clock), for tests. */
void fo_set_adaptive_threads(int on);
int fo_adaptive_threads(void);
void fo_adapt_reset(void);
void fo_adapt_note(double now, double wall, double own, int used);
int fo_adapt_serial(double now);
void fo_adapt_state(double now, double *serial_for, double *backoff, double *credit);
double fo_now(void);
long long fo_threaded_regions(void);   /* parallel regions run with more than one thread */

#endif
