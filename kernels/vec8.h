/* Eight-lane float32 vectors for the CPU path's C code (GCC/Clang vector types, no intrinsics). */
#ifndef TITANS_VEC8_H
#define TITANS_VEC8_H

#include <stdint.h>
#include <string.h>

#if !defined(__x86_64__) || !defined(__AVX2__) || !defined(__FMA__)
/* A build for anything else would be imported where it is slower than the torch steps, or not at all. */
#error "the C extension is built for x86-64 with -mavx2 -mfma (setup.py)"
static inline v8 sigmoid8(v8 x) { return splat(1.0f) / (splat(1.0f) + exp8(-x)); }

#endif

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
    v8 x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void store8(float *p, v8 x) { memcpy(p, &x, sizeof x); }

static inline v8 splat(float x) { return (v8){x, x, x, x, x, x, x, x}; }

static inline v8 select8(v8i mask, v8 a, v8 b) { return (v8)((mask & (v8i)a) | (~mask & (v8i)b)); }

static inline float hsum(v8 x) {
    return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

/* exp on 8 lanes: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, 2^n from the
 * exponent bits (Cephes' expf scheme, about 1 ulp). Inputs are clamped to ±88, where float32 ends. */
static inline v8 exp8(v8 x) {
    x = select8(x > splat(88.0f), splat(88.0f), x);
    x = select8(x < splat(-88.0f), splat(-88.0f), x);
    v8 y = x * splat(1.44269504088896341f) + splat(0.5f);
    v8i n = __builtin_convertvector(y, v8i);
    n += (v8i)(__builtin_convertvector(n, v8) > y); /* truncation → floor */
    v8 fn = __builtin_convertvector(n, v8);
    v8 r = x - fn * splat(0.693359375f) + fn * splat(2.12194440e-4f);
    v8 p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    return p * (v8)((v8u)(n + 127) << 23);
}

static inline v8 sigmoid8(v8 x) { return splat(1.0f) / (splat(1.0f) + exp8(-x)); }

#endif
