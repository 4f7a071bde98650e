/* AVX-512 (F, VL, DQ, BW) path, 512-bit vectors. */
#define FO_ISA avx512
#define FO_TARGET_GCC "avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512"
#define FO_TARGET_CLANG "avx512f,avx512vl,avx512dq,avx512bw"
#include "fo_isa_target.h"
