// The BLAS gemm of the MKL inside torch's x86 CPU builds, for kernels whose small per-tile
// matrix products run faster there than in a vectorised loop (project_excite_shift).
//
// The symbols are looked up at run time (dlsym), so the extension loads, and the kernels fall
// back to their loops, with a torch built on another BLAS or none. MKL's summation order
// depends on how many threads it may use; SequentialMkl pins it to one thread for the calling
// thread, so that a kernel's results do not depend on the thread count.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace tdn {
namespace cpu {

// Fortran ?gemm_: every argument by pointer, 32-bit integers (LP64), column-major matrices.
using FortranGemm = void (*)(const char*, const char*, const int*, const int*, const int*,
                             const void*, const void*, const int*, const void*, const int*,
                             const void*, void*, const int*);
// MKL_Set_Num_Threads_Local (mkl_set_num_threads_local in mkl_service.h is a macro for it):
// sets the calling thread's MKL thread count, returns the previous one (0: the global count).
using SetLocalThreads = int (*)(int);

inline SetLocalThreads mkl_local_threads() {
  static const auto fn =
      reinterpret_cast<SetLocalThreads>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
  return fn;
}

// sgemm_ (float) or dgemm_ (double), or null when MKL is not in the process or the
// environment variable TDN_OPS_NO_MKL=1 asks for the loops (read once, on first use).
template <typename A>
FortranGemm mkl_gemm() {
  static const FortranGemm fn = [] {
    const char* off = std::getenv("TDN_OPS_NO_MKL");
    if (mkl_local_threads() == nullptr || (off != nullptr && std::string(off) == "1")) {
      return FortranGemm{nullptr};
    }
    const char* name = std::is_same_v<A, double> ? "dgemm_" : "sgemm_";
    return reinterpret_cast<FortranGemm>(dlsym(RTLD_DEFAULT, name));
  }();
  return fn;
}

// MKL runs single-threaded on this thread for the guard's lifetime.
struct SequentialMkl {
  int previous = 0;
  SequentialMkl() {
    if (auto set = mkl_local_threads()) previous = set(1);
  }
  ~SequentialMkl() {
    if (auto set = mkl_local_threads()) set(previous);
  }
  SequentialMkl(const SequentialMkl&) = delete;
  SequentialMkl& operator=(const SequentialMkl&) = delete;
};

// Column-major C (m x n) = alpha op(A) op(B) + beta C, op given by `ta`, `tb` ('N' or 'T').
// Dimensions are those of one tile: far below 2^31.
template <typename A>
void blas_gemm(FortranGemm gemm, char ta, char tb, int64_t m, int64_t n, int64_t k, A alpha,
               const A* a, int64_t lda, const A* b, int64_t ldb, A beta, A* c, int64_t ldc) {
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int LA = static_cast<int>(lda), LB = static_cast<int>(ldb), LC = static_cast<int>(ldc);
  gemm(&ta, &tb, &M, &N, &K, &alpha, a, &LA, b, &LB, &beta, c, &LC);
}

}  // namespace cpu
}  // namespace tdn
