/* AVX2 + FMA path (FMA is allowed by the target but never contracted: -ffp-contract=off). */
#include "fo_kernels.h"
#if FO_HAVE_X86_PATHS
#pragma GCC target("avx2,fma")
#define FO_ISA avx2
#include "fo_isa.h"
#else
typedef int fo_no_avx2_path;
#endif
