/* fusedopt: every family for float and double under one CPU path, and that path's table.
 * The including file (fo_isa_*.c) defines FO_ISA (the name suffix) and, for x86 paths,
 * sets the target for every function that follows (fo_isa_target.h), so that the inline math
 * and every loop below are compiled for that instruction set. */
#include "fo_common.h"
#include "fo_kernels.h"

#define FO_NAME3_(f, t, isa) fo_##f##_##t##_##isa
#define FO_NAME3(f, t, isa) FO_NAME3_(f, t, isa)

#define FO_NAME(f) FO_NAME3(f, FO_TS, FO_ISA)
#define FO_FAMILIES

#define FO_T float
#define FO_TS f32
#define FO_SQRT __builtin_sqrtf
#include "fo_kernels.def"
#undef FO_T
#undef FO_TS
#undef FO_SQRT

#define FO_T double
#define FO_TS f64
#define FO_SQRT __builtin_sqrt
#include "fo_kernels.def"
#undef FO_T
#undef FO_TS
#undef FO_SQRT

#undef FO_FAMILIES
#undef FO_NAME

#define FO_TABLE_NAME_(isa) fo_table_##isa
#define FO_TABLE_NAME(isa) FO_TABLE_NAME_(isa)
const fo_table FO_TABLE_NAME(FO_ISA) = {
#define FO_KERNEL(name, ret, params) \
    .name##_f32 = FO_NAME3(name, f32, FO_ISA), .name##_f64 = FO_NAME3(name, f64, FO_ISA),
#define FO_OPTIMIZER(name) FO_KERNEL(name, void, FO_STEP_PARAMS)
#include "fo_kernels.def"
#undef FO_OPTIMIZER
#undef FO_KERNEL
};
