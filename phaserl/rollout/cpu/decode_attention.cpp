// One decoding step's attention for the lean CPU decoder (phaserl/rollout/cpu/lean.py), in one call per layer.
//
// decode_attention: for each row i and KV head j (in parallel over the n * KV pairs), its g = H / KV query heads:
//   s = round_bf16(q . k)                 float32 sums over d
//   s = s * scaling + bias[i]             float32, a multiply then an add
//   p = round_bf16(softmax(s))            torch's own softmax (at::softmax)
//   out = round_bf16(p . v)               float32 sums over l
// The sums go in pairs, the odd term first: the order of AVX512-BF16's dot product (vdpbf16ps), which oneDNN's bf16
// matmul uses; the products of two bf16 values are exact in float32, so every step is one rounding in both. This is
// lean.py's torch path (`decode_attention` there) bit for bit (tests/test_speed_decode_attention.py), with one
// dispatch for the softmax instead of ~10 small ops and 2 x 96 tiny gemms a layer.
// q: [n, H, D] bf16 (last dim contiguous); kt: [n, KV, D, Lmax] bf16 (K transposed); v: [n, KV, Lmax, D] bf16;
// bias: [n, Lmax] float32; the first L positions of the cache are read. Returns [n, H * D] bf16.
//
// decode_step_attention: the layer's step from its q/k/v projection on: RoPE on the q and k heads (torch's bf16
// arithmetic: x * cos, rotate_half(x) * sin and their sum, each rounded to bf16), k and v written at position L - 1
// of the cache, then the attention as above. One parallel pass over the (row, KV head) pairs does RoPE, the cache
// write and the scores (the rotated query heads go straight to a float32 buffer), a second the weighted values:
// at 32 rows and 30 layers a step took 11-14 ms as three passes with a scalar RoPE, and the engine's generation
// 3.78 s against 3.94-4.16 s (medians of 8 alternating runs, identical samples).
// Needs AVX-512 F/BW/VL/DQ (phaserl/rollout/cpu/kernels.py builds it only there).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline __m512 round_bf16(__m512 x) {  // to the nearest bf16, ties to even (finite x), as float32
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

inline void store_bf16(uint16_t* p, __m512 rounded, __mmask16 m) {  // rounded: already a bf16 value
  const __m512i u = _mm512_srli_epi32(_mm512_castps_si512(rounded), 16);
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(u));
}

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

// Scores of G query heads against L keys: s[a * L + l] = round_bf16(q_a . k_l) * scaling + bias[l], float32
// (D a multiple of 16).
template <int G>
void scores(const float* qf, int64_t D, const uint16_t* kt, int64_t kt_row, int64_t L, const float* bias,
            float scaling, float* s) {
  const __m512 sc = _mm512_set1_ps(scaling);
  for (int64_t l0 = 0; l0 < L; l0 += 16) {
    const __mmask16 m = tail_mask(L - l0);
    __m512 acc[G];
    for (int a = 0; a < G; ++a) acc[a] = _mm512_setzero_ps();
    for (int64_t d0 = 0; d0 < D; d0 += 2) {  // pairs, the odd one first: see weighted_values
      for (int64_t d = d0 + 1; d >= d0; --d) {
        const __m512 k = load_bf16(kt + d * kt_row + l0, m);
        for (int a = 0; a < G; ++a) acc[a] = _mm512_fmadd_ps(_mm512_set1_ps(qf[a * D + d]), k, acc[a]);
      }
    }
    const __m512 b = _mm512_maskz_loadu_ps(m, bias + l0);
    for (int a = 0; a < G; ++a)
      _mm512_mask_storeu_ps(s + a * L + l0, m, _mm512_add_ps(_mm512_mul_ps(round_bf16(acc[a]), sc), b));
  }
}

// out[a * D + d] = round_bf16(sum_l p[a * L + l] * v[l * v_row + d]) with p bf16; NB vectors of 16 d at a time.
template <int G, int NB>
void weighted_values(const uint16_t* p, const uint16_t* v, int64_t v_row, int64_t L, int64_t D, uint16_t* out) {
  for (int64_t d0 = 0; d0 < D; d0 += 16 * NB) {
    __m512 acc[G][NB];
    for (int a = 0; a < G; ++a)
      for (int b = 0; b < NB; ++b) acc[a][b] = _mm512_setzero_ps();
    // Positions in pairs, the odd one first: the order of AVX512-BF16's dot product (vdpbf16ps), which oneDNN's
    // bf16 matmul uses (its products are exact in float32, so each step is one rounding, as here).
    for (int64_t l0 = 0; l0 < L; l0 += 2) {
      for (int64_t l = std::min(l0 + 1, L - 1); l >= l0; --l) {
        __m512 vv[NB];
        for (int b = 0; b < NB; ++b) vv[b] = load_bf16(v + l * v_row + d0 + 16 * b, 0xffff);
        for (int a = 0; a < G; ++a) {
          const __m512 pa = _mm512_set1_ps(bf16_to_float(p[a * L + l]));
          for (int b = 0; b < NB; ++b) acc[a][b] = _mm512_fmadd_ps(pa, vv[b], acc[a][b]);
        }
      }
    }
    for (int a = 0; a < G; ++a)
      for (int b = 0; b < NB; ++b) store_bf16(out + a * D + d0 + 16 * b, round_bf16(acc[a][b]), 0xffff);
  }
}

template <int G>
void weighted_values(const uint16_t* p, const uint16_t* v, int64_t v_row, int64_t L, int64_t D, uint16_t* out) {
  // G x NB accumulators plus NB value vectors stay within the 32 zmm registers
  if (G <= 4 && D % 64 == 0) {
    weighted_values<G, 4>(p, v, v_row, L, D, out);
  } else if (D % 32 == 0) {
    weighted_values<G, 2>(p, v, v_row, L, D, out);
  } else {
    weighted_values<G, 1>(p, v, v_row, L, D, out);
  }
}

// f<G>(args...) for the group size g = H / KV of the call, 1 to 8.
#define PHASERL_BY_GROUP(g, f, ...)            \
  switch (g) {                                 \
    case 1: f<1>(__VA_ARGS__); break;          \
    case 2: f<2>(__VA_ARGS__); break;          \
    case 3: f<3>(__VA_ARGS__); break;          \
    case 4: f<4>(__VA_ARGS__); break;          \
    case 5: f<5>(__VA_ARGS__); break;          \
    case 6: f<6>(__VA_ARGS__); break;          \
    case 7: f<7>(__VA_ARGS__); break;          \
    default: f<8>(__VA_ARGS__); break;         \
  }

inline uint16_t bf16_bits(float rounded) {  // rounded: already a bf16 value
  uint32_t u;
  std::memcpy(&u, &rounded, 4);
  return static_cast<uint16_t>(u >> 16);
}

// Softmax (torch's own) of the float32 scores s [n, H, L], then out = p . v per (row, KV head): [n, H * D] bf16.
torch::Tensor softmax_values(const torch::Tensor& s, const torch::Tensor& v, int64_t n, int64_t KV, int64_t g,
                             int64_t L, int64_t D, const torch::TensorOptions& options) {
  // torch's own softmax, so the probabilities are bit for bit those of lean.py's torch path
  const auto p = at::softmax(s, -1).to(at::kBFloat16);
  const int64_t H = KV * g;
  const auto* pp = reinterpret_cast<const uint16_t*>(p.data_ptr<at::BFloat16>());
  const auto* vp = reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>());
  auto out = torch::empty({n, H * D}, options);
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  at::parallel_for(0, n * KV, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / KV, j = t % KV;
      const uint16_t* pi = pp + (i * H + j * g) * L;
      const uint16_t* vi = vp + i * v.stride(0) + j * v.stride(1);
      uint16_t* oi = op + (i * H + j * g) * D;
      PHASERL_BY_GROUP(g, weighted_values, pi, vi, v.stride(2), L, D, oi)
    }
  });
  return out;
}

}  // namespace

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor kt, torch::Tensor v, torch::Tensor bias, int64_t L,
                               double scaling) {
  TORCH_CHECK(q.dim() == 3 && kt.dim() == 4 && v.dim() == 4 && bias.dim() == 2, "decode_attention: ranks");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 && kt.scalar_type() == at::kBFloat16 &&
                  v.scalar_type() == at::kBFloat16 && bias.scalar_type() == at::kFloat,
              "decode_attention: dtypes");
  const int64_t n = q.size(0), H = q.size(1), D = q.size(2), KV = kt.size(1);
  TORCH_CHECK(KV > 0 && H % KV == 0 && H / KV <= 8 && D % 16 == 0 && kt.size(2) == D && v.size(3) == D,
              "decode_attention: shapes");
  TORCH_CHECK(L >= 1 && L <= kt.size(3) && L <= v.size(2) && L <= bias.size(1), "decode_attention: length");
  TORCH_CHECK(q.stride(2) == 1 && kt.stride(3) == 1 && v.stride(3) == 1 && bias.stride(1) == 1,
              "decode_attention: last dims must be contiguous");
  const int64_t g = H / KV;
  const auto* qp = reinterpret_cast<const uint16_t*>(q.data_ptr<at::BFloat16>());
  const auto* kp = reinterpret_cast<const uint16_t*>(kt.data_ptr<at::BFloat16>());
  const float* bp = bias.data_ptr<float>();
  const float sc = static_cast<float>(scaling);
  auto s = torch::empty({n, H, L}, bias.options());  // float32 scores
  float* sp = s.data_ptr<float>();
  at::parallel_for(0, n * KV, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(g * D);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / KV, j = t % KV;
      const uint16_t* qi = qp + i * q.stride(0) + j * g * q.stride(1);
      for (int64_t a = 0; a < g; ++a)
        for (int64_t d = 0; d < D; ++d) qf[a * D + d] = bf16_to_float(qi[a * q.stride(1) + d]);
      const uint16_t* ki = kp + i * kt.stride(0) + j * kt.stride(1);
      PHASERL_BY_GROUP(g, scores, qf.data(), D, ki, kt.stride(2), L, bp + i * bias.stride(0), sc,
                       sp + (i * H + j * g) * L)
    }
  });
  return softmax_values(s, v, n, KV, g, L, D, q.options());
}

namespace {

// x * cos + rotate_half(x) * sin for one head of D values (D a multiple of 16), in torch's bf16 arithmetic:
// each product and the sum rounded to bf16. out: the values as float32.
inline void rope_head(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, int64_t D, float* out) {
  const int64_t half = D / 2;
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  for (int64_t d0 = 0; d0 < D; d0 += 16) {
    __m512 rot;
    if (d0 + 16 <= half) {  // -x[d + half]
      rot = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(load_bf16(x + d0 + half, 0xffff)), sign));
    } else if (d0 >= half) {  // x[d - half]
      rot = load_bf16(x + d0 - half, 0xffff);
    } else {  // a vector across the middle (half not a multiple of 16)
      alignas(64) float r[16];
      for (int e = 0; e < 16; ++e) {
        const int64_t d = d0 + e;
        r[e] = d < half ? -bf16_to_float(x[d + half]) : bf16_to_float(x[d - half]);
      }
      rot = _mm512_load_ps(r);
    }
    const __m512 xr = round_bf16(_mm512_mul_ps(load_bf16(x + d0, 0xffff), load_bf16(cos + d0, 0xffff)));
    const __m512 t = round_bf16(_mm512_mul_ps(rot, load_bf16(sin + d0, 0xffff)));
    _mm512_storeu_ps(out + d0, round_bf16(_mm512_add_ps(xr, t)));
  }
}

}  // namespace

// qkv: [n, (H + 2 KV) D] bf16 (q heads, k heads, v heads); cos, sin: [n, D] bf16. Writes k and v at L - 1.
// One pass over (row, KV head) pairs does RoPE on the pair's g query heads and its key head, the cache write and
// the scores; then torch's softmax and the weighted values.
torch::Tensor decode_step_attention(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin, torch::Tensor kt,
                                    torch::Tensor v, torch::Tensor bias, int64_t L, double scaling) {
  TORCH_CHECK(qkv.dim() == 2 && cos.dim() == 2 && sin.dim() == 2 && kt.dim() == 4 && v.dim() == 4 &&
                  bias.dim() == 2,
              "decode_step_attention: ranks");
  TORCH_CHECK(qkv.scalar_type() == at::kBFloat16 && cos.scalar_type() == at::kBFloat16 &&
                  sin.scalar_type() == at::kBFloat16 && kt.scalar_type() == at::kBFloat16 &&
                  v.scalar_type() == at::kBFloat16 && bias.scalar_type() == at::kFloat,
              "decode_step_attention: dtypes");
  const int64_t n = qkv.size(0), KV = kt.size(1), D = kt.size(2);
  TORCH_CHECK(KV > 0 && D % 16 == 0 && qkv.size(1) % D == 0 && qkv.size(1) / D > 2 * KV,
              "decode_step_attention: shapes");
  const int64_t H = qkv.size(1) / D - 2 * KV;
  TORCH_CHECK(H % KV == 0 && H / KV <= 8 && cos.size(0) == n && cos.size(1) == D && sin.size(0) == n &&
                  sin.size(1) == D && kt.size(0) == n && v.size(0) == n && v.size(1) == KV && v.size(3) == D &&
                  bias.size(0) == n,
              "decode_step_attention: shapes");
  TORCH_CHECK(L >= 1 && L <= kt.size(3) && L <= v.size(2) && L <= bias.size(1), "decode_step_attention: length");
  TORCH_CHECK(qkv.is_contiguous() && cos.is_contiguous() && sin.is_contiguous() && kt.stride(3) == 1 &&
                  v.stride(3) == 1 && bias.stride(1) == 1,
              "decode_step_attention: layouts");
  const int64_t g = H / KV, width = (H + 2 * KV) * D;
  const auto* xp = reinterpret_cast<const uint16_t*>(qkv.data_ptr<at::BFloat16>());
  const auto* cp = reinterpret_cast<const uint16_t*>(cos.data_ptr<at::BFloat16>());
  const auto* snp = reinterpret_cast<const uint16_t*>(sin.data_ptr<at::BFloat16>());
  auto* kp = reinterpret_cast<uint16_t*>(kt.data_ptr<at::BFloat16>());
  auto* vp = reinterpret_cast<uint16_t*>(v.data_ptr<at::BFloat16>());
  const float* bp = bias.data_ptr<float>();
  const float sc = static_cast<float>(scaling);
  auto s = torch::empty({n, H, L}, bias.options());  // float32 scores
  float* sp = s.data_ptr<float>();
  at::parallel_for(0, n * KV, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(g * D), kf(D);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / KV, j = t % KV;
      const uint16_t* x = xp + i * width;
      const uint16_t *ci = cp + i * D, *si = snp + i * D;
      for (int64_t a = 0; a < g; ++a) rope_head(x + (j * g + a) * D, ci, si, D, qf.data() + a * D);
      rope_head(x + (H + j) * D, ci, si, D, kf.data());
      uint16_t* kcol = kp + i * kt.stride(0) + j * kt.stride(1) + (L - 1);
      for (int64_t d = 0; d < D; ++d) kcol[d * kt.stride(2)] = bf16_bits(kf[d]);
      std::memcpy(vp + i * v.stride(0) + j * v.stride(1) + (L - 1) * v.stride(2), x + (H + KV + j) * D, D * 2);
      PHASERL_BY_GROUP(g, scores, qf.data(), D, kp + i * kt.stride(0) + j * kt.stride(1), kt.stride(2), L,
                       bp + i * bias.stride(0), sc, sp + (i * H + j * g) * L)
    }
  });
  return softmax_values(s, v, n, KV, g, L, D, qkv.options());
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "lean decoding attention (see the file's head)");
  m.def("decode_step_attention", &decode_step_attention, "RoPE, cache write and attention (see the file's head)");
}
