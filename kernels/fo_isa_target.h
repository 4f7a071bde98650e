/* fusedopt: compiles fo_isa.h for one x86 instruction set, function by function.
 * The including file defines FO_ISA (the name suffix) and the target strings
 * FO_TARGET_GCC and FO_TARGET_CLANG.  gcc takes #pragma GCC target; clang ignores that
 * pragma and takes #pragma clang attribute instead (applied to every function defined
 * in between).  Without either compiler, or off x86, the path is not built and the
 * dispatcher never selects it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "fo_kernels.h"

#if FO_HAVE_X86_PATHS
#define FO_PRAGMA_(x) _Pragma(#x)
#define FO_PRAGMA(x) FO_PRAGMA_(x)
#if defined(__clang__)
FO_PRAGMA(clang attribute push(__attribute__((target(FO_TARGET_CLANG))), apply_to = function))
#include "fo_isa.h"
FO_PRAGMA(clang attribute pop)
#else
FO_PRAGMA(GCC target(FO_TARGET_GCC))
#include "fo_isa.h"
#endif
#else
typedef int fo_no_x86_path;
#endif
