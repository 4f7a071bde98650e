/* fusedopt: instantiate fo_impl.h for float and double under one CPU path.
 * The including file defines FO_ISA (the name suffix) and, for x86 paths, sets the
 * target with #pragma GCC target before including this header, so that the inline math
 * and every loop below are compiled for that instruction set. */
#include "fusedopt.h"
#include "fo_math.h"
#include "fo_kernels.h"

#define FO_NAME3_(f, t, isa) fo_##f##_##t##_##isa
#define FO_NAME3(f, t, isa) FO_NAME3_(f, t, isa)

#define FO_T float
#define FO_TS f32
#define FO_SQRT __builtin_sqrtf
#define FO_NAME(f) FO_NAME3(f, f32, FO_ISA)
#include "fo_impl.h"
#undef FO_T
#undef FO_TS
#undef FO_SQRT
#undef FO_NAME

#define FO_T double
#define FO_TS f64
#define FO_SQRT __builtin_sqrt
#define FO_NAME(f) FO_NAME3(f, f64, FO_ISA)
#include "fo_impl.h"

#define FO_TABLE_NAME_(isa) fo_table_##isa
#define FO_TABLE_NAME(isa) FO_TABLE_NAME_(isa)
const fo_table FO_TABLE_NAME(FO_ISA) = {
    FO_NAME3(adam_range, f32, FO_ISA), FO_NAME3(adam_range, f64, FO_ISA),
    FO_NAME3(sgd_range, f32, FO_ISA), FO_NAME3(sgd_range, f64, FO_ISA),
    FO_NAME3(bce_block, f32, FO_ISA), FO_NAME3(bce_block, f64, FO_ISA),
    FO_NAME3(reg_block, f32, FO_ISA), FO_NAME3(reg_block, f64, FO_ISA),
    FO_NAME3(exp_neg_range, f32, FO_ISA), FO_NAME3(exp_neg_range, f64, FO_ISA),
    FO_NAME3(log1p_unit_range, f32, FO_ISA), FO_NAME3(log1p_unit_range, f64, FO_ISA),
    FO_NAME3(unscale_check_range, f32, FO_ISA), FO_NAME3(unscale_check_range, f64, FO_ISA),
    FO_NAME3(stream_range, f32, FO_ISA), FO_NAME3(stream_range, f64, FO_ISA),
};
