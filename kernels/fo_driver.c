/* fusedopt: CPU dispatch, threading and the public entry points.
 *
 * The work of every call is cut into FO_BLOCK-element blocks.  Optimizer steps split the
 * blocks of all their tensors statically across threads; reductions compute one double
 * partial per block (in a fixed lane order inside the block) and add the partials in
 * block order, so a loss is bit-identical for any thread count and any CPU path.
 * Below fo_parallel_threshold() elements the calling thread does all the work.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fo_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if FO_HAVE_SVE_PATH
#include <sys/auxv.h>
#ifndef HWCAP_SVE
#define HWCAP_SVE (1UL << 22)
#endif
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

int fo_isa_built(int isa)
{
    switch (isa) {
    case FO_ISA_BASELINE: return 1;
    case FO_ISA_AVX2: case FO_ISA_AVX512: return FO_HAVE_X86_PATHS;
    case FO_ISA_SVE: return FO_HAVE_SVE_PATH;
    default: return 0;
    }
}

int fo_isa_available(int isa)
{
    switch (isa) {
    case FO_ISA_BASELINE:
        return 1;
#if FO_HAVE_X86_PATHS
    case FO_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FO_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#endif
#if FO_HAVE_SVE_PATH
    case FO_ISA_SVE:
        return (getauxval(AT_HWCAP) & HWCAP_SVE) != 0;
#endif
    default:
        return 0;
    }
}

int fo_detected_isa(void)
{
    int isa = FO_ISA_COUNT - 1;
    while (isa > FO_ISA_BASELINE && !fo_isa_available(isa)) isa--;
    return isa;
}

static const fo_table *fo_table_of(int isa)
{
    switch (isa) {
#if FO_HAVE_X86_PATHS
    case FO_ISA_AVX2: return &fo_table_avx2;
    case FO_ISA_AVX512: return &fo_table_avx512;
#endif
#if FO_HAVE_SVE_PATH
    case FO_ISA_SVE: return &fo_table_sve;
#endif
    default: return &fo_table_baseline;
    }
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
    while (isa > FO_ISA_BASELINE && !fo_isa_available(isa)) isa--;
    fo_active = fo_table_of(isa);
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

/* ---------------------------------------------------------------- threads that never lose
 * On a loaded machine a worker thread may start late: woken while another process holds
 * its core, it waits for a time slice (milliseconds), and the call with it.  Every
 * parallel region therefore runs through fo_parallel, which times the region and the
 * calling thread's own share: the share times the threads estimates the call on one
 * thread.  The time threads gained (or lost) is summed, capped at FO_CREDIT_MAX; when the
 * sum falls below zero, calls that did not ask for a thread count run on their own thread
 * for a back-off period, after which threads are tried again.  A back-off that follows a
 * threaded spell shorter than itself doubles (up to FO_BACKOFF_MAX); after a longer spell it
 * starts again from FO_BACKOFF_MIN.  A failed retry costs one late worker per period: a
 * few milliseconds a second at worst.  Only thread counts depend on this state, never a
 * result; concurrent calls may interleave its updates, which only shifts a decision.
 * (The estimate flatters threads when they share memory bandwidth; a late worker costs
 * far more than that error.) */
#define FO_CREDIT_MAX 1e-3
#define FO_BACKOFF_MIN 0.05
#define FO_BACKOFF_MAX 2.0

static int fo_adaptive = 1;
static double fo_credit = 0.0;         /* seconds threads gained lately, at most FO_CREDIT_MAX */
static double fo_serial_until = -1.0;  /* default calls run on one thread until then */
static double fo_backoff = FO_BACKOFF_MIN;
static double fo_spell_start = 0.0;    /* when threads were last taken up again */
static long long fo_regions = 0;       /* threaded regions run */

void fo_set_adaptive_threads(int on) { fo_adaptive = on != 0; fo_adapt_reset(); }
int fo_adaptive_threads(void) { return fo_adaptive; }

void fo_adapt_reset(void)
{
    fo_credit = 0.0;
    fo_serial_until = -1.0;
    fo_backoff = FO_BACKOFF_MIN;
    fo_spell_start = 0.0;
}

void fo_adapt_note(double now, double wall, double own, int used)
{
    fo_credit += own * used - wall;
    if (fo_credit > FO_CREDIT_MAX) fo_credit = FO_CREDIT_MAX;
    if (fo_credit >= 0.0) return;
    if (now - fo_spell_start < fo_backoff) {
        fo_backoff *= 2.0;
        if (fo_backoff > FO_BACKOFF_MAX) fo_backoff = FO_BACKOFF_MAX;
    } else {
        fo_backoff = FO_BACKOFF_MIN;
    }
    fo_serial_until = now + fo_backoff;
    fo_credit = 0.0;
}

int fo_adapt_serial(double now)
{
    if (fo_serial_until < 0.0) return 0;
    if (now < fo_serial_until) return 1;
    fo_serial_until = -1.0;            /* the back-off is over: threads again */
    fo_spell_start = now;
    return 0;
}

void fo_adapt_state(double now, double *serial_for, double *backoff, double *credit)
{
    *serial_for = fo_serial_until < 0.0 || now >= fo_serial_until ? 0.0 : fo_serial_until - now;
    *backoff = fo_backoff;
    *credit = fo_credit;
}

long long fo_threaded_regions(void) { return fo_regions; }

double fo_now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0.0;
#endif
}

/* Threads for `total` elements in `nblocks` blocks (n_threads <= 0: the default, which the
 * back-off above may lower to one). */
static int fo_threads_for(fo_index total, fo_index nblocks, int n_threads)
{
#ifdef _OPENMP
    int nt = n_threads > 0 ? n_threads : fo_default_threads();
    if (total < fo_threshold || nt < 1 || fo_single_after_fork) nt = 1;
    if ((fo_index)nt > nblocks) nt = (int)(nblocks > 0 ? nblocks : 1);
    if (nt > 1 && n_threads <= 0 && fo_adaptive && fo_adapt_serial(fo_now())) nt = 1;
    if (nt > 1) fo_pool_started = 1;
    return nt;
#else
    (void)total; (void)nblocks; (void)n_threads;
    return 1;
#endif
}

/* Runs fn over items [0, n) on nt threads, one contiguous range each (every caller's
 * results are independent of the cut), and ORs the flags the ranges return.  Threads'
 * gains and losses are noted for the back-off above. */
typedef int (*fo_range_fn)(void *ctx, fo_index k0, fo_index k1);

static int fo_parallel(int nt, fo_index n, fo_range_fn fn, void *ctx)
{
    if (nt <= 1 || n <= 1) return n > 0 ? fn(ctx, 0, n) : 0;
    int found = 0;
#ifdef _OPENMP
    double t0 = fo_now(), own = 0.0;
    int used = 1;
#pragma omp parallel num_threads(nt) reduction(| : found)
    {
        const fo_index tid = omp_get_thread_num(), tn = omp_get_num_threads();
        const double s = tid == 0 ? fo_now() : 0.0;
        found |= fn(ctx, n * tid / tn, n * (tid + 1) / tn);
        if (tid == 0) {
            own = fo_now() - s;
            used = (int)tn;
        }
    }
    if (used > 1) {
        const double t1 = fo_now();
        fo_adapt_note(t1, t1 - t0, own, used);
        fo_regions++;
    }
#endif
    return found;
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

/* Runs blocks [lo, hi) (numbered over all tensors) of a multi-tensor call (an fo_multi). */
static int fo_multi_range(void *ctx, fo_index lo, fo_index hi)
{
    const fo_multi *w = ctx;
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
    return fo_parallel(fo_threads_for(total, nb, n_threads), nb, fo_multi_range, (void *)w);
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
typedef struct {
    const fo_table *tab;
    int dtype, kind;
    double p;
    const void *const *gs;
    const fo_norm_piece *pc;
    double *part;
} fo_norm_ctx;

static int fo_norm_range(void *ctx, fo_index k0, fo_index k1)
{
    const fo_norm_ctx *c = ctx;
    const fo_index esz = FO_ESZ(c->dtype);
    for (fo_index k = k0; k < k1; k++)
        c->part[k] = FO_CALL(c->tab, norm_block, c->dtype,
                             FO_AT((void *const *)c->gs, c->pc[k].t, c->pc[k].i0, esz),
                             c->pc[k].len, c->kind, c->p);
    return 0;
}

double fo_grad_norm(int dtype, int ntensors, const void *const *gs, const fo_index *ns,
                    int kind, double p, int n_threads)
{
    fo_index total = 0, nb = 0;
    for (int t = 0; t < ntensors; t++) { total += ns[t]; nb += fo_nblocks(ns[t]); }
    const int nt = fo_threads_for(total, nb, n_threads);
    fo_norm_piece pc[FO_NORM_ROUND];
    double part[FO_NORM_ROUND], acc = 0.0;
    fo_norm_ctx c = {fo_active, dtype, kind, p, gs, pc, part};
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
        fo_parallel(nt, np, fo_norm_range, &c);
        for (int k = 0; k < np; k++) {
            if (kind != FO_NORM_MAX) acc += part[k];
            else if ((part[k] > acc || part[k] != part[k]) && acc == acc) acc = part[k];
        }
    }
    return acc;
}

/* ---------------------------------------------------------------- Adafactor
 * A tensor is cut into units by its shape alone.  Factored, as B matrices of R rows of C
 * elements (fo_af_dims: C = nq*nm*ns): when a matrix has at most FO_BLOCK elements a unit
 * is FO_BLOCK/(R*C) whole matrices (at least one); else a unit is FO_AF_ROWS(C) rows of
 * one matrix, whose column sums are partials (C doubles each, in scratch, with nq*ns more
 * for a row's sums when those are not single) added in unit order.  A vector: units of
 * FO_BLOCK elements.
 * The units of a pass run in parallel in rounds of at most fo_af_round(C); their sums
 * (||p||^2, ||U||^2: one double per unit, lanes folded) are added in unit order. */
#define FO_AF_ROWS(c) ((c) >= FO_BLOCK / 64 ? (fo_index)64 : FO_BLOCK / (c))
#define FO_AF_ROUND 256
#define FO_AF_SCRATCH ((fo_index)1 << 20)

static fo_index fo_af_round(fo_index nc)
{
    fo_index u = FO_AF_SCRATCH / (nc > 0 ? nc : 1);
    return u < 2 ? 2 : u > FO_AF_ROUND ? FO_AF_ROUND : u;
}

/* The unit layout of a factored tensor. */
typedef struct {
    fo_index nb, nr, nc, units;
    fo_index mb;        /* whole matrices per unit (small matrices), else 0 */
    fo_index h, upm;    /* rows per unit, units per matrix (large matrices) */
    fo_index nq, nm, ns, rs, pw;    /* the row's axes; rs = nq*ns row statistics per row;
                                     * pw: the doubles of one unit's partial sums */
    int norm_cols;
} fo_af_layout;

static fo_af_layout fo_af_layout_of(const fo_af_dims *d)
{
    const fo_index nb = d->nb, nr = d->nr, nc = d->nq * d->nm * d->ns;
    fo_af_layout L = {nb, nr, nc, 0, 0, 0, 0, d->nq, d->nm, d->ns, d->nq * d->ns, nc,
                      d->norm_cols};
    if (L.rs > 1) L.pw += L.rs;
    if (nr * nc <= FO_BLOCK) {
        L.mb = FO_BLOCK / (nr * nc > 0 ? nr * nc : 1);
        if (L.mb < 1) L.mb = 1;
        L.units = (nb + L.mb - 1) / L.mb;
    } else {
        L.h = FO_AF_ROWS(nc);
        if (L.h > nr) L.h = nr;
        L.upm = (nr + L.h - 1) / L.h;
        L.units = nb * L.upm;
    }
    return L;
}

/* Scratch: the running column sum (pw doubles), one partial per unit of a round (pw
 * each), then per matrix its mean row_var (nb), the min and max of its col_var (2*nb) and
 * its column factors (nb*nc elements of the tensor's type: 1/sqrt(col_var), or optax's),
 * then optax's row factors (nb*nr*rs elements): at these offsets. */
static fo_index fo_af_rmc_at(const fo_af_layout *L)
{
    fo_index u = fo_af_round(L->pw);
    return L->pw * (1 + (u < L->units ? u : L->units));
}

/* Those per-matrix areas of a tensor's scratch. */
typedef struct { double *rmc, *cvb; char *binv, *rf; } fo_af_areas;

static fo_af_areas fo_af_areas_of(const fo_af_layout *L, double *scratch)
{
    fo_af_areas A;
    A.rmc = scratch + fo_af_rmc_at(L);
    A.cvb = A.rmc + L->nb;
    A.binv = (char *)(A.cvb + 2 * L->nb);
    A.rf = (char *)(A.cvb + 2 * L->nb + L->nb * L->nc);
    return A;
}

fo_index fo_adafactor_scratch(const fo_af_dims *d)
{
    fo_af_layout L = fo_af_layout_of(d);
    return fo_af_rmc_at(&L) + 3 * L.nb + L.nb * L.nc + L.nb * L.nr * L.rs;
}

static double fo_round_to(int dtype, double x) { return dtype == FO_F32 ? (double)(float)x : x; }
/* Python's max(a, b) (a when b is NaN or not larger) */
static double fo_pymax(double a, double b) { return b > a ? b : a; }


/* The per-tensor scalars of the update, from the sums of p*p and U*U over n elements.
 * torch (Python floats, the norms read as the element type's values): alpha =
 * max(eps2, ||p||/sqrt(n))*rho, denom = max(1, ||U||/(sqrt(n)*d)); returns the update's
 * factor -alpha/denom in the element type.  Keras (every scalar in the element type):
 * alpha = max(eps2, rms(p))*rho, rms = sqrt(sum/n); returns denom = max(1, rms(U)/d)
 * and *alpha (the update divides by denom, then multiplies by alpha).  optax: Keras'
 * with rho = 1 (alpha: scale_by_param_block_rms' factor, denom: clip_by_block_rms'). */
static double fo_af_coef(const fo_adafactor_args *a, int dtype, fo_index n, double psum,
                         double usum, double *alpha_out)
{
    if (a->form != FO_AF_TORCH) {
        const double nn = fo_round_to(dtype, (double)n);
        const double rp = fo_round_to(dtype, sqrt(fo_round_to(dtype, fo_round_to(dtype, psum) / nn)));
        const double ru = fo_round_to(dtype, sqrt(fo_round_to(dtype, fo_round_to(dtype, usum) / nn)));
        const double e2 = fo_round_to(dtype, a->eps2);
        *alpha_out = fo_round_to(dtype, (rp > e2 || rp != rp ? rp : e2) * a->rho);
        const double q = fo_round_to(dtype, ru / fo_round_to(dtype, a->d));
        return q > 1.0 || q != q ? q : 1.0;
    }
    const double sn = pow((double)n, 0.5);
    const double alpha = fo_pymax(a->eps2, fo_round_to(dtype, sqrt(psum)) / sn) * a->rho;
    const double denom = fo_pymax(1.0, fo_round_to(dtype, sqrt(usum)) / (sn * a->d));
    *alpha_out = 0.0;
    return fo_round_to(dtype, -alpha / denom);
}

typedef struct {
    const fo_table *tab;
    const fo_adafactor_args *a;
    int dtype;
    fo_index esz;
    char *p, *g, *rv, *cv;
    fo_af_layout L;
    double *scratch;
} fo_af_ctx;

/* Unit u's first matrix and row and its matrices (small) or rows (large). */
static void fo_af_unit(const fo_af_layout *L, fo_index u, fo_index *b0, fo_index *b1,
                       fo_index *r0, fo_index *r1)
{
    if (L->mb) {
        *b0 = u * L->mb;
        *b1 = *b0 + L->mb < L->nb ? *b0 + L->mb : L->nb;
        *r0 = 0; *r1 = L->nr;
    } else {
        *b0 = u / L->upm; *b1 = *b0 + 1;
        *r0 = (u % L->upm) * L->h;
        *r1 = *r0 + L->h < L->nr ? *r0 + L->h : L->nr;
    }
}

#define FO_AF_AT(c, base, elem) ((void *)((c)->base + (elem) * (c)->esz))

/* Pass 1 of unit u: row statistics, column sums (partial: into col). */
static void fo_af_pass1(const fo_af_ctx *c, fo_index u, double *col)
{
    const fo_af_layout *L = &c->L;
    fo_index b0, b1, r0, r1;
    fo_af_unit(L, u, &b0, &b1, &r0, &r1);
    for (fo_index b = b0; b < b1; b++) {
        const fo_index e0 = (b * L->nr + r0) * L->nc;
        for (fo_index j = 0; j < L->nc; j++) col[j] = 0.0;
        if (L->rs == 1)
            FO_CALL(c->tab, af_rows, c->dtype, c->a, FO_AF_AT(c, g, e0),
                    FO_AF_AT(c, rv, b * L->nr + r0), col, r1 - r0, L->nc);
        else
            FO_CALL(c->tab, af_rows_gen, c->dtype, c->a, FO_AF_AT(c, g, e0),
                    FO_AF_AT(c, rv, (b * L->nr + r0) * L->rs), col, col + L->nc, r1 - r0,
                    L->nq, L->nm, L->ns);
        if (L->mb)      /* whole matrices: their columns are complete */
            FO_CALL(c->tab, af_cols, c->dtype, c->a, col, FO_AF_AT(c, cv, b * L->nc), L->nc,
                    L->nr);
    }
}

/* Pass 2 of unit u: ||U||^2 (returned) and ||p||^2 (into *psum); pass 3 (apply): the
 * update. */
static double fo_af_pass23(const fo_af_ctx *c, fo_index u, int apply, double coef,
                           double alpha, double *psum)
{
    const fo_af_layout *L = &c->L;
    const fo_af_areas A = fo_af_areas_of(L, c->scratch);
    const double *rmc = A.rmc, *cvb = A.cvb;
    char *binv = A.binv, *rf = A.rf;
    fo_index b0, b1, r0, r1;
    fo_af_unit(L, u, &b0, &b1, &r0, &r1);
    double uacc[FO_LANES] = {0}, pacc[FO_LANES] = {0};
    for (fo_index b = b0; b < b1; b++) {
        const fo_index e0 = (b * L->nr + r0) * L->nc;
        void *bi = binv + b * L->nc * c->esz;
        void *rfu = rf + (b * L->nr + r0) * L->rs * c->esz;
        if (c->a->form == FO_AF_OPTAX && apply)
            FO_CALL(c->tab, af_oapply, c->dtype, c->a, FO_AF_AT(c, p, e0), FO_AF_AT(c, g, e0),
                    rfu, bi, r1 - r0, L->nq, L->nm, L->ns, L->norm_cols, coef, alpha);
        else if (c->a->form == FO_AF_OPTAX)
            FO_CALL(c->tab, af_onorm, c->dtype, c->a, FO_AF_AT(c, p, e0), FO_AF_AT(c, g, e0),
                    rfu, bi, r1 - r0, L->nq, L->nm, L->ns, L->norm_cols, uacc, pacc);
        else if (apply)
            FO_CALL(c->tab, af_apply, c->dtype, c->a, FO_AF_AT(c, p, e0), FO_AF_AT(c, g, e0),
                    FO_AF_AT(c, rv, b * L->nr + r0), FO_AF_AT(c, cv, b * L->nc), bi, rmc[b],
                    cvb + 2 * b, r1 - r0, L->nc, coef, alpha);
        else
            FO_CALL(c->tab, af_unorm, c->dtype, c->a, FO_AF_AT(c, p, e0), FO_AF_AT(c, g, e0),
                    FO_AF_AT(c, rv, b * L->nr + r0), FO_AF_AT(c, cv, b * L->nc), bi, rmc[b],
                    cvb + 2 * b, r1 - r0, L->nc, uacc, pacc);
    }
    if (apply)
        return 0.0;
    FO_FOLD_LANES(uacc);
    FO_FOLD_LANES(pacc);
    *psum = pacc[0];
    return uacc[0];
}

/* Units u0 + [k0, k1) of one pass of a factored tensor: pass 1 (part1: each unit's column
 * partials), pass 2 (part2, ppart2: each unit's two sums) or pass 3 (the update). */
typedef struct {
    const fo_af_ctx *c;
    fo_index u0, pw;
    double *part1, *part2, *ppart2;
    double coef, alpha;
} fo_af_pass;

static int fo_af_units(void *ctx, fo_index k0, fo_index k1)
{
    const fo_af_pass *x = ctx;
    for (fo_index k = k0; k < k1; k++) {
        if (x->part1) fo_af_pass1(x->c, x->u0 + k, x->part1 + k * x->pw);
        else if (x->part2)
            x->part2[k] = fo_af_pass23(x->c, x->u0 + k, 0, 0.0, 0.0, x->ppart2 + k);
        else fo_af_pass23(x->c, x->u0 + k, 1, x->coef, x->alpha, NULL);
    }
    return 0;
}

/* Matrices [b0, b1) of a factored tensor: the clamped mean row_var, min(col_var) and
 * column factors (optax: its row and column factors). */
static int fo_af_matrices(void *ctx, fo_index b0, fo_index b1)
{
    const fo_af_ctx *c = ctx;
    const fo_af_layout *L = &c->L;
    const fo_index nc = L->nc;
    const fo_af_areas A = fo_af_areas_of(L, c->scratch);
    for (fo_index b = b0; b < b1; b++) {
        if (c->a->form == FO_AF_OPTAX) {
            FO_CALL(c->tab, af_ofactors, c->dtype, FO_AF_AT(c, rv, b * L->nr * L->rs),
                    FO_AF_AT(c, cv, b * nc), (void *)(A.rf + b * L->nr * L->rs * c->esz),
                    (void *)(A.binv + b * nc * c->esz), L->nr, L->nq, L->nm, L->ns,
                    L->norm_cols);
            continue;
        }
        A.rmc[b] = FO_CALL(c->tab, af_rmean, c->dtype, c->a, FO_AF_AT(c, rv, b * L->nr),
                           L->nr);
        FO_CALL(c->tab, af_colinv, c->dtype, FO_AF_AT(c, cv, b * nc),
                (void *)(A.binv + b * nc * c->esz), nc, A.cvb + 2 * b);
    }
    return 0;
}

/* One factored tensor: pass 1 (statistics), pass 2 (||U||, ||p||), pass 3 (update). */
static void fo_af_factored(fo_af_ctx *c, int nt)
{
    const fo_af_layout *L = &c->L;
    const fo_index nc = L->nc, pw = L->pw, round = fo_af_round(pw);
    double *acc = c->scratch, *parts = c->scratch + pw;
    double psum = 0.0, usum = 0.0, part[FO_AF_ROUND], ppart[FO_AF_ROUND];
    fo_af_pass x = {c, 0, pw, parts, NULL, NULL, 0.0, 0.0};
    for (fo_index u0 = 0; u0 < L->units; u0 += round) {
        const fo_index ru = L->units - u0 < round ? L->units - u0 : round;
        x.u0 = u0;
        fo_parallel(nt, ru, fo_af_units, &x);
        for (fo_index k = 0; k < ru && !L->mb; k++) {
            const fo_index u = u0 + k, j = u % L->upm, b = u / L->upm;
            const double *pc = parts + k * pw;
            if (j == 0) for (fo_index i = 0; i < nc; i++) acc[i] = pc[i];
            else for (fo_index i = 0; i < nc; i++) acc[i] += pc[i];
            if (j == L->upm - 1)
                FO_CALL(c->tab, af_cols, c->dtype, c->a, acc, FO_AF_AT(c, cv, b * nc), nc,
                        L->nr);
        }
    }
    fo_parallel(nt, L->nb, fo_af_matrices, c);
    x.part1 = NULL;
    x.part2 = part;
    x.ppart2 = ppart;
    for (fo_index u0 = 0; u0 < L->units; u0 += round) {
        const fo_index ru = L->units - u0 < round ? L->units - u0 : round;
        x.u0 = u0;
        fo_parallel(nt, ru, fo_af_units, &x);
        for (fo_index k = 0; k < ru; k++) { usum += part[k]; psum += ppart[k]; }
    }
    const fo_index n = L->nb * L->nr * nc;
    x.coef = fo_af_coef(c->a, c->dtype, n, psum, usum, &x.alpha);
    x.u0 = 0;
    x.part2 = x.ppart2 = NULL;
    fo_parallel(nt, L->units, fo_af_units, &x);
}

/* ---------------------------------------------------------------- per-tensor two passes
 * A step whose update of a tensor needs two sums over it first (Adafactor's vectors,
 * LAMB): pass 1 over blocks of FO_BLOCK elements returns each block's two sums, added in
 * block order (FO_AF_ROUND blocks at a time in parallel); pass 2 updates the blocks with
 * one coefficient made from the totals. */
typedef void (*fo_sums_fn)(const void *ctx, fo_index i0, fo_index len, double *s0,
                           double *s1);
typedef void (*fo_blocks_fn)(const void *ctx, fo_index i0, fo_index len, double coef);

/* Blocks u0 + [k0, k1) of a tensor of n elements: their sums (into p0, p1) when sums is
 * set, else their update with coef. */
typedef struct {
    fo_sums_fn sums;
    fo_blocks_fn blocks;
    const void *ctx;
    fo_index n, u0;
    double *p0, *p1, coef;
} fo_tensor_pass;

static int fo_tensor_range(void *ctx, fo_index k0, fo_index k1)
{
    const fo_tensor_pass *x = ctx;
    for (fo_index k = k0; k < k1; k++) {
        const fo_index i0 = (x->u0 + k) * FO_BLOCK;
        const fo_index len = x->n - i0 < FO_BLOCK ? x->n - i0 : FO_BLOCK;
        if (x->sums) x->sums(x->ctx, i0, len, x->p0 + k, x->p1 + k);
        else x->blocks(x->ctx, i0, len, x->coef);
    }
    return 0;
}

static void fo_tensor_sums(fo_sums_fn fn, const void *ctx, fo_index n, int nt, double *s0,
                           double *s1)
{
    const fo_index nbk = fo_nblocks(n);
    double t0 = 0.0, t1 = 0.0, p0[FO_AF_ROUND], p1[FO_AF_ROUND];
    fo_tensor_pass x = {fn, NULL, ctx, n, 0, p0, p1, 0.0};
    for (fo_index u0 = 0; u0 < nbk; u0 += FO_AF_ROUND) {
        const fo_index ru = nbk - u0 < FO_AF_ROUND ? nbk - u0 : FO_AF_ROUND;
        x.u0 = u0;
        fo_parallel(nt, ru, fo_tensor_range, &x);
        for (fo_index k = 0; k < ru; k++) { t0 += p0[k]; t1 += p1[k]; }
    }
    *s0 = t0;
    *s1 = t1;
}

static void fo_tensor_blocks(fo_blocks_fn fn, const void *ctx, fo_index n, int nt,
                             double coef)
{
    fo_tensor_pass x = {NULL, fn, ctx, n, 0, NULL, NULL, coef};
    fo_parallel(nt, fo_nblocks(n), fo_tensor_range, &x);
}

/* One vector Adafactor tensor (its variance v). */
typedef struct { const fo_af_ctx *c; void *v; double alpha; } fo_af_vec_ctx;

static void fo_af_vec_sums(const void *ctx, fo_index i0, fo_index len, double *ps,
                           double *us)
{
    const fo_af_vec_ctx *x = ctx;
    const fo_af_ctx *c = x->c;
    double pacc[FO_LANES] = {0}, uacc[FO_LANES] = {0};
    FO_CALL(c->tab, af_vec, c->dtype, c->a, FO_OFF(c->p, i0, c->esz),
            FO_OFF(c->g, i0, c->esz), FO_OFF(x->v, i0, c->esz), len, pacc, uacc);
    FO_FOLD_LANES(pacc);
    FO_FOLD_LANES(uacc);
    *ps = pacc[0];
    *us = uacc[0];
}

static void fo_af_vec_blocks(const void *ctx, fo_index i0, fo_index len, double coef)
{
    const fo_af_vec_ctx *x = ctx;
    const fo_af_ctx *c = x->c;
    FO_CALL(c->tab, af_vec_apply, c->dtype, c->a, FO_OFF(c->p, i0, c->esz),
            FO_OFF(c->g, i0, c->esz), FO_OFF(x->v, i0, c->esz), len, coef, x->alpha);
}

static void fo_af_vector(const fo_af_ctx *c, void *v, fo_index n, int nt)
{
    fo_af_vec_ctx x = {c, v, 0.0};
    double psum, usum;
    fo_tensor_sums(fo_af_vec_sums, &x, n, nt, &psum, &usum);
    const double coef = fo_af_coef(c->a, c->dtype, n, psum, usum, &x.alpha);
    fo_tensor_blocks(fo_af_vec_blocks, &x, n, nt, coef);
}

void fo_adafactor(int dtype, const fo_adafactor_args *a, int ntensors, void *const *ps,
                  const void *const *gs, void *const *rows, void *const *cols,
                  void *const *vars, const fo_af_dims *dims, double *scratch,
                  int n_threads)
{
    for (int t = 0; t < ntensors; t++) {
        const fo_af_dims *d = dims + t;
        const fo_index n = d->nb * d->nr * d->nq * d->nm * d->ns;
        if (n == 0) continue;
        fo_af_ctx c = {fo_active, a, dtype, FO_ESZ(dtype), ps[t], (char *)gs[t],
                       rows ? rows[t] : NULL, cols ? cols[t] : NULL, fo_af_layout_of(d),
                       scratch};
        const int nt = fo_threads_for(n, fo_nblocks(n), n_threads);
        if (vars && vars[t]) fo_af_vector(&c, vars[t], n, nt);
        else fo_af_factored(&c, nt);
    }
}

/* ---------------------------------------------------------------- LAMB */
typedef struct {
    const fo_table *tab;
    const fo_lamb_args *a;
    int dtype;
    fo_index esz;
    char *p, *m, *v;
    const char *g;
} fo_lamb_ctx;

static void fo_lamb_sums(const void *ctx, fo_index i0, fo_index len, double *ps, double *us)
{
    const fo_lamb_ctx *c = ctx;
    FO_CALL(c->tab, lamb_stats, c->dtype, c->a, FO_OFF(c->p, i0, c->esz),
            FO_OFF((void *)c->g, i0, c->esz), FO_OFF(c->m, i0, c->esz),
            FO_OFF(c->v, i0, c->esz), len, ps, us);
}

static void fo_lamb_blocks(const void *ctx, fo_index i0, fo_index len, double coef)
{
    const fo_lamb_ctx *c = ctx;
    FO_CALL(c->tab, lamb_apply, c->dtype, c->a, FO_OFF(c->p, i0, c->esz),
            FO_OFF(c->m, i0, c->esz), FO_OFF(c->v, i0, c->esz), len, coef);
}

/* The trust ratio from the two sums, each norm rounded to the element type: optax's
 * pn/un (1 when either is 0) or Keras' (1 unless both are > 0); Keras' factor r*lr. */
static double fo_lamb_coef(const fo_lamb_args *a, int dtype, double psum, double usum)
{
    const double pn = fo_round_to(dtype, sqrt(psum)), un = fo_round_to(dtype, sqrt(usum));
    if (a->trust == FO_LAMB_OPTAX)
        return pn == 0.0 || un == 0.0 ? 1.0 : fo_round_to(dtype, pn / un);
    const double r = pn > 0.0 && un > 0.0 ? fo_round_to(dtype, pn / un) : 1.0;
    return fo_round_to(dtype, r * fo_round_to(dtype, a->adam.lr));
}

void fo_lamb(int dtype, const fo_lamb_args *a, int ntensors, void *const *ps,
             const void *const *gs, void *const *ms, void *const *vs, const fo_index *ns,
             int n_threads)
{
    for (int t = 0; t < ntensors; t++) {
        const fo_index n = ns[t];
        if (n == 0) continue;
        const fo_lamb_ctx c = {fo_active, a, dtype, FO_ESZ(dtype), ps[t], ms[t], vs[t],
                               gs[t]};
        const int nt = fo_threads_for(n, fo_nblocks(n), n_threads);
        double psum, usum;
        fo_tensor_sums(fo_lamb_sums, &c, n, nt, &psum, &usum);
        fo_tensor_blocks(fo_lamb_blocks, &c, n, nt, fo_lamb_coef(a, dtype, psum, usum));
    }
}

/* ---------------------------------------------------------------- reductions
 * Sum of per-block partials in block order; blocks of one round run in parallel.  A
 * reduction kernel is a block function over the call described by ctx. */
#define FO_ROUND 4096
typedef double (*fo_block_fn)(const void *ctx, fo_index i0, fo_index i1);
typedef struct {
    fo_block_fn fn;
    const void *ctx;
    fo_index n, unit, r0;
    double *part;
} fo_reduce_pass;

static int fo_reduce_range(void *ctx, fo_index b0, fo_index b1)
{
    const fo_reduce_pass *x = ctx;
    for (fo_index b = b0; b < b1; b++) {
        const fo_index i0 = (x->r0 + b) * x->unit;
        x->part[b] = x->fn(x->ctx, i0, i0 + x->unit < x->n ? i0 + x->unit : x->n);
    }
    return 0;
}

/* Blocks of `unit` items out of n (the call moves `work` elements in all). */
static double fo_reduce_units(fo_block_fn fn, const void *ctx, fo_index n, fo_index unit,
                              fo_index work, int n_threads)
{
    fo_index nb = (n + unit - 1) / unit;
    int nt = fo_threads_for(work, nb, n_threads);
    double total = 0.0;
    double part[FO_ROUND];
    fo_reduce_pass x = {fn, ctx, n, unit, 0, part};
    for (fo_index r0 = 0; r0 < nb; r0 += FO_ROUND) {
        fo_index rn = nb - r0 < FO_ROUND ? nb - r0 : FO_ROUND;
        x.r0 = r0;
        fo_parallel(nt, rn, fo_reduce_range, &x);
        for (fo_index b = 0; b < rn; b++) total += part[b];
    }
    return total;
}

static double fo_reduce(fo_block_fn fn, const void *ctx, fo_index n, int n_threads)
{
    return fo_reduce_units(fn, ctx, n, FO_BLOCK, n, n_threads);
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

static double fo_sce_blocks(const void *ctx, fo_index r0, fo_index r1)
{
    const fo_loss_ctx *c = ctx;
    return FO_CALL(c->tab, sce_rows, c->dtype, (const fo_sce_args *)c->a, r0, r1);
}

/* Chunks [k0, k1) of row r in one phase: the maximum of the range, at out[k0], or each
 * chunk's sums (out + 4k) or gradient. */
typedef struct {
    const fo_table *tab;
    int dtype, phase;
    const fo_sce_args *a;
    fo_index r;
    const double *par;
    double *out;
} fo_sce_phase;

static int fo_sce_chunks(void *ctx, fo_index k0, fo_index k1)
{
    const fo_sce_phase *x = ctx;
    if (x->phase == FO_SCE_MAX) {
        x->out[k0] = FO_CALL(x->tab, sce_part, x->dtype, x->a, x->r, FO_SCE_MAX, k0, k1,
                             NULL, NULL);
        return 0;
    }
    for (fo_index k = k0; k < k1; k++)
        FO_CALL(x->tab, sce_part, x->dtype, x->a, x->r, x->phase, k, k + 1, x->par,
                x->out ? x->out + 4 * k : NULL);
    return 0;
}

/* Fewer rows than threads, each of several chunks: each row split across the threads,
 * phase by phase (sce_part), the loss summed as fo_reduce_units would over blocks of
 * `unit` rows.  Every chunk computes what it computes in a row of its own, and the
 * chunks' sums are added in row order: the results of one thread.  Returns 0 with *ok
 * unset when its scratch cannot be allocated. */
static double fo_sce_split(int dtype, const fo_sce_args *a, fo_index unit, int nt, int *ok)
{
    const fo_table *tab = fo_active;
    const fo_index nch = (a->ncols + FO_SCE_CHUNK - 1) / FO_SCE_CHUNK;
    double *cs = malloc((size_t)nch * 5 * sizeof(double));
    double *mx = cs ? cs + nch * 4 : NULL;     /* each thread's maximum, at its first chunk */
    double total = 0.0, part = 0.0;
    *ok = cs != NULL;
    for (fo_index r = 0; r < a->nrows && cs; r++) {
        double l;
        if (a->q == NULL && a->index[r] == a->ignore_index) {
            l = FO_CALL(tab, sce_rows, dtype, a, r, r + 1);
        } else {
            double par[5], ab[5];
            fo_sce_phase x = {tab, dtype, FO_SCE_MAX, a, r, NULL, mx};
            for (fo_index k = 0; k < nch; k++) mx[k] = -INFINITY;
            memset(cs, 0, (size_t)nch * 4 * sizeof(double));
            fo_parallel(nt, nch, fo_sce_chunks, &x);
            par[0] = -INFINITY;         /* the maximum, by sce_max's rule: exact */
            for (fo_index k = 0; k < nch; k++) par[0] = mx[k] > par[0] ? mx[k] : par[0];
            x.phase = FO_SCE_SUMS;
            x.par = par;
            x.out = cs;
            fo_parallel(nt, nch, fo_sce_chunks, &x);
            par[1] = par[2] = par[3] = par[4] = 0.0;
            for (fo_index k = 0; k < nch; k++)
                for (int j = 0; j < 4; j++) par[1 + j] += cs[4 * k + j];
            l = FO_CALL(tab, sce_part, dtype, a, r, FO_SCE_FINISH, 0, 0, par, ab);
            ab[4] = par[0];
            if (a->grad) {
                x.phase = FO_SCE_GRAD;
                x.par = ab;
                x.out = NULL;
                fo_parallel(nt, nch, fo_sce_chunks, &x);
            }
        }
        part += l;
        if ((r + 1) % unit == 0 || r + 1 == a->nrows) {
            total += part;
            part = 0.0;
        }
    }
    free(cs);
    return total;
}

/* Blocks of whole rows, about FO_BLOCK elements each (at least one row); fewer rows
 * than threads: each row split across them. */
double fo_sce(int dtype, const fo_sce_args *a, int n_threads)
{
    fo_loss_ctx c = {fo_active, dtype, a};
    fo_index C = a->ncols > 0 ? a->ncols : 1;
    fo_index rows = FO_BLOCK / C > 0 ? FO_BLOCK / C : 1;
    fo_index nch = (C + FO_SCE_CHUNK - 1) / FO_SCE_CHUNK;
    int nt = fo_threads_for(a->nrows * C, nch, n_threads);
    if (nt > 1 && a->nrows < nt && nch >= 2 * (fo_index)nt) {
        int ok;
        double total = fo_sce_split(dtype, a, rows, nt, &ok);
        if (ok) return total;
    }
    return fo_reduce_units(fo_sce_blocks, &c, a->nrows, rows, a->nrows * C, n_threads);
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

typedef struct {
    const fo_table *tab;
    int dtype, pattern;
    void *a;
    const void *b;
    void *c, *d;
    fo_index n;
} fo_stream_ctx;

static int fo_stream_range(void *ctx, fo_index b0, fo_index b1)
{
    const fo_stream_ctx *x = ctx;
    const fo_index esz = FO_ESZ(x->dtype);
    for (fo_index blk = b0; blk < b1; blk++) {
        fo_index i0 = blk * FO_BLOCK, len = x->n - i0 < FO_BLOCK ? x->n - i0 : FO_BLOCK;
        FO_CALL(x->tab, stream, x->dtype, x->pattern, FO_OFF(x->a, i0, esz),
                FO_OFF((void *)x->b, i0, esz), FO_OFF(x->c, i0, esz), FO_OFF(x->d, i0, esz),
                len);
    }
    return 0;
}

void fo_stream(int dtype, int pattern, void *a, const void *b, void *c, void *d, fo_index n,
               int n_threads)
{
    fo_stream_ctx x = {fo_active, dtype, pattern, a, b, c, d, n};
    fo_parallel(fo_threads_for(n, fo_nblocks(n), n_threads), fo_nblocks(n), fo_stream_range,
                &x);
}
