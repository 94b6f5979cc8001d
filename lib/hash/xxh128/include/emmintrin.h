/* The SSE2 intrinsics xxhash.h's XXH3 uses, as WebAssembly SIMD128. */
#include <wasm_simd128.h>
typedef v128_t __m128i;
#define _MM_SHUFFLE(z, y, x, w) (((z) << 6) | ((y) << 4) | ((x) << 2) | (w))
#define _mm_loadu_si128(p) wasm_v128_load(p)
#define _mm_load_si128(p) wasm_v128_load(p)
#define _mm_xor_si128(a, b) wasm_v128_xor(a, b)
#define _mm_add_epi64(a, b) wasm_i64x2_add(a, b)
#define _mm_srli_epi64(a, n) wasm_u64x2_shr(a, n)
#define _mm_slli_epi64(a, n) wasm_i64x2_shl(a, n)
#define _mm_set1_epi32(x) wasm_i32x4_splat(x)
#define _mm_set_epi64x(hi, lo) wasm_i64x2_make(lo, hi)
#define _mm_shuffle_epi32(a, imm) \
  wasm_i32x4_shuffle(a, a, (imm) & 3, ((imm) >> 2) & 3, ((imm) >> 4) & 3, ((imm) >> 6) & 3)
/* Lanes 0 and 2 of each, multiplied into two 64-bit products. */
#define _mm_mul_epu32(a, b) \
  wasm_u64x2_extmul_low_u32x4(wasm_i32x4_shuffle(a, a, 0, 2, 0, 2), wasm_i32x4_shuffle(b, b, 0, 2, 0, 2))
