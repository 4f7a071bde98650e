/* fusedopt: what every family header shares (included by fo_isa.h before the families).
 *
 * A family header is a template over the element type: fo_isa.h includes it once with
 *   FO_T      element type (float or double)
 *   FO_TS     type suffix (f32 or f64), selects the fo_math.h functions
 *   FO_SQRT   the square root of FO_T
 *   FO_NAME   macro building a function name for this type and path
 * Each formula lives in one always-inline function; the flags that choose a variant are
 * arguments that the kernel's dispatch passes as constants where a specialisation pays
 * (measured: see the comment at each dispatch), so gcc compiles one loop per variant with
 * no branch inside; any other combination runs the same body with run-time flags.
 */
#ifndef FO_COMMON_H
#define FO_COMMON_H
#include <stdint.h>
#include "fusedopt.h"
#include "fo_math.h"

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)
#define FO_INLINE static inline __attribute__((always_inline))
#define FO_EXPNEG FO_CAT(fo_exp_neg, FO_TS)
#define FO_LOG1P FO_CAT(fo_log1p_unit, FO_TS)
/* Elements per 64-byte cache line, and a prefetch `bytes` past p (rw 1: for writing).
 * Integer arithmetic: the address may lie past the array (prefetches never fault). */
#define FO_LINE_ELEMS ((fo_index)(64 / sizeof(FO_T)))
#define FO_PREFETCH_AT(p, bytes, rw) \
    __builtin_prefetch((const void *)((uintptr_t)(p) + (bytes)), rw, 3)
/* The elementwise optimizers walk their arrays a line at a time, [i0, FO_LINE_END(i0, n)),
 * prefetching each array FO_AHEAD bytes past i0 (FO_AHEAD_R / FO_AHEAD_W: to read only,
 * to write): the hardware prefetchers alone left them at 78-95 % of the bandwidth
 * ceiling out of cache, this at 100-110 % (bench/RESULTS.md). */
#define FO_AHEAD 2048
#define FO_LINE_END(i0, n) ((n) - (i0) < FO_LINE_ELEMS ? (n) : (i0) + FO_LINE_ELEMS)
#define FO_AHEAD_R(a, i0) FO_PREFETCH_AT((a) + (i0), FO_AHEAD, 0)
#define FO_AHEAD_W(a, i0) FO_PREFETCH_AT((a) + (i0), FO_AHEAD, 1)
/* The factor an optimizer multiplies each gradient element by: -1 for maximize, times the
 * clip coefficient of its args' grad_scale (1 without clipping; torch clips the gradient,
 * then negates it: the same product). */
#define FO_GRAD_FACTOR(a) ((FO_T)((a)->maximize ? -(a)->grad_scale : (a)->grad_scale))
#endif
