/*
 * XXH3-128 (xxHash 0.8, the hash `xxhsum -H2` prints) as a WebAssembly module
 * for lib/xxh128.ts. The algorithm is xxhash.h's, unchanged; its SSE2 code path
 * runs on WebAssembly SIMD through include/emmintrin.h.
 *
 * One hash state per module instance, over one input buffer in its memory:
 * JavaScript reads file bytes straight into `buffer()` and calls `update(n)`.
 */
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_SSE2
#include XXHASH_H /* build.sh: Debian libxxhash-dev's /usr/include/xxhash.h */

void *memcpy(void *dst, const void *src, size_t n) { return __builtin_memcpy(dst, src, n); }
void *memset(void *dst, int c, size_t n) { return __builtin_memset(dst, c, n); }
int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
void *malloc(size_t n) { (void)n; return 0; }
void free(void *p) { (void)p; }

#define BUFFER_BYTES (256 * 1024)
static unsigned char buffer[BUFFER_BYTES] __attribute__((aligned(64)));
static XXH3_state_t state;
static unsigned char out[16];

__attribute__((export_name("buffer"))) unsigned char *fts_buffer(void) { return buffer; }
__attribute__((export_name("bufferBytes"))) unsigned fts_buffer_bytes(void) { return BUFFER_BYTES; }
__attribute__((export_name("reset"))) void fts_reset(void) { XXH3_128bits_reset(&state); }
/* Hashes the first n bytes of the buffer (n <= BUFFER_BYTES). */
__attribute__((export_name("update"))) void fts_update(unsigned n) {
  XXH3_128bits_update(&state, buffer, n < BUFFER_BYTES ? n : BUFFER_BYTES);
}
/* The digest so far, canonical (big-endian) as xxhsum prints it: 16 bytes at the returned address. */
__attribute__((export_name("digest"))) unsigned char *fts_digest(void) {
  XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits_digest(&state));
  return out;
}
