/* SiLU of the memory's causal depthwise conv in C: `causal_conv.causal_conv_silu_reference` is its reference.
 *
 * out[b, t, c] = SiLU(Σ_j w[j, c] · x[b, t + j, c]) over x [B, T + K − 1, C] (the K − 1 tokens before the
 * window, then its T) and w [K, C]. One pass over the rows, eight channels per vector; the K rows a
 * row reads stay in L1, where the torch taps form makes K passes over all of x (BENCHMARKS.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>

#include "vec8.h"

static void conv_rows(const float *x, const float *w, float *out, ptrdiff_t rows, int channels, int taps) {
    for (ptrdiff_t t = 0; t < rows; t++) {
        const float *in = x + t * channels;
        float *o = out + t * channels;
        int c = 0;
        for (; c + 8 <= channels; c += 8) {
            v8 acc = load8(w + c) * load8(in + c);
            for (int j = 1; j < taps; j++) acc += load8(w + (ptrdiff_t)j * channels + c) * load8(in + (ptrdiff_t)j * channels + c);
            store8(o + c, acc * sigmoid8(acc));
        }
        for (; c < channels; c++) {
            float acc = 0.0f;
            for (int j = 0; j < taps; j++) acc += w[(ptrdiff_t)j * channels + c] * in[(ptrdiff_t)j * channels + c];
            o[c] = acc / (1.0f + expf(-acc));
        }
    }
}

/* conv_silu(x, w, out, batch, length, channels, taps, part, parts): addresses of contiguous float32 x [batch,
 * length + taps − 1, channels], w [taps, channels] and out [batch, length, channels]. Computes the rows of
 * the part-th of `parts` equal row ranges of every stream, with the GIL released, so threads can share a call. */
PyObject *conv_silu(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *x_obj, *w_obj, *out_obj;
    int batch, length, channels, taps, part, parts;
    if (!PyArg_ParseTuple(args, "OOOiiiiii", &x_obj, &w_obj, &out_obj, &batch, &length, &channels, &taps, &part, &parts))
        return NULL;
    const float *x = PyLong_AsVoidPtr(x_obj), *w = PyLong_AsVoidPtr(w_obj);
    float *out = PyLong_AsVoidPtr(out_obj);
    if (PyErr_Occurred()) return NULL;
    if (batch < 0 || length < 0 || channels < 1 || taps < 1 || parts < 1 || part < 0 || part >= parts) {
        PyErr_SetString(PyExc_ValueError, "conv_silu: bad batch, length, channels, taps or part");
        return NULL;
    }
    const ptrdiff_t start = (ptrdiff_t)length * part / parts, stop = (ptrdiff_t)length * (part + 1) / parts;
    Py_BEGIN_ALLOW_THREADS
    for (int b = 0; b < batch; b++)
        conv_rows(x + ((ptrdiff_t)b * (length + taps - 1) + start) * channels, w,
                  out + ((ptrdiff_t)b * length + start) * channels, stop - start, channels, taps);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
