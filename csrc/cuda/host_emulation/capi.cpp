// extern "C" wrappers of the launchers for ctypes (host emulation only).
#include "emu.h"
#include "launchers.h"
using namespace tdn::cuda;
#define D static_cast<DType>(dtype)
extern "C" {
int tdp_f(const void* x, void* o, int dtype, int64_t B, int64_t F, int64_t c, int64_t H, int64_t W, int64_t k, int cl) { return temporal_diff_pool_forward(x, o, D, B, F, c, H, W, k, cl, nullptr); }
int tdp_b(const void* g, void* gx, int dtype, int64_t B, int64_t F, int64_t c, int64_t H, int64_t W, int64_t k, int cl) { return temporal_diff_pool_backward(g, gx, D, B, F, c, H, W, k, cl, nullptr); }
int csd_f(const void* f, const void* a, void* d0, void* d1, void* p0, void* p1, int dtype, int64_t B, int64_t C, int64_t H, int64_t W, int64_t T, int cl) { return cross_segment_diff_forward(f, a, d0, d1, p0, p1, D, B, C, H, W, T, cl, nullptr); }
int csd_b(const void* g0, const void* g1, const void* q0, const void* q1, void* fe, void* al, int dtype, int64_t B, int64_t C, int64_t H, int64_t W, int64_t T, int cl) { return cross_segment_diff_backward(g0, g1, q0, q1, fe, al, D, B, C, H, W, T, cl, nullptr); }
int up_f(const void* a, const void* s, const void* b, void* o, int dtype, int64_t B, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w, double ca, double cu, double cb, int cl) { return upsample_combine_forward(a, s, b, o, D, B, C, H, W, h, w, ca, cu, cb, cl, nullptr); }
int up_b(const void* g, void* gd, void* gs, int dtype, int64_t B, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w, double sd, double sg, int cl) { return upsample_combine_backward(g, gd, gs, D, B, C, H, W, h, w, sd, sg, cl, nullptr); }
int ex_f(const void* x, const void* f, const void* b, void* o, int dtype, int64_t n) { return excitation_forward(x, f, b, o, D, n, nullptr); }
int ex_b(const void* g, const void* x, const void* f, const void* b, void* dx, void* df, void* db, int dtype, int64_t n) { return excitation_backward(g, x, f, b, dx, df, db, D, n, nullptr); }
int sh_f(const void* x, const void* f, const void* b, const void* w, void* o, int dtype, int64_t videos, int64_t T, int64_t C, int64_t P, int cl) { ShiftShape s{videos, T, C, P, (bool)cl}; return shift_forward(x, f, b, w, o, D, s, nullptr); }
int64_t sh_ws(int dtype, int64_t videos, int64_t T, int64_t C, int64_t P, int cl) { ShiftShape s{videos, T, C, P, (bool)cl}; return shift_backward_workspace_bytes(s, D); }
int sh_b(const void* g, const void* x, const void* f, const void* b, const void* w, void* dx, void* df, void* db, void* dw, void* ws, int dtype, int64_t videos, int64_t T, int64_t C, int64_t P, int cl) { ShiftShape s{videos, T, C, P, (bool)cl}; return shift_backward(g, x, f, b, w, dx, df, db, dw, ws, D, s, nullptr); }
int pes_f(const void* x, const void* m, const void* w, const void* s, const void* b, const void* t, void* o, int dtype, int64_t videos, int64_t T, int64_t C, int64_t c, int64_t P, int cl) { ProjectShape sh{videos, T, C, c, P, (bool)cl}; return project_excite_shift_forward(x, m, w, s, b, t, o, D, sh, nullptr); }
int64_t pes_ws(int dtype, int64_t videos, int64_t T, int64_t C, int64_t c, int64_t P, int cl) { ProjectShape sh{videos, T, C, c, P, (bool)cl}; return project_excite_shift_backward_workspace_bytes(sh, D); }
int pes_b(const void* g, const void* x, const void* m, const void* w, const void* s, const void* b, const void* t, void* dx, void* dm, void* dw, void* ds, void* db, void* dt, void* ws, int dtype, int64_t videos, int64_t T, int64_t C, int64_t c, int64_t P, int cl) { ProjectShape sh{videos, T, C, c, P, (bool)cl}; return project_excite_shift_backward(g, x, m, w, s, b, t, dx, dm, dw, ds, db, dt, ws, D, sh, nullptr); }
}
