/* AVX-512 (F, VL, DQ, BW) path, 512-bit vectors. */
#include "fo_kernels.h"
#if FO_HAVE_X86_PATHS
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512")
#define FO_ISA avx512
#include "fo_isa.h"
#else
typedef int fo_no_avx512_path;
#endif
