// The emulator's CUDA thread model for RawModule kernels (block reductions with
// __syncthreads and warp shuffles): the threads of one block run as cooperative fibers on one
// host thread, switching at each barrier; blocks run one after another.
//
// - __shared__ variables are function-static: one copy, shared by the block's threads (the
//   blocks never overlap in time). Dynamic (extern) shared memory is not supported.
// - A barrier releases when every thread of the block has reached it or exited.
// - A shuffle is a barrier of the whole block around an exchange through per-lane slots
//   (double-buffered), so it is exact for code where all threads of a block shuffle together,
//   as block reductions do; shuffles under warp-divergent control flow are not emulated.
#pragma once

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>

#define __shared__ static

struct dim3 {
  unsigned int x, y, z;
};
typedef dim3 uint3;

// Each fiber starts through makecontext/swapcontext once; later switches are _setjmp/_longjmp,
// which (unlike swapcontext) make no system call to save the signal mask.
struct __emu_thread {
  ucontext_t ctx;
  jmp_buf resume;
  dim3 tid;
  int state;  // 0 runnable, 1 at a barrier, 2 exited
  int started;
  unsigned shuffles;
};

static __emu_thread *__emu_threads;
static __emu_thread *__emu_cur;
static ucontext_t __emu_start_from;
static jmp_buf __emu_scheduler;
static char *__emu_stacks;
static int __emu_capacity;
static const size_t __emu_stack_size = 64 * 1024;
static unsigned long long __emu_slots[2][1024];
static dim3 blockIdx, blockDim, gridDim;
#define threadIdx (__emu_cur->tid)

inline void __syncthreads() {
  __emu_cur->state = 1;
  if (!_setjmp(__emu_cur->resume)) _longjmp(__emu_scheduler, 1);
}
inline void __syncwarp(unsigned = 0xffffffffu) { __syncthreads(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

inline unsigned __emu_linear() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

template <typename T>
inline T __emu_shuffle(T v, int source_lane, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  unsigned me = __emu_linear();
  unsigned warp_base = me & ~31u;
  unsigned lane = me & 31u;
  unsigned segment = lane & ~(unsigned)(width - 1);
  unsigned buffer = __emu_cur->shuffles++ & 1u;
  memcpy(&__emu_slots[buffer][me], &v, sizeof(T));
  __syncthreads();
  unsigned src = warp_base + segment + ((unsigned)source_lane & (unsigned)(width - 1));
  T r;
  memcpy(&r, &__emu_slots[buffer][src], sizeof(T));
  return r;
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return __emu_shuffle(v, (int)((__emu_linear() & 31u) ^ (unsigned)mask), width);
}
template <typename T>
inline T __shfl_sync(unsigned, T v, int lane, int width = 32) {
  return __emu_shuffle(v, lane, width);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = __emu_linear() & (unsigned)(width - 1);
  return __emu_shuffle(v, (int)(lane + delta < (unsigned)width ? lane + delta : lane), width);
}
template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = __emu_linear() & (unsigned)(width - 1);
  return __emu_shuffle(v, (int)(lane >= delta ? lane - delta : lane), width);
}

inline float __int_as_float(int x) { float r; memcpy(&r, &x, 4); return r; }
inline int __float_as_int(float x) { int r; memcpy(&r, &x, 4); return r; }
inline unsigned __float_as_uint(float x) { unsigned r; memcpy(&r, &x, 4); return r; }
inline float __uint_as_float(unsigned x) { float r; memcpy(&r, &x, 4); return r; }
inline double __longlong_as_double(long long x) { double r; memcpy(&r, &x, 8); return r; }
inline long long __double_as_longlong(double x) { long long r; memcpy(&r, &x, 8); return r; }

// Calls f with its arguments read from a[k] (each pointing at the argument's bytes).
template <typename... A, size_t... I>
inline void __emu_call_impl(void (*f)(A...), void *const *a, std::index_sequence<I...>) {
  f(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>> *>(a[I])...);
}
template <typename... A>
inline void __emu_call(void (*f)(A...), void *const *a) {
  __emu_call_impl(f, a, std::index_sequence_for<A...>{});
}

static void (*__emu_body)(void *const *);
static void *const *__emu_args;

// A fiber runs the body once per block of the grid, parking between blocks.
static void __emu_entry() {
  for (;;) {
    __emu_body(__emu_args);
    __emu_cur->state = 2;
    if (!_setjmp(__emu_cur->resume)) _longjmp(__emu_scheduler, 1);
  }
}

// Runs body over the grid; returns 0, or -1 when the block size is out of range.
static int __emu_run_grid(void (*body)(void *const *), void *const *args, dim3 grid,
                          dim3 block) {
  int n = (int)(block.x * block.y * block.z);
  if (n <= 0 || n > 1024) return -1;
  if (n > __emu_capacity) {
    free(__emu_threads);
    free(__emu_stacks);
    __emu_threads = (__emu_thread *)calloc((size_t)n, sizeof(__emu_thread));
    __emu_stacks = (char *)malloc((size_t)n * __emu_stack_size);
    __emu_capacity = n;
  }
  __emu_body = body;
  __emu_args = args;
  gridDim = grid;
  blockDim = block;
  for (int t = 0; t < n; ++t) {
    __emu_thread *th = &__emu_threads[t];
    th->tid = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    th->started = 0;
    getcontext(&th->ctx);
    th->ctx.uc_stack.ss_sp = __emu_stacks + (size_t)t * __emu_stack_size;
    th->ctx.uc_stack.ss_size = __emu_stack_size;
    th->ctx.uc_link = NULL;
    makecontext(&th->ctx, __emu_entry, 0);
  }
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = dim3{bx, by, bz};
        for (int t = 0; t < n; ++t) {
          __emu_threads[t].state = 0;
          __emu_threads[t].shuffles = 0;
        }
        for (;;) {
          int waiting = 0;
          for (int t = 0; t < n; ++t) {
            __emu_thread *th = &__emu_threads[t];
            if (th->state == 0) {
              __emu_cur = th;
              if (!_setjmp(__emu_scheduler)) {
                if (th->started) _longjmp(th->resume, 1);
                th->started = 1;
                swapcontext(&__emu_start_from, &th->ctx);
              }
            }
            waiting += th->state == 1;
          }
          if (!waiting) break;
          for (int t = 0; t < n; ++t)
            if (__emu_threads[t].state == 1) __emu_threads[t].state = 0;
        }
      }
  return 0;
}
