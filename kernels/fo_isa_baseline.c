/* The portable path: whatever the compiler's default target allows (SSE2 on x86-64). */
#define FO_ISA baseline
#include "fo_isa.h"
