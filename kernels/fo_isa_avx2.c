/* AVX2 + FMA path (FMA is allowed by the target but never contracted: -ffp-contract=off). */
#define FO_ISA avx2
#define FO_TARGET_GCC "avx2,fma"
#define FO_TARGET_CLANG "avx2,fma"
#include "fo_isa_target.h"
