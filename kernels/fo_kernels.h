/* fusedopt: the per-path function table (internal to kernels/), made from fo_kernels.def. */
#ifndef FO_KERNELS_H
#define FO_KERNELS_H
#include "fusedopt.h"

/* The AVX2 and AVX-512 paths need a compiler that can target them function by function:
 * gcc (#pragma GCC target) or clang (#pragma clang attribute). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(FO_NO_X86_PATHS)
#define FO_HAVE_X86_PATHS 1
#else
#define FO_HAVE_X86_PATHS 0
#endif

/* The SVE path (aarch64): gcc targets it function by function with #pragma GCC target
 * ("+sve"), from gcc 10 on; clang and older gcc build the NEON baseline only. */
#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10 && \
    !defined(FO_NO_SVE_PATH)
#define FO_HAVE_SVE_PATH 1
#else
#define FO_HAVE_SVE_PATH 0
#endif

/* Sums the FO_LANES double accumulators in a fixed pairwise order. */
#define FO_FOLD_LANES(acc) \
    do { for (int w_ = FO_LANES / 2; w_ > 0; w_ /= 2) \
             for (int j_ = 0; j_ < w_; j_++) (acc)[j_] += (acc)[j_ + w_]; } while (0)

/* The parameters of an optimizer step kernel (FO_OPTIMIZER in fo_kernels.def). */
#define FO_STEP_PARAMS (const void *args, FO_T *p, const FO_T *g, void *const *s, fo_index n)

typedef struct {
#define FO_T float
#define FO_OPTIMIZER(name) void (*name##_f32) FO_STEP_PARAMS;
#define FO_KERNEL(name, ret, params) ret (*name##_f32) params;
#include "fo_kernels.def"
#undef FO_OPTIMIZER
#undef FO_KERNEL
#undef FO_T
#define FO_T double
#define FO_OPTIMIZER(name) void (*name##_f64) FO_STEP_PARAMS;
#define FO_KERNEL(name, ret, params) ret (*name##_f64) params;
#include "fo_kernels.def"
#undef FO_OPTIMIZER
#undef FO_KERNEL
#undef FO_T
} fo_table;

/* Calls kernel `name` of table `tab` for element type `dtype` (FO_F32 or FO_F64); the
 * array arguments are void pointers, converted to the kernel's element type. */
#define FO_CALL(tab, name, dtype, ...) \
    ((dtype) == FO_F32 ? (tab)->name##_f32(__VA_ARGS__) : (tab)->name##_f64(__VA_ARGS__))

extern const fo_table fo_table_baseline;
#if FO_HAVE_X86_PATHS
extern const fo_table fo_table_avx2;
extern const fo_table fo_table_avx512;
#endif
#if FO_HAVE_SVE_PATH
extern const fo_table fo_table_sve;
#endif
#endif
