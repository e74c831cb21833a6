// Winograd F(4x4, 3x3) convolution (stride 1, pad 0 or 1).
//
// The output is cut into 4x4 tiles (ragged at the right/bottom edges). The tile rows of all images of the batch
// form one sequence, processed in blocks of whole tile rows sized so that the transformed input V (36 x C x tiles)
// stays within kVBudget (so a batch shares each weight transform):
//   1. input transform (parallel over channels): each tile row's 6 input rows are copied into a zero-padded
//      strip, then V[xi][panel][c][NR] = B^T d B is written directly in the GEMM's packed-panel layout (tiles are
//      the GEMM's N dimension);
//   2. tasks of (output-channel group x tile range), dynamically shared by the threads: the task dequantizes and
//      transforms its weights U[xi][oc][c] = G g G^T (per call, into thread-local scratch: no cache of transformed
//      weights), runs the 36 GEMMs M_xi[oc][tile] = U_xi . V_xi with the f32 microkernel, and applies the output
//      transform A^T M A (+ bias) into y.
// Every output element is computed in an order that depends only on the shapes, not on the thread count.
#include "backends/cpu/scratch.h"
#include "backends/cpu/winograd.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/simd/gemm_kernels.h"
#include "backends/cpu/simd/wino_kernels.h"
#include "core/threadpool.h"
#include "sdn/error.h"

namespace sdn {
namespace cpu {

namespace {

constexpr size_t kVBudget = 16u << 20;     // bytes of transformed input per block (shared)
constexpr size_t kUBudget = 4u << 20;      // bytes of transformed weights per task (per thread)
constexpr int64_t kKcMax = 384;            // channel chunk of the tile GEMMs
constexpr int64_t kPanelsPerStep = 4;      // tile panels per GEMM + output-transform step

thread_local cpu::ScratchBuffer t_pad("Winograd"), t_deq("Winograd"), t_u("Winograd"), t_m("Winograd");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

bool winograd_worthwhile(int64_t b, int64_t c, int64_t oc, int64_t oh, int64_t ow) {
  (void)c;
  (void)oc;
  // Measured (core cycles, AVX-512, one thread): Winograd beats im2col at every channel count tried (C 4..1280,
  // OC 3..1280) from 16 tiles per weight transform up (16x16 outputs: 102% vs 76% of the FMA peak, batch 2: 198%);
  // with few tiles the per-call weight transform dominates (8x8, 4 tiles: 28% vs 70%; batch 2: 54% vs 72%).
  // The whole batch shares one weight transform.
  return b * ((oh + 3) / 4) * ((ow + 3) / 4) >= 12;
}

void conv3x3_winograd(const Tensor& x, const WeightMatrix& w, const float* bias, int pad, Tensor& y) {
  const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OC = y.shape[1], OH = y.shape[2], OW = y.shape[3];
  const int64_t TX = ceil_div(OW, 4), TY = ceil_div(OH, 4);
  auto kernel = SDN_DISPATCH(gemm_ukernel);
  auto in_tf = SDN_DISPATCH(wino_input_tiles);
  auto out_tf = SDN_DISPATCH(wino_output_tiles);
  auto w_tf = SDN_DISPATCH(wino_weight_transform);
  const int MR = SDN_DISPATCH(gemm_mr)();
  const int NR = SDN_DISPATCH(gemm_nr)();
  const int lanes = std::min(16, NR);
  ThreadPool& pool = current_pool();
  const int T = pool.size();

  // Channel chunks (depend on C only).
  int64_t kc = C;
  if (C > kKcMax) kc = (ceil_div(C, ceil_div(C, kKcMax)) + 15) / 16 * 16;
  const int64_t nchunks = ceil_div(C, kc);

  // Tile-row blocks.
  const int64_t row_bytes = 36 * C * TX * (int64_t)sizeof(float);
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>(B * TY, (int64_t)kVBudget / row_bytes));
  const int64_t max_tiles = rows_per_block * TX;
  const int64_t max_panels = ceil_div(max_tiles, NR);
  Tensor vbuf = Tensor::empty({36 * (C * max_panels * NR + 16)});
  float* V = vbuf.f32();

  // Output-channel groups: a multiple of the thread count, at most kUBudget of transformed weights each.
  int64_t ocg_cap = std::max<int64_t>(MR, (int64_t)kUBudget / (36 * C * (int64_t)sizeof(float)) / MR * MR);
  ocg_cap = std::min<int64_t>(ocg_cap, 64);
  int64_t n_oc = ceil_div(ceil_div(OC, ocg_cap), T) * T;
  const int64_t ocg = std::min<int64_t>(ceil_div(ceil_div(OC, n_oc), MR) * MR, ocg_cap);
  n_oc = ceil_div(OC, ocg);

  const int64_t Wp = 4 * TX + 16;  // padded row length of the per-channel block copy (slack for vector loads)

  // Tile rows of all images form one sequence (global row r = image r / TY, tile row r % TY), so a batch (e.g.
  // the two halves of classifier-free guidance) shares each block's weight transform.
  const int64_t R = B * TY;
  for (int64_t r0 = 0; r0 < R; r0 += rows_per_block) {
    {
      const int64_t nrows = std::min(rows_per_block, R - r0);
      const int64_t Tb = nrows * TX, np = ceil_div(Tb, NR);
      const int64_t xsV = np * C * NR + 16;  // stride between the 36 planes (padded: no cache aliasing)

      // 1. Input transform. Each tile row gets its own zero-padded strip of 6 input rows.
      pool.parallel_for(C, 1, [&](int64_t c0, int64_t c1) {
        float* P = t_pad.get((size_t)(nrows * 6 * Wp));
        int32_t off[16];
        for (int64_t c = c0; c < c1; ++c) {
          for (int64_t lr = 0; lr < nrows; ++lr) {
            const int64_t b = (r0 + lr) / TY, ty = (r0 + lr) % TY;
            const float* xc = x.f32() + (b * C + c) * H * W;
            for (int64_t i = 0; i < 6; ++i) {
              float* pr = P + (lr * 6 + i) * Wp;
              const int64_t ih = 4 * ty - pad + i;
              if (ih < 0 || ih >= H) {
                std::memset(pr, 0, (size_t)Wp * sizeof(float));
                continue;
              }
              const float* xr = xc + ih * W;
              // pr[q] = x[ih][q - pad] inside the image, 0 outside.
              const int64_t n_in = std::min<int64_t>(W, Wp - pad);
              for (int64_t q = 0; q < pad; ++q) pr[q] = 0.f;
              std::memcpy(pr + pad, xr, (size_t)n_in * sizeof(float));
              for (int64_t q = pad + n_in; q < Wp; ++q) pr[q] = 0.f;
            }
          }
          for (int64_t t0 = 0; t0 < Tb; t0 += lanes) {
            const int n = (int)std::min<int64_t>(lanes, Tb - t0);
            for (int l = 0; l < n; ++l) {
              const int64_t t = t0 + l, lr = t / TX, tx = t % TX;
              off[l] = (int32_t)(lr * 6 * Wp + 4 * tx);
            }
            for (int l = n; l < 16; ++l) off[l] = off[0];  // lanes past the last tile: finite copies
            float* dst = V + (t0 / NR) * C * NR + c * NR + (t0 % NR);
            in_tf(P, Wp, off, lanes, dst, xsV);
          }
          // Tiles past Tb in the last panel are never read back into y; keep them finite.
          for (int64_t t0 = ceil_div(Tb, lanes) * lanes; t0 < np * NR; t0 += lanes) {
            for (int l = 0; l < 16; ++l) off[l] = 0;
            float* dst = V + (t0 / NR) * C * NR + c * NR + (t0 % NR);
            in_tf(P, Wp, off, lanes, dst, xsV);
          }
        }
      });

      // 2. Tasks: output-channel group x tile range.
      int64_t n_ts = 1;
      if (n_oc < 2 * T) n_ts = std::min<int64_t>(np, ceil_div(2 * T, n_oc));
      const int64_t pps = ceil_div(np, n_ts);
      n_ts = ceil_div(np, pps);
      const int64_t ntasks = n_oc * n_ts;
      std::atomic<int64_t> next{0};
      pool.run([&](int, int) {
        for (;;) {
          const int64_t task = next.fetch_add(1, std::memory_order_relaxed);
          if (task >= ntasks) break;
          const int64_t og = task / n_ts, ts = task % n_ts;
          const int64_t o0 = og * ocg, on = std::min(ocg, OC - o0);
          const int64_t p0 = ts * pps, p1 = std::min(np, p0 + pps);
          // Weights: dequantize rows, transform into U[xi][o][c].
          float* deq = t_deq.get((size_t)(C * 9));
          // Plane stride padded by 16 floats so the 36 planes do not alias in the caches (4 KiB multiples).
          const int64_t xsU = on * C + 16;
          float* U = t_u.get((size_t)(36 * xsU));
          for (int64_t o = 0; o < on; ++o) {
            dequantize_weight_rows(w, o0 + o, 1, 0, C * 9, deq, C * 9);
            w_tf(deq, C, U + o * C, xsU);
          }
          float* M = t_m.get((size_t)(36 * (on * kPanelsPerStep * NR + 16)));
          float out[16 * 16];
          for (int64_t ps = p0; ps < p1; ps += kPanelsPerStep) {
            const int64_t pe = std::min(p1, ps + kPanelsPerStep);
            const int64_t ncols = (pe - ps) * NR;
            const int64_t xsM = on * ncols + 16;
            for (int xi = 0; xi < 36; ++xi) {
              const float* Ux = U + xi * xsU;
              const float* Vx = V + xi * xsV;
              float* Mx = M + xi * xsM;
              for (int64_t ch = 0; ch < nchunks; ++ch) {
                const int64_t cbeg = ch * kc, clen = std::min(kc, C - cbeg);
                for (int64_t o = 0; o < on; o += MR) {
                  const int rows = (int)std::min<int64_t>(MR, on - o);
                  for (int64_t p = ps; p < pe; ++p)
                    kernel(clen, Ux + o * C + cbeg, C, Vx + p * C * NR + cbeg * NR, Mx + o * ncols + (p - ps) * NR,
                           ncols, rows, NR, nullptr, ch > 0);
                }
              }
            }
            // Output transform of the tiles in [ps*NR, pe*NR) that exist.
            const int64_t tend = std::min(Tb, pe * NR);
            for (int64_t o = 0; o < on; ++o) {
              const float bo = bias ? bias[o0 + o] : 0.f;
              for (int64_t t0 = ps * NR; t0 < tend; t0 += lanes) {
                const int n = (int)std::min<int64_t>(lanes, tend - t0);
                float* half[2] = {nullptr, nullptr};
                for (int h = 0; h < 2 && lanes == 16; ++h) {
                  const int64_t tf = t0 + 8 * h, r = r0 + tf / TX, tx = tf % TX;
                  const int64_t b = r / TY, ty = r % TY;
                  if (tf + 8 <= tend && tx + 8 <= TX && 4 * ty + 4 <= OH && 4 * (tx + 8) <= OW)
                    half[h] = y.f32() + ((b * OC + o0 + o) * OH + 4 * ty) * OW + 4 * tx;
                }
                out_tf(M + o * ncols + (t0 - ps * NR), xsM, bo, out, half, OW);
                for (int l = 0; l < n; ++l) {
                  if (half[l / 8]) continue;
                  const int64_t t = t0 + l, r = r0 + t / TX, tx = t % TX;
                  const int64_t b = r / TY, ty = r % TY;
                  float* yo = y.f32() + (b * OC + o0 + o) * OH * OW;
                  const int64_t oy = 4 * ty, ox = 4 * tx;
                  const int64_t hi = std::min<int64_t>(4, OH - oy), wi = std::min<int64_t>(4, OW - ox);
                  for (int64_t i = 0; i < hi; ++i) {
                    float* yr = yo + (oy + i) * OW + ox;
                    for (int64_t j = 0; j < wi; ++j) yr[j] = out[(i * 4 + j) * 16 + l];
                  }
                }
              }
            }
          }
        }
      });
    }
  }
}

}  // namespace cpu
}  // namespace sdn
