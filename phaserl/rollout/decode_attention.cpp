// One decoding step's attention for the lean CPU decoder (phaserl/rollout/lean.py), in one call per layer.
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
// of the cache, then decode_attention.
// Needs AVX-512 F/BW/VL/DQ (phaserl/rollout/cpu_kernels.py builds it only there).
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
  const auto* vp = reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>());
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
      const float* bi = bp + i * bias.stride(0);
      float* si = sp + (i * H + j * g) * L;
      PHASERL_BY_GROUP(g, scores, qf.data(), D, ki, kt.stride(2), L, bi, sc, si)
    }
  });
  // torch's own softmax, so the probabilities are bit for bit those of lean.py's torch path
  const auto p = at::softmax(s, -1).to(at::kBFloat16);
  const auto* pp = reinterpret_cast<const uint16_t*>(p.data_ptr<at::BFloat16>());
  auto out = torch::empty({n, H * D}, q.options());
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

namespace {

inline float round_bf16(float x) {  // to the nearest bf16, ties to even (finite x), as float32
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t bf16_bits(float rounded) {
  uint32_t u;
  std::memcpy(&u, &rounded, 4);
  return static_cast<uint16_t>(u >> 16);
}

// x * cos + rotate_half(x) * sin for one head of D values, in torch's bf16 arithmetic; out: bf16 bits.
inline void rope_head(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, int64_t D, uint16_t* out,
                      int64_t out_step) {
  const int64_t half = D / 2;
  for (int64_t d = 0; d < D; ++d) {
    const float xr = round_bf16(bf16_to_float(x[d]) * bf16_to_float(cos[d]));
    const float rot = d < half ? -bf16_to_float(x[d + half]) : bf16_to_float(x[d - half]);
    const float t = round_bf16(rot * bf16_to_float(sin[d]));
    out[d * out_step] = bf16_bits(round_bf16(xr + t));
  }
}

}  // namespace

// qkv: [n, (H + 2 KV) D] bf16 (q heads, k heads, v heads); cos, sin: [n, D] bf16. Writes k and v at L - 1.
torch::Tensor decode_step_attention(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin, torch::Tensor kt,
                                    torch::Tensor v, torch::Tensor bias, int64_t L, double scaling) {
  TORCH_CHECK(qkv.dim() == 2 && cos.dim() == 2 && sin.dim() == 2 && kt.dim() == 4 && v.dim() == 4,
              "decode_step_attention: ranks");
  TORCH_CHECK(qkv.scalar_type() == at::kBFloat16 && cos.scalar_type() == at::kBFloat16 &&
                  sin.scalar_type() == at::kBFloat16 && kt.scalar_type() == at::kBFloat16 &&
                  v.scalar_type() == at::kBFloat16,
              "decode_step_attention: dtypes");
  const int64_t n = qkv.size(0), KV = kt.size(1), D = kt.size(2);
  TORCH_CHECK(D % 16 == 0 && qkv.size(1) % D == 0 && qkv.size(1) / D > 2 * KV, "decode_step_attention: shapes");
  const int64_t H = qkv.size(1) / D - 2 * KV;
  TORCH_CHECK(cos.size(0) == n && cos.size(1) == D && sin.size(0) == n && sin.size(1) == D && kt.size(0) == n &&
                  v.size(0) == n && v.size(1) == KV && v.size(3) == D,
              "decode_step_attention: shapes");
  TORCH_CHECK(L >= 1 && L <= kt.size(3) && L <= v.size(2), "decode_step_attention: length");
  TORCH_CHECK(qkv.is_contiguous() && cos.is_contiguous() && sin.is_contiguous() && kt.stride(3) == 1 &&
                  v.stride(3) == 1,
              "decode_step_attention: layouts");
  auto q = torch::empty({n, H, D}, qkv.options());
  const auto* xp = reinterpret_cast<const uint16_t*>(qkv.data_ptr<at::BFloat16>());
  const auto* cp = reinterpret_cast<const uint16_t*>(cos.data_ptr<at::BFloat16>());
  const auto* sp = reinterpret_cast<const uint16_t*>(sin.data_ptr<at::BFloat16>());
  auto* qp = reinterpret_cast<uint16_t*>(q.data_ptr<at::BFloat16>());
  auto* kp = reinterpret_cast<uint16_t*>(kt.data_ptr<at::BFloat16>());
  auto* vp = reinterpret_cast<uint16_t*>(v.data_ptr<at::BFloat16>());
  const int64_t width = (H + 2 * KV) * D;
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint16_t* x = xp + i * width;
      for (int64_t h = 0; h < H; ++h) rope_head(x + h * D, cp + i * D, sp + i * D, D, qp + (i * H + h) * D, 1);
      for (int64_t j = 0; j < KV; ++j) {
        rope_head(x + (H + j) * D, cp + i * D, sp + i * D, D, kp + i * kt.stride(0) + j * kt.stride(1) + (L - 1),
                  kt.stride(2));
        std::memcpy(vp + i * v.stride(0) + j * v.stride(1) + (L - 1) * v.stride(2), x + (H + KV + j) * D, D * 2);
      }
    }
  });
  return decode_attention(q, kt, v, bias, L, scaling);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "lean decoding attention (see the file's head)");
  m.def("decode_step_attention", &decode_step_attention, "RoPE, cache write and attention (see the file's head)");
}
