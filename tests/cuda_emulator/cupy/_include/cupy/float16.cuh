// The emulator's stand-in for CuPy's cupy/float16.cuh: CuPy's generated code includes it for
// float16 kernels; the float16 class itself is in cupy_emulator.h, included before the code.
#pragma once
