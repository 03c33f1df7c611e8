/* asm/types.h for the BPF target: the generic integer types (the same on every arch). */
#include <asm-generic/types.h>
