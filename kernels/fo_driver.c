/* fusedopt: CPU dispatch, threading and the public entry points.
 *
 * The work of every call is cut into FO_BLOCK-element blocks.  Optimizer steps split the
 * blocks of all their tensors statically across threads; reductions compute one double
 * partial per block (in a fixed lane order inside the block) and add the partials in
 * block order, so a loss is bit-identical for any thread count and any CPU path.
 * Below fo_parallel_threshold() elements the calling thread does all the work.
 */
#include "fo_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FO_HAVE_ATFORK 1
#endif

static const fo_table *fo_active = &fo_table_baseline;
static int fo_active_isa = FO_ISA_BASELINE;
static int fo_default_nthreads = 0;               /* 0: OpenMP's current maximum */
/* Measured on the 2-core AVX-512 machine (bench/RESULTS.md): from 2 blocks (32 Ki
 * elements) on, 2 threads take 0.55-0.6x the time of one for Adam and the loss. */
static fo_index fo_threshold = 2 * FO_BLOCK;

/* GNU OpenMP cannot run a parallel region in a child forked after the parent started its
 * thread pool (the child hangs).  A forked child of such a parent runs every call on its
 * own thread instead: correct results, no hang (multiprocessing's "fork", DataLoader
 * workers, ...). */
static volatile int fo_pool_started = 0;
static volatile int fo_single_after_fork = 0;

#ifdef FO_HAVE_ATFORK
static void fo_atfork_child(void)
{
    if (fo_pool_started) fo_single_after_fork = 1;
}
#endif

int fo_forked_single_threaded(void) { return fo_single_after_fork; }

int fo_detected_isa(void)
{
#if FO_HAVE_X86_PATHS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return FO_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FO_ISA_AVX2;
#endif
    return FO_ISA_BASELINE;
}

int fo_select_isa(int cap)
{
#ifdef FO_HAVE_ATFORK
    static int atfork_registered = 0;
    if (!atfork_registered) {
        atfork_registered = 1;
        pthread_atfork(NULL, NULL, fo_atfork_child);
    }
#endif
    int isa = fo_detected_isa();
    if (cap >= 0 && cap < isa) isa = cap;
#if FO_HAVE_X86_PATHS
    fo_active = isa == FO_ISA_AVX512 ? &fo_table_avx512
              : isa == FO_ISA_AVX2 ? &fo_table_avx2 : &fo_table_baseline;
#else
    isa = FO_ISA_BASELINE;
    fo_active = &fo_table_baseline;
#endif
    fo_active_isa = isa;
    return isa;
}

int fo_current_isa(void) { return fo_active_isa; }

int fo_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fo_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fo_set_default_threads(int n) { fo_default_nthreads = n > 0 ? n : 0; }
int fo_default_threads(void) { return fo_default_nthreads > 0 ? fo_default_nthreads : fo_max_threads(); }
fo_index fo_parallel_threshold(void) { return fo_threshold; }
void fo_set_parallel_threshold(fo_index n) { fo_threshold = n > 0 ? n : 0; }

static fo_index fo_nblocks(fo_index n) { return (n + FO_BLOCK - 1) / FO_BLOCK; }

/* Threads for `total` elements in `nblocks` blocks. */
static int fo_threads_for(fo_index total, fo_index nblocks, int n_threads)
{
#ifdef _OPENMP
    int nt = n_threads > 0 ? n_threads : fo_default_threads();
    if (total < fo_threshold || nt < 1 || fo_single_after_fork) nt = 1;
    if ((fo_index)nt > nblocks) nt = (int)(nblocks > 0 ? nblocks : 1);
    if (nt > 1) fo_pool_started = 1;
    return nt;
#else
    (void)total; (void)nblocks; (void)n_threads;
    return 1;
#endif
}

#define FO_ESZ(dtype) ((dtype) == FO_F32 ? (fo_index)sizeof(float) : (fo_index)sizeof(double))
#define FO_OFF(ptr, i, esz) ((ptr) ? (void *)((char *)(ptr) + (i) * (esz)) : NULL)
/* Element i of tensor t of a list of arrays (NULL when the list is NULL). */
#define FO_AT(list, t, i, esz) ((list) ? FO_OFF((list)[t], i, esz) : NULL)

/* Start of elementwise block b of n elements (nb blocks), boundaries shifted by off. */
static fo_index fo_block_start(fo_index b, fo_index n, fo_index nb, fo_index off)
{
    if (b <= 0) return 0;
    if (b >= nb) return n;
    fo_index i = b * FO_BLOCK + off;
    return i < n ? i : n;
}

/* ---------------------------------------------------------------- multi-tensor steps
 * A multi-tensor kernel is a slice function: it runs elements [i0, i0+len) of tensor t
 * of the call described by ctx, and returns a flag that the call ORs over all slices. */
typedef int (*fo_slice_fn)(const void *ctx, int t, fo_index i0, fo_index len);

typedef struct {
    int ntensors;
    const fo_index *ns;
    void *const *anchor;    /* the arrays written in place, whose lines threads never share */
    fo_index esz;
    fo_slice_fn slice;
    const void *ctx;
} fo_multi;

/* Runs blocks [lo, hi) (numbered over all tensors) of a multi-tensor call. */
static int fo_multi_range(const fo_multi *w, fo_index lo, fo_index hi)
{
    fo_index cum = 0;
    int found = 0;
    for (int t = 0; t < w->ntensors && cum < hi; t++) {
        fo_index n = w->ns[t], nb = fo_nblocks(n);
        if (cum + nb <= lo) { cum += nb; continue; }
        fo_index b0 = lo > cum ? lo - cum : 0;
        fo_index b1 = hi - cum < nb ? hi - cum : nb;
        /* Elementwise updates may cut anywhere: block boundaries are moved to the first
         * 64-byte boundary of the parameter so that two threads never write one line. */
        fo_index off = (fo_index)((64 - ((uintptr_t)w->anchor[t] & 63)) & 63) / w->esz;
        fo_index i0 = fo_block_start(b0, n, nb, off), i1 = fo_block_start(b1, n, nb, off);
        found |= w->slice(w->ctx, t, i0, i1 - i0);
        cum += nb;
    }
    return found;
}

static int fo_multi_run(const fo_multi *w, int n_threads)
{
    fo_index total = 0, nb = 0;
    for (int t = 0; t < w->ntensors; t++) { total += w->ns[t]; nb += fo_nblocks(w->ns[t]); }
    int nt = fo_threads_for(total, nb, n_threads);
    int found = 0;
    if (nt <= 1) return fo_multi_range(w, 0, nb);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : found)
    {
        fo_index tid = omp_get_thread_num(), tn = omp_get_num_threads();
        found |= fo_multi_range(w, nb * tid / tn, nb * (tid + 1) / tn);
    }
#endif
    return found;
}

typedef struct {
    const fo_table *tab;
    int opt, dtype, nstates;
    const void *args;
    void *const *p;
    const void *const *g;
    void *const *const *s;
} fo_step_ctx;

static int fo_step_slice(const void *ctx, int t, fo_index i, fo_index len)
{
    const fo_step_ctx *c = ctx;
    const fo_index esz = FO_ESZ(c->dtype);
    void *s[FO_MAX_STATES] = {NULL};
    for (int k = 0; k < c->nstates; k++) s[k] = FO_AT(c->s[k], t, i, esz);
    void *p = FO_AT(c->p, t, i, esz);
    const void *g = FO_AT((void *const *)c->g, t, i, esz);
    switch (c->opt) {
#define FO_OPTIMIZER(name) \
    case FO_OPT_##name: FO_CALL(c->tab, name, c->dtype, c->args, p, g, s, len); break;
#define FO_KERNEL(name, ret, params)
#include "fo_kernels.def"
#undef FO_OPTIMIZER
#undef FO_KERNEL
    }
    return 0;
}

void fo_step(int opt, int dtype, const void *args, int ntensors, void *const *ps,
             const void *const *gs, int nstates, void *const *const *states,
             const fo_index *ns, int n_threads)
{
    fo_step_ctx c = {fo_active, opt, dtype, nstates, args, ps, gs, states};
    fo_multi w = {ntensors, ns, ps, FO_ESZ(dtype), fo_step_slice, &c};
    if (opt < 0 || opt >= FO_OPT_COUNT || nstates < 0 || nstates > FO_MAX_STATES) return;
    fo_multi_run(&w, n_threads);
}

typedef struct {
    const fo_table *tab;
    int dtype, do_scale;
    double scale;
    void *const *g;
} fo_unscale_ctx;

static int fo_unscale_slice(const void *ctx, int t, fo_index i, fo_index len)
{
    const fo_unscale_ctx *c = ctx;
    return FO_CALL(c->tab, unscale_check, c->dtype, FO_AT(c->g, t, i, FO_ESZ(c->dtype)), len,
                   c->scale, c->do_scale);
}

int fo_unscale_check(int dtype, int ntensors, void *const *gs, const fo_index *ns,
                     double scale, int do_scale, int n_threads)
{
    fo_unscale_ctx c = {fo_active, dtype, do_scale, scale, gs};
    fo_multi w = {ntensors, ns, gs, FO_ESZ(dtype), fo_unscale_slice, &c};
    return fo_multi_run(&w, n_threads);
}

/* ---------------------------------------------------------------- gradient norms
 * Rounds of up to FO_NORM_ROUND blocks, numbered over all tensors in order: the blocks of
 * a round run in parallel, their partials are combined in block order. */
#define FO_NORM_ROUND 1024
typedef struct { int t; fo_index i0, len; } fo_norm_piece;

double fo_grad_norm(int dtype, int ntensors, const void *const *gs, const fo_index *ns,
                    int kind, double p, int n_threads)
{
    const fo_table *tab = fo_active;
    const fo_index esz = FO_ESZ(dtype);
    fo_index total = 0, nb = 0;
    for (int t = 0; t < ntensors; t++) { total += ns[t]; nb += fo_nblocks(ns[t]); }
    const int nt = fo_threads_for(total, nb, n_threads);
    fo_norm_piece pc[FO_NORM_ROUND];
    double part[FO_NORM_ROUND], acc = 0.0;
    int t = 0;
    fo_index i = 0;
    while (t < ntensors) {
        int np = 0;
        for (; t < ntensors && np < FO_NORM_ROUND; i = 0, t++) {
            for (; i < ns[t] && np < FO_NORM_ROUND; i += FO_BLOCK) {
                pc[np].t = t; pc[np].i0 = i;
                pc[np].len = ns[t] - i < FO_BLOCK ? ns[t] - i : FO_BLOCK;
                np++;
            }
            if (i < ns[t]) break;            /* the round is full inside tensor t */
        }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
        for (int k = 0; k < np; k++)
            part[k] = FO_CALL(tab, norm_block, dtype,
                              FO_AT((void *const *)gs, pc[k].t, pc[k].i0, esz),
                              pc[k].len, kind, p);
        for (int k = 0; k < np; k++) {
            if (kind != FO_NORM_MAX) acc += part[k];
            else if ((part[k] > acc || part[k] != part[k]) && acc == acc) acc = part[k];
        }
    }
    (void)nt;
    return acc;
}

/* ---------------------------------------------------------------- reductions
 * Sum of per-block partials in block order; blocks of one round run in parallel.  A
 * reduction kernel is a block function over the call described by ctx. */
#define FO_ROUND 4096
typedef double (*fo_block_fn)(const void *ctx, fo_index i0, fo_index i1);

static double fo_reduce(fo_block_fn fn, const void *ctx, fo_index n, int n_threads)
{
    fo_index nb = fo_nblocks(n);
    int nt = fo_threads_for(n, nb, n_threads);
    double total = 0.0;
    double part[FO_ROUND];
    for (fo_index r0 = 0; r0 < nb; r0 += FO_ROUND) {
        fo_index rn = nb - r0 < FO_ROUND ? nb - r0 : FO_ROUND;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
        for (fo_index b = 0; b < rn; b++) {
            fo_index i0 = (r0 + b) * FO_BLOCK;
            fo_index i1 = i0 + FO_BLOCK < n ? i0 + FO_BLOCK : n;
            part[b] = fn(ctx, i0, i1);
        }
        for (fo_index b = 0; b < rn; b++) total += part[b];
    }
    return total;
}

typedef struct { const fo_table *tab; int dtype; const void *a; } fo_loss_ctx;

static double fo_bce_blocks(const void *ctx, fo_index i0, fo_index i1)
{
    const fo_loss_ctx *c = ctx;
    return FO_CALL(c->tab, bce_block, c->dtype, (const fo_bce_args *)c->a, i0, i1);
}

static double fo_reg_blocks(const void *ctx, fo_index i0, fo_index i1)
{
    const fo_loss_ctx *c = ctx;
    return FO_CALL(c->tab, reg_block, c->dtype, (const fo_reg_args *)c->a, i0, i1);
}

double fo_bce(int dtype, const fo_bce_args *a, fo_index n, int n_threads)
{
    fo_loss_ctx c = {fo_active, dtype, a};
    return fo_reduce(fo_bce_blocks, &c, n, n_threads);
}

double fo_reg(int dtype, const fo_reg_args *a, fo_index n, int n_threads)
{
    fo_loss_ctx c = {fo_active, dtype, a};
    return fo_reduce(fo_reg_blocks, &c, n, n_threads);
}

/* ---------------------------------------------------------------- probes and math */
void fo_exp_neg(int dtype, const void *a, void *out, fo_index n)
{
    FO_CALL(fo_active, exp_neg, dtype, a, out, n);
}

void fo_log1p_unit(int dtype, const void *e, void *out, fo_index n)
{
    FO_CALL(fo_active, log1p_unit, dtype, e, out, n);
}

void fo_stream(int dtype, int pattern, void *a, const void *b, void *c, void *d, fo_index n,
               int n_threads)
{
    const fo_index esz = FO_ESZ(dtype), nb = fo_nblocks(n);
    const fo_table *tab = fo_active;
    int nt = fo_threads_for(n, nb, n_threads);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (fo_index blk = 0; blk < nb; blk++) {
        fo_index i0 = blk * FO_BLOCK, len = n - i0 < FO_BLOCK ? n - i0 : FO_BLOCK;
        FO_CALL(tab, stream, dtype, pattern, FO_OFF(a, i0, esz), FO_OFF((void *)b, i0, esz),
                FO_OFF(c, i0, esz), FO_OFF(d, i0, esz), len);
    }
    (void)nt;
}
