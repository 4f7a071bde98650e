/* SVE path (aarch64, any vector length): the kernels vectorised by the compiler with
 * scalable vectors and predicated tails.  FMA is never contracted (-ffp-contract=off) and
 * reductions keep their fixed lane order, so the bits are those of every other path.  On
 * other architectures, or without a compiler that targets SVE per function, the path is
 * not built and the dispatcher never selects it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "fo_kernels.h"

#if FO_HAVE_SVE_PATH
#pragma GCC target("+sve")
#define FO_ISA sve
#include "fo_isa.h"
#else
typedef int fo_no_sve_path;
#endif
