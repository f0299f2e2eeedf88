/* The fused CPU path's chunk steps in C, one matrix (stream × head) at a time (SPEC 2b, 8).
 *
 * Same arithmetic as `_chunk_step` in memory_cpu.py, which is its reference. In torch, a chunk of 8
 * tokens costs some 35 small ATen operations whose fixed cost is most of the step, and its 8-row
 * matmuls run at about half of MKL's large-matrix rate. Here a whole block of chunks is one
 * call with the GIL released, so Python threads can step different matrices at once, and every product
 * is a register-tiled loop over GCC/Clang vector types (no intrinsics; built for AVX2
 * and FMA, setup.py). float32 only; memory_cpu.py lays out the inputs and gates chunk-major and keeps the state
 * [Wᵀ; Sᵀ] per layer exactly as its torch step does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vec8.h"

#define MAX_DEPTH 8

static float sigmoid1(float x) { return 1.0f / (1.0f + expf(-x)); }

/* s = σ(z), act = z·s and (if dact) σ'-of-SiLU = s + z·s·(1 − s), over `size` values. */
static void silu_forward(const float *z, float *s, float *act, float *dact, ptrdiff_t size) {
    ptrdiff_t i = 0;
    for (; i + 8 <= size; i += 8) {
        v8 x = load8(z + i), sig = sigmoid8(x), a = x * sig;
        if (s) store8(s + i, sig);
        store8(act + i, a);
        if (dact) store8(dact + i, sig + a - a * sig);
    }
    for (; i < size; i++) {
        float sig = sigmoid1(z[i]), a = z[i] * sig;
        if (s) s[i] = sig;
        act[i] = a;
        if (dact) dact[i] = sig + a - a * sig;
    }
}

/* What a product adds to: nothing, C itself, or (the chunk-end commit, SPEC 2b) the decayed state
 * [β_n Wᵀ + b_n Sᵀ; E_n Sᵀ], C's first `split` rows being Wᵀ and the rest Sᵀ. Decaying inside the
 * product saves a pass over the state, which at chunks of 8 costs as much as the product itself. */
typedef enum { ZERO, ADD, DECAY } Init;
typedef struct {
    int split;
    float beta, b, e;
} Decay;

static inline v8 init8(Init init, const Decay *decay, const float *C, ptrdiff_t ldc, int r, int j) {
    if (init == ZERO) return splat(0.0f);
    const float *c = C + (ptrdiff_t)r * ldc + j;
    if (init == ADD) return load8(c);
    if (r < decay->split) return splat(decay->beta) * load8(c) + splat(decay->b) * load8(c + (ptrdiff_t)decay->split * ldc);
    return splat(decay->e) * load8(c);
}

static inline float init1(Init init, const Decay *decay, const float *C, ptrdiff_t ldc, int r, int j) {
    if (init == ZERO) return 0.0f;
    const float *c = C + (ptrdiff_t)r * ldc + j;
    if (init == ADD) return *c;
    if (r < decay->split) return decay->beta * *c + decay->b * c[(ptrdiff_t)decay->split * ldc];
    return decay->e * *c;
}

/* Rows r … r + rows − 1 (rows ≤ 4) by columns j … j + 8·vecs − 1 (vecs ≤ 3) of C = init + A·B, the
 * accumulators in registers. Inlined with constant sizes, so each shape is its own unrolled loop. */
static inline __attribute__((always_inline)) void tile(int rows, int vecs, int r, int j, int K, const float *A,
                                                        ptrdiff_t ars, ptrdiff_t acs, const float *B, ptrdiff_t ldb, float *C,
                                                        ptrdiff_t ldc, Init init, const Decay *decay) {
    v8 c[4][3];
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < vecs; h++) c[i][h] = init8(init, decay, C, ldc, r + i, j + 8 * h);
#pragma GCC unroll 4
    for (int k = 0; k < K; k++) {
        v8 b[3];
        for (int h = 0; h < vecs; h++) b[h] = load8(B + (ptrdiff_t)k * ldb + j + 8 * h);
        for (int i = 0; i < rows; i++) {
            v8 a = splat(A[(ptrdiff_t)(r + i) * ars + (ptrdiff_t)k * acs]);
            for (int h = 0; h < vecs; h++) c[i][h] += a * b[h];
        }
    }
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < vecs; h++) store8(C + (ptrdiff_t)(r + i) * ldc + j + 8 * h, c[i][h]);
}

/* C[M×N] = init + A·B with A(r, k) = A[r·ars + k·acs] and B row-major [K×N]. Tiles of 4 rows × 24
 * columns keep 12 accumulators in registers, enough independent FMA chains to cover the FMA latency;
 * three B loads and four broadcasts feed twelve FMAs, and the K loop is unrolled by 4 (GCC leaves it
 * rolled otherwise): together 1.25–1.4× the 4 × 16 rolled tile over whole chunk steps (BENCHMARKS.md).
 * Rows are stored in order, so a DECAY init reads the Sᵀ rows before they are overwritten. */
static void gemm(int M, int N, int K, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *B, ptrdiff_t ldb, float *C,
                 ptrdiff_t ldc, Init init, const Decay *decay) {
    int j = 0;
#define STRIP(vecs)                                                                                   \
    do {                                                                                              \
        int r = 0;                                                                                    \
        for (; r + 4 <= M; r += 4) tile(4, vecs, r, j, K, A, ars, acs, B, ldb, C, ldc, init, decay); \
        for (; r < M; r++) tile(1, vecs, r, j, K, A, ars, acs, B, ldb, C, ldc, init, decay);         \
    } while (0)
    for (; j + 24 <= N; j += 24) STRIP(3);
    for (; j + 16 <= N; j += 16) STRIP(2);
    for (; j + 8 <= N; j += 8) STRIP(1);
#undef STRIP
    for (int r = 0; r < M; r++)
        for (int c = j; c < N; c++) {
            float sum = init1(init, decay, C, ldc, r, c);
            for (int k = 0; k < K; k++) sum += A[(ptrdiff_t)r * ars + (ptrdiff_t)k * acs] * B[(ptrdiff_t)k * ldb + c];
            C[(ptrdiff_t)r * ldc + c] = sum;
        }
}

/* Rows r … r + rows − 1 of A (rows ≤ 4) dotted with rows j … j + cols − 1 of B (cols ≤ 3), along K. */
static inline __attribute__((always_inline)) void tile_nt(int rows, int cols, int r, int j, int K, const float *A,
                                                           ptrdiff_t lda, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc) {
    const int K8 = K - K % 8;
    v8 c[4][3];
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < cols; h++) c[i][h] = splat(0.0f);
#pragma GCC unroll 2
    for (int k = 0; k < K8; k += 8) {
        v8 b[3];
        for (int h = 0; h < cols; h++) b[h] = load8(B + (ptrdiff_t)(j + h) * ldb + k);
        for (int i = 0; i < rows; i++) {
            v8 a = load8(A + (ptrdiff_t)(r + i) * lda + k);
            for (int h = 0; h < cols; h++) c[i][h] += a * b[h];
        }
    }
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < cols; h++) {
            float sum = hsum(c[i][h]);
            for (int k = K8; k < K; k++) sum += A[(ptrdiff_t)(r + i) * lda + k] * B[(ptrdiff_t)(j + h) * ldb + k];
            C[(ptrdiff_t)(r + i) * ldc + j + h] = sum;
        }
}

/* C[M×N] = A·Bᵀ for row-major A [M×K] and B [N×K]: dot products along K, 4 rows of A by 3 of B (12
 * accumulators, as in `gemm`). */
static void gemm_nt(int M, int N, int K, const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc) {
    int r = 0;
    for (; r + 4 <= M; r += 4) {
        int j = 0;
        for (; j + 3 <= N; j += 3) tile_nt(4, 3, r, j, K, A, lda, B, ldb, C, ldc);
        for (; j < N; j++) tile_nt(4, 1, r, j, K, A, lda, B, ldb, C, ldc);
    }
    for (; r < M; r++) {
        int j = 0;
        for (; j + 3 <= N; j += 3) tile_nt(1, 3, r, j, K, A, lda, B, ldb, C, ldc);
        for (; j < N; j++) tile_nt(1, 1, r, j, K, A, lda, B, ldb, C, ldc);
    }
}

static float dot(const float *a, const float *b, ptrdiff_t size) {
    v8 acc = splat(0.0f);
    ptrdiff_t i = 0;
    for (; i + 8 <= size; i += 8) acc += load8(a + i) * load8(b + i);
    float sum = hsum(acc);
    for (; i < size; i++) sum += a[i] * b[i];
    return sum;
}

/* One chunk's operands in the block (memory_cpu._Block), already offset to this matrix and chunk. */
#define N_OPERANDS 8
typedef struct {
    const float *q, *k, *v, *theta, *log_eta, *log_keep; /* the gates θ_t, log η_t, log(1 − α_t) */
    float *y, *surprise;
} ChunkOperands;

typedef struct {
    int depth, chunk, dims[MAX_DEPTH + 1];
    float grad_clip;
    float *ws[MAX_DEPTH]; /* this matrix's [Wᵀ; Sᵀ] per layer, [2·d_in × d_out] */
    /* Scratch: per hidden layer act and σ' on the keys and the query read; per layer δ; shared by the
     * layers, a pre-activation z, the last one, the next layer's operands, a C×C Gram matrix. */
    float *act[MAX_DEPTH], *dact[MAX_DEPTH], *read[MAX_DEPTH], *delta[MAX_DEPTH], *z, *z_out, *left, *scaled,
        *gram, *norm_sq;
    /* The chunk's gate coefficients (`chunk_coefficients`) and ‖k_t‖²/τ². */
    float *acc, *beta, *neg_m, *e, *keep, *ratio, *key_norm; /* ratio: E_t/E_i, i ≤ t */
} Step;

/* The gate coefficients of one chunk (SPEC 2b), as `_Block.coefficients` computes them for a block: E_t and
 * β_t (cumulative products of η and 1 − α), row t of acc = [−c_{t,0..C−1} | b_t] by the recurrences
 * c_{t,i} = (1 − α_t) c_{t−1,i} + θ_i E_t/E_i and b_t = (1 − α_t) b_{t−1} + E_t, and −m_i = −θ_i E_C/E_i.
 * The ratios E_t/E_i (i ≤ t; none above the diagonal) are kept as products, E_t/E_i = η_t E_{t−1}/E_i,
 * each of factors ≤ 1. The torch forms take exp(log E_t − log E_i), which cancels digits in float32 once
 * log E is large (η ≈ 0.0025, as in the context memory, makes it about −1500 over a chunk of 256). */
static void chunk_coefficients(Step *st, const ChunkOperands *op) {
    const int T = st->chunk;
    const ptrdiff_t ld = T + 1;
    float log_e = 0.0f, log_b = 0.0f, *ratio = st->ratio;
    for (int t = 0; t < T; t++) {
        log_e += op->log_eta[t], log_b += op->log_keep[t];
        st->e[t] = expf(log_e), st->beta[t] = expf(log_b), st->keep[t] = expf(op->log_keep[t]);
    }
    for (int t = 0; t < T; t++) {
        float *row = st->acc + t * ld;
        const float eta = expf(op->log_eta[t]);
        for (int i = 0; i < t; i++) ratio[i] *= eta;
        ratio[t] = 1.0f;
        for (int i = 0; i <= t; i++) row[i] = ratio[i];
        for (int i = t + 1; i < T; i++) row[i] = 0.0f;
        row[T] = st->e[t];
        if (t > 0)
            for (int c = 0; c <= T; c++) row[c] += st->keep[t] * row[c - ld];
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < T; i++) st->acc[t * ld + i] *= -op->theta[i];
    for (int i = 0; i < T; i++) st->neg_m[i] = -op->theta[i] * ratio[i];
    if (st->grad_clip != 0.0f) {
        const float inv_sq = 1.0f / (st->grad_clip * st->grad_clip);
        for (int t = 0; t < T; t++) st->key_norm[t] = dot(op->k + (ptrdiff_t)t * st->dims[0], op->k + (ptrdiff_t)t * st->dims[0], st->dims[0]) * inv_sq;
    }
}

/* One chunk, as `_chunk_step`: outputs y and surprise (‖δ^L‖², halved by the caller), state committed
 * when `commit`. Row t of st->acc is [−c_{t,0..C−1} | b_t]. */
static void chunk_step(Step *st, const ChunkOperands *op, int commit) {
    const int L = st->depth, T = st->chunk, *d = st->dims;
    const ptrdiff_t ld_acc = T + 1;
    chunk_coefficients(st, op);

    /* Forward at M₀ on the keys: z^l = a^{l−1} W^{lᵀ}, SiLU and σ' of the hidden pre-activations. */
    const float *a = op->k;
    for (int l = 0; l < L - 1; l++) {
        gemm(T, d[l + 1], d[l], a, d[l], 1, st->ws[l], d[l + 1], st->z, d[l + 1], ZERO, NULL);
        silu_forward(st->z, NULL, st->act[l], st->dact[l], (ptrdiff_t)T * d[l + 1]);
        a = st->act[l];
    }
    gemm(T, d[L], d[L - 1], a, d[L - 1], 1, st->ws[L - 1], d[L], st->z_out, d[L], ZERO, NULL);

    /* Backward of ½‖M₀(k) − v‖² by hand: δ^L = M₀(k) − v, δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(z^l). */
    float *last = st->delta[L - 1];
    for (ptrdiff_t i = 0; i < (ptrdiff_t)T * d[L]; i++) last[i] = st->z_out[i] - op->v[i];
    for (int t = 0; t < T; t++) op->surprise[t] = dot(last + (ptrdiff_t)t * d[L], last + (ptrdiff_t)t * d[L], d[L]);
    for (int l = L - 2; l >= 0; l--) {
        gemm_nt(T, d[l + 1], d[l + 2], st->delta[l + 1], d[l + 2], st->ws[l + 1], d[l + 2], st->delta[l], d[l + 1]);
        for (ptrdiff_t i = 0; i < (ptrdiff_t)T * d[l + 1]; i++) st->delta[l][i] *= st->dact[l][i];
    }

    /* Gradient clip (`_clip`): ‖u_t‖²/τ² = Σ_l ‖δ_t^l‖² ‖a_t^{l−1}‖²/τ², each δ_t scaled by rsqrt(max(1, ·)). */
    if (st->grad_clip != 0.0f) {
        const float inv_sq = 1.0f / (st->grad_clip * st->grad_clip);
        for (int t = 0; t < T; t++) {
            float first = L == 1 ? op->surprise[t] : dot(st->delta[0] + (ptrdiff_t)t * d[1], st->delta[0] + (ptrdiff_t)t * d[1], d[1]);
            float sum = first * st->key_norm[t];
            for (int l = 1; l < L; l++) {
                const float *dl = st->delta[l] + (ptrdiff_t)t * d[l + 1], *al = st->act[l - 1] + (ptrdiff_t)t * d[l];
                float sq = l == L - 1 ? op->surprise[t] : dot(dl, dl, d[l + 1]);
                sum += sq * dot(al, al, d[l]) * inv_sq;
            }
            st->norm_sq[t] = sum > 1.0f ? 1.0f / sqrtf(sum) : 1.0f;
        }
        for (int l = 0; l < L; l++)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < d[l + 1]; i++) st->delta[l][(ptrdiff_t)t * d[l + 1] + i] *= st->norm_sq[t];
    }

    /* Retrieval y_t = M_t(q_t) (SPEC 2b): per layer [β⊙r | b⊙r] @ [Wᵀ; Sᵀ] + (−c⊙(r aᵀ)) @ δ, where r is
     * the query-side input (q, then SiLU of the previous layer's read) and a the key-side one (k, then act). */
    const float *r = op->q;
    float *out = NULL;
    for (int l = 0; l < L; l++) {
        const int h = d[l];
        const float *a = l == 0 ? op->k : st->act[l - 1];
        if (l > 0) {
            silu_forward(out, NULL, st->z, NULL, (ptrdiff_t)T * h); /* z is free again */
            r = st->z;
        }
        for (int t = 0; t < T; t++) {
            const float beta = st->beta[t], b = st->acc[t * ld_acc + T];
            for (int i = 0; i < h; i++) {
                st->left[(ptrdiff_t)t * 2 * h + i] = r[(ptrdiff_t)t * h + i] * beta;
                st->left[(ptrdiff_t)t * 2 * h + h + i] = r[(ptrdiff_t)t * h + i] * b;
            }
        }
        gemm_nt(T, T, h, r, h, a, h, st->gram, T);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < T; i++) st->gram[t * T + i] *= st->acc[t * ld_acc + i];
        out = l == L - 1 ? op->y : st->read[l];
        gemm(T, d[l + 1], 2 * h, st->left, 2 * h, 1, st->ws[l], d[l + 1], out, d[l + 1], ZERO, NULL);
        gemm(T, d[l + 1], T, st->gram, T, 1, st->delta[l], d[l + 1], out, d[l + 1], ADD, NULL);
    }
    if (!commit) return;

    /* Chunk end (SPEC 2b): Wᵀ ← β_n Wᵀ + b_n Sᵀ − aᵀ(c_end⊙δ), Sᵀ ← E_n Sᵀ − aᵀ(m⊙δ). */
    const Decay decay = {.beta = st->beta[T - 1], .b = st->acc[(T - 1) * ld_acc + T], .e = st->e[T - 1]};
    const float *neg_c_end = st->acc + (T - 1) * ld_acc;
    for (int l = 0; l < L; l++) {
        const int h = d[l];
        const float *a = l == 0 ? op->k : st->act[l - 1];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < h; i++) {
                st->scaled[(ptrdiff_t)t * 2 * h + i] = a[(ptrdiff_t)t * h + i] * neg_c_end[t];
                st->scaled[(ptrdiff_t)t * 2 * h + h + i] = a[(ptrdiff_t)t * h + i] * st->neg_m[t];
            }
        /* [Wᵀ; Sᵀ] ← decayed + scaledᵀ δ: a rank-C update, the scaled operand read transposed. */
        Decay layer = decay;
        layer.split = d[l];
        gemm(2 * d[l], d[l + 1], T, st->scaled, 1, 2 * d[l], st->delta[l], d[l + 1], st->ws[l], d[l + 1], DECAY, &layer);
    }
}

/* steps(dims, chunk, grad_clip, ws, operands, stride, count, commits): `count` chunk steps of one matrix,
 * the first `commits` of them committed. dims are the layer widths (d_0, …, d_L); ws the addresses of
 * this matrix's [Wᵀ; Sᵀ] per layer; operands the addresses of this matrix's chunk-0 rows of the block's
 * q, k, v, θ, log η, log(1 − α), y, surprise, whose chunk j lies `stride`
 * rows (the block's matrix count) further on. All float32, contiguous. */
static PyObject *steps(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *dims_obj, *ws_obj, *ops_obj;
    int chunk, stride, count, commits;
    float grad_clip;
    if (!PyArg_ParseTuple(args, "O!ifO!O!iii", &PyTuple_Type, &dims_obj, &chunk, &grad_clip, &PyTuple_Type, &ws_obj,
                          &PyTuple_Type, &ops_obj, &stride, &count, &commits))
        return NULL;
    Step st = {.depth = (int)PyTuple_GET_SIZE(ws_obj), .chunk = chunk, .grad_clip = grad_clip};
    const int L = st.depth, T = chunk;
    if (L < 1 || L > MAX_DEPTH || PyTuple_GET_SIZE(dims_obj) != L + 1 || PyTuple_GET_SIZE(ops_obj) != N_OPERANDS || T < 1) {
        PyErr_SetString(PyExc_ValueError, "steps: bad depth, dims, operands or chunk");
        return NULL;
    }
    int widest = 0;
    for (int l = 0; l <= L; l++) {
        st.dims[l] = (int)PyLong_AsLong(PyTuple_GET_ITEM(dims_obj, l));
        widest = st.dims[l] > widest ? st.dims[l] : widest;
    }
    for (int l = 0; l < L; l++) st.ws[l] = PyLong_AsVoidPtr(PyTuple_GET_ITEM(ws_obj, l));
    float *base[N_OPERANDS];
    for (int i = 0; i < N_OPERANDS; i++) base[i] = PyLong_AsVoidPtr(PyTuple_GET_ITEM(ops_obj, i));
    if (PyErr_Occurred()) return NULL;

    const int *d = st.dims;
    /* z, z_out, left, scaled, gram, norm_sq; acc, beta, neg_m, e, keep, ratio, key_norm */
    ptrdiff_t size = (ptrdiff_t)T * (widest + d[L] + 2 * 2 * widest + T + 1) + (ptrdiff_t)T * (T + 1 + 6);
    for (int l = 0; l < L; l++) size += (ptrdiff_t)T * d[l + 1] * (l < L - 1 ? 4 : 1);
    float *scratch = malloc(sizeof(float) * size);
    if (!scratch) return PyErr_NoMemory();
    float *p = scratch;
    for (int l = 0; l < L; l++) {
        st.delta[l] = p, p += (ptrdiff_t)T * d[l + 1];
        if (l < L - 1) {
            st.act[l] = p, p += (ptrdiff_t)T * d[l + 1];
            st.dact[l] = p, p += (ptrdiff_t)T * d[l + 1];
            st.read[l] = p, p += (ptrdiff_t)T * d[l + 1];
        }
    }
    st.z = p, p += (ptrdiff_t)T * widest;
    st.z_out = p, p += (ptrdiff_t)T * d[L];
    st.left = p, p += (ptrdiff_t)T * 2 * widest;
    st.scaled = p, p += (ptrdiff_t)T * 2 * widest;
    st.gram = p, p += (ptrdiff_t)T * T;
    st.norm_sq = p, p += T;
    st.acc = p, p += (ptrdiff_t)T * (T + 1);
    float **per_token[] = {&st.beta, &st.neg_m, &st.e, &st.keep, &st.ratio, &st.key_norm};
    for (size_t i = 0; i < sizeof per_token / sizeof *per_token; i++) *per_token[i] = p, p += T;

    /* Elements per chunk row of each operand, in the order of `operands`. */
    const ptrdiff_t row[N_OPERANDS] = {(ptrdiff_t)T * d[0], (ptrdiff_t)T * d[0], (ptrdiff_t)T * d[L], T, T, T, (ptrdiff_t)T * d[L], T};
    Py_BEGIN_ALLOW_THREADS
    for (int j = 0; j < count; j++) {
        float *at[N_OPERANDS];
        for (int i = 0; i < N_OPERANDS; i++) at[i] = base[i] + (ptrdiff_t)j * stride * row[i];
        ChunkOperands op = {at[0], at[1], at[2], at[3], at[4], at[5], at[6], at[7]};
        chunk_step(&st, &op, j < commits);
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    Py_RETURN_NONE;
}

/* coefficients(theta, log_eta, log_keep, c, beta, b, m, count, chunk): `chunk_coefficients` (memory_chunked.py)
 * of `count` chunks, by the steps' own `chunk_coefficients` above: gates [count, chunk] in, c [count, chunk,
 * chunk] (zero above the diagonal) and beta, b, m [count, chunk] out. Addresses of contiguous float32 tensors. */
static PyObject *coefficients(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *obj[7];
    int count, chunk;
    if (!PyArg_ParseTuple(args, "OOOOOOOii", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5], &obj[6], &count, &chunk))
        return NULL;
    float *at[7];
    for (int i = 0; i < 7; i++) at[i] = PyLong_AsVoidPtr(obj[i]);
    if (PyErr_Occurred()) return NULL;
    if (count < 0 || chunk < 1) {
        PyErr_SetString(PyExc_ValueError, "coefficients: bad count or chunk");
        return NULL;
    }
    const int T = chunk;
    /* acc, then beta, neg_m, e, keep, ratio */
    float *scratch = malloc(sizeof(float) * ((size_t)T * (T + 1) + 5 * (size_t)T));
    if (!scratch) return PyErr_NoMemory();
    Step st = {.chunk = T, .acc = scratch};
    float **per_token[] = {&st.beta, &st.neg_m, &st.e, &st.keep, &st.ratio};
    for (int i = 0; i < 5; i++) *per_token[i] = scratch + (ptrdiff_t)T * (T + 1) + (ptrdiff_t)i * T;
    Py_BEGIN_ALLOW_THREADS
    for (ptrdiff_t j = 0; j < count; j++) {
        const ptrdiff_t gates = j * T;
        ChunkOperands op = {.theta = at[0] + gates, .log_eta = at[1] + gates, .log_keep = at[2] + gates};
        chunk_coefficients(&st, &op);
        float *c = at[3] + gates * T, *beta = at[4] + gates, *b = at[5] + gates, *m = at[6] + gates;
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < T; i++) c[t * T + i] = -st.acc[t * (T + 1) + i];
            beta[t] = st.beta[t], b[t] = st.acc[t * (T + 1) + T], m[t] = -st.neg_m[t];
        }
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    Py_RETURN_NONE;
}

PyObject *conv_silu(PyObject *self, PyObject *args); /* causal_conv_native.c */

static PyMethodDef methods[] = {
    {"steps", steps, METH_VARARGS, "Chunk steps of the fused CPU recurrence for one matrix (see memory_cpu.py)."},
    {"coefficients", coefficients, METH_VARARGS, "Gate coefficients of chunks (see memory_cpu.py)."},
    {"conv_silu", conv_silu, METH_VARARGS, "SiLU of the memory's causal depthwise conv (see causal_conv.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_native", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) Py_CLEAR(m);
    return m;
}
