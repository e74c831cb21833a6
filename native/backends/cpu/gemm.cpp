// Blocked GEMM driver: C = A . W^T with W in any weight type (see gemm.h).
//
// Two paths. Few rows (M <= kSmallM, e.g. text tokens): gemm_small_m, weights broadcast from their (dequantized)
// rows, see there. Otherwise: weights packed as NR-wide B panels, rows of A broadcast. Work split: the N columns are cut into blocks of whole NR-wide panels (a multiple of the thread count when there
// are enough panels, so threads get equal shares), and, when there are too few panels, the M rows are split as
// well. A thread that takes a task dequantizes the task's weight panels (all of K) into its own packed buffer once,
// then runs the microkernel over every row of its row range: rows in blocks of kMc, K in chunks of at most kKcMax
// (the chunking depends only on K, never on the thread count, so results are deterministic).
#include "backends/cpu/scratch.h"
#include "backends/cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/simd/gemm_kernels.h"
#include "core/quant.h"
#include "core/threadpool.h"
#include "sdn/error.h"

namespace sdn {
namespace cpu {

namespace {

constexpr int64_t kKcMax = 384;                  // K chunk: A micro-panel (MR x kc) stays in L1
constexpr int64_t kMc = 64;                      // rows per block (C block stays in L2 across K chunks)
constexpr size_t kBlockBudget = 512u * 1024u;    // bytes of packed weights per task (L2)
constexpr int64_t kSeg = 256;                    // K elements dequantized at a time (multiple of every block size)
constexpr int64_t kKcSmall = 192;               // K chunk of the few-rows path (x panel chunk in L1)
constexpr int64_t kSmallM = 160;                 // up to this many rows: weights-as-A path (no weight transposes)
constexpr size_t kDeqBudget = 256u * 1024u;      // bytes of dequantized weight rows per task (small-M path)

thread_local cpu::ScratchBuffer t_bpack("GEMM"), t_deq("GEMM"), t_ct("GEMM");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void dequantize_weight_rows(const WeightMatrix& w, int64_t r0, int64_t rows, int64_t k0, int64_t cols, float* dst,
                            int64_t dst_ld) {
  size_t off = dtype_row_bytes(w.type, k0);
  const char* base = static_cast<const char*>(w.data) + (size_t)r0 * w.row_bytes + off;
  dequantize_rows(w.type, base, w.row_bytes, rows, cols, dst, dst_ld);
}

// Few rows (token sequences, M <= kSmallM): compute C^T = W . A^T instead. The rows of A are transposed once into
// NR-wide panels (shared, small); each task dequantizes a group of weight rows contiguously (no transposition,
// F32 weights are used in place) and broadcasts them in the microkernel; the MR x NR result tiles are transposed
// into C. Each element is still reduced over k in order 0..K-1 (same chunking), whatever the thread count.
static void gemm_small_m(int64_t m, const float* a, int64_t lda, const WeightMatrix& w, const float* bias, float* c,
                         int64_t ldc, ThreadPool& pool) {
  const int64_t N = w.n, K = w.k;
  auto kernel = SDN_DISPATCH(gemm_ukernel);
  auto pack = SDN_DISPATCH(gemm_pack_panel);
  const int MR = SDN_DISPATCH(gemm_mr)();
  const int NR = SDN_DISPATCH(gemm_nr)();
  int64_t kc = K;
  if (K > kKcSmall) kc = (ceil_div(K, ceil_div(K, kKcSmall)) + 15) / 16 * 16;
  const int64_t nchunks = ceil_div(K, kc);

  const int64_t nmp = ceil_div(m, NR);
  Tensor xpt = Tensor::empty({nmp * K * NR});
  float* xp = xpt.f32();
  for (int64_t p = 0; p < nmp; ++p)
    pack(a + p * NR * lda, lda, (int)std::min<int64_t>(NR, m - p * NR), K, xp + p * K * NR);

  const int T = pool.size();
  const bool in_place = w.type == DType::F32;
  int64_t rows_cap = std::max<int64_t>(MR, (int64_t)kDeqBudget / (K * (int64_t)sizeof(float)) / MR * MR);
  int64_t ngroups = ceil_div(ceil_div(N, rows_cap), T) * T;
  const int64_t gr = std::max<int64_t>(MR, ceil_div(ceil_div(N, ngroups), MR) * MR);
  ngroups = ceil_div(N, gr);
  const int64_t ldt = nmp * NR;
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    for (;;) {
      const int64_t g = next.fetch_add(1, std::memory_order_relaxed);
      if (g >= ngroups) break;
      const int64_t n0 = g * gr, rows = std::min(gr, N - n0);
      const float* wr;
      if (in_place) {
        wr = reinterpret_cast<const float*>(static_cast<const char*>(w.data) + (size_t)n0 * w.row_bytes);
      } else {
        float* deq = t_deq.get((size_t)(rows * K));
        dequantize_weight_rows(w, n0, rows, 0, K, deq, K);
        wr = deq;
      }
      const int64_t ldw = in_place ? (int64_t)(w.row_bytes / sizeof(float)) : K;
      float* ct = t_ct.get((size_t)(rows * ldt));
      // A (kc x NR) chunk of a row panel stays in L1 while every weight row group of the task passes over it.
      for (int64_t ch = 0; ch < nchunks; ++ch) {
        const int64_t cbeg = ch * kc, clen = std::min(kc, K - cbeg);
        for (int64_t p = 0; p < nmp; ++p)
          for (int64_t i = 0; i < rows; i += MR)
            kernel(clen, wr + i * ldw + cbeg, ldw, xp + p * K * NR + cbeg * NR, ct + i * ldt + p * NR, ldt,
                   (int)std::min<int64_t>(MR, rows - i), (int)std::min<int64_t>(NR, m - p * NR), nullptr, ch > 0);
      }
      // C[j][n0 + n] = ct[n][j] + bias: whole runs of `rows` outputs per row of C (C's row stride is often a
      // multiple of 4 KiB, so writing column by column would thrash one cache set).
      for (int64_t j = 0; j < m; ++j) {
        float* cr = c + j * ldc + n0;
        for (int64_t n = 0; n < rows; ++n) cr[n] = ct[n * ldt + j] + (bias ? bias[n0 + n] : 0.f);
      }
    }
  });
}

void gemm_f32_weights(int64_t m, const float* a, int64_t lda, const WeightMatrix& w, const float* bias, float* c,
                      int64_t ldc, ThreadPool& pool) {
  const int64_t N = w.n, K = w.k;
  if (m <= 0 || N <= 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = bias ? bias[j] : 0.f;
    return;
  }
  if (m <= kSmallM) {
    gemm_small_m(m, a, lda, w, bias, c, ldc, pool);
    return;
  }
  auto kernel = SDN_DISPATCH(gemm_ukernel);
  auto pack = SDN_DISPATCH(gemm_pack_panel);
  auto pack16 = SDN_DISPATCH(gemm_pack_panel_16);
  const bool direct = w.type == DType::F32 || w.type == DType::F16 || w.type == DType::BF16;
  const int MR = SDN_DISPATCH(gemm_mr)();
  const int NR = SDN_DISPATCH(gemm_nr)();

  // K chunks (depend on K only).
  int64_t kc = K;
  if (K > kKcMax) {
    int64_t nch = ceil_div(K, kKcMax);
    kc = (ceil_div(K, nch) + 15) / 16 * 16;
  }
  const int64_t nchunks = ceil_div(K, kc);

  // Column blocks and row splits.
  const int T = pool.size();
  const int64_t P = ceil_div(N, NR);
  const int64_t panel_bytes = K * NR * (int64_t)sizeof(float);
  const int64_t nbp = std::max<int64_t>(1, (int64_t)kBlockBudget / panel_bytes);
  int64_t nblocks = ceil_div(P, nbp);
  int64_t msplit = 1;
  if (P >= T) {
    nblocks = std::min(P, ceil_div(nblocks, T) * T);
  } else {
    nblocks = P;
    msplit = std::min<int64_t>(ceil_div(m, MR), ceil_div(2 * T, P));
  }
  const int64_t pp = ceil_div(P, nblocks);  // panels per block
  nblocks = ceil_div(P, pp);
  const int64_t rows_per_split = ceil_div(ceil_div(m, msplit), MR) * MR;
  msplit = ceil_div(m, rows_per_split);
  const int64_t ntasks = nblocks * msplit;

  const int64_t seg = std::min<int64_t>(kSeg, K);
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    for (;;) {
      int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= ntasks) break;
      const int64_t jb = t / msplit, ms = t % msplit;
      const int64_t n0 = jb * pp * NR;
      const int64_t nb = std::min(pp * NR, N - n0);
      const int64_t np = ceil_div(nb, NR);
      const int64_t m0 = ms * rows_per_split, m1 = std::min(m, m0 + rows_per_split);

      // Pack this block's weights: chunk ch, panel q at bp + ch*kc*np*NR + q*clen*NR, [clen][NR].
      float* bp = t_bpack.get((size_t)(K * np * NR));
      float* deq = direct ? nullptr : t_deq.get((size_t)(NR * seg));
      for (int64_t q = 0; q < np; ++q) {
        const int64_t r0 = n0 + q * NR;
        const int rows = (int)std::min<int64_t>(NR, N - r0);
        if (direct) {
          // Plain types: convert + transpose straight from the stored rows, chunk by chunk.
          for (int64_t ch = 0; ch < nchunks; ++ch) {
            const int64_t cbeg = ch * kc, clen = std::min(kc, K - cbeg);
            float* dst = bp + ch * kc * np * NR + q * clen * NR;
            const char* src = static_cast<const char*>(w.data) + (size_t)r0 * w.row_bytes;
            if (w.type == DType::F32)
              pack(reinterpret_cast<const float*>(src) + cbeg, (int64_t)(w.row_bytes / 4), rows, clen, dst);
            else
              pack16(reinterpret_cast<const uint16_t*>(src) + cbeg, (int64_t)(w.row_bytes / 2), rows, clen,
                     w.type == DType::F16, dst);
          }
          continue;
        }
        for (int64_t s = 0; s < K; s += seg) {
          const int64_t len = std::min(seg, K - s);
          dequantize_weight_rows(w, r0, rows, s, len, deq, seg);
          // Scatter the segment into the chunks it overlaps.
          int64_t k = s;
          while (k < s + len) {
            const int64_t ch = k / kc;
            const int64_t cbeg = ch * kc, clen = std::min(kc, K - cbeg);
            const int64_t cnt = std::min(s + len, cbeg + clen) - k;
            float* dst = bp + ch * kc * np * NR + q * clen * NR + (k - cbeg) * NR;
            pack(deq + (k - s), seg, rows, cnt, dst);
            k += cnt;
          }
        }
      }

      // Multiply.
      for (int64_t i0 = m0; i0 < m1; i0 += kMc) {
        const int64_t i1 = std::min(m1, i0 + kMc);
        for (int64_t ch = 0; ch < nchunks; ++ch) {
          const int64_t cbeg = ch * kc, clen = std::min(kc, K - cbeg);
          const float* bch = bp + ch * kc * np * NR;
          for (int64_t i = i0; i < i1; i += MR) {
            const int rows = (int)std::min<int64_t>(MR, i1 - i);
            const float* ai = a + i * lda + cbeg;
            for (int64_t q = 0; q < np; ++q) {
              const int64_t j = n0 + q * NR;
              const int ncols = (int)std::min<int64_t>(NR, N - j);
              kernel(clen, ai, lda, bch + q * clen * NR, c + i * ldc + j, ldc, rows, ncols, bias ? bias + j : nullptr,
                     ch > 0);
            }
          }
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace sdn
