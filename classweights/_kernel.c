/* Undo the row filters of an inflated PNG stream and count its pixels, in one pass a row.
 *
 * classweights._kernel.count(stream, width, height, depth, colour_type) takes the inflated
 * image data of a non-interlaced PNG (or of one interlace pass): `height` scanlines, each a
 * filter-type byte and the row's filtered bytes (PNG specification, sections 7.2 and 9). It
 * rebuilds each row into one of two row buffers (the row above is the other one, or the
 * stream itself where a row was stored unfiltered) and counts the row while it is in cache:
 *
 *   - 8-bit gray and palette samples in a 256-bin table, a run of equal bytes at a time;
 *   - 1-, 2- and 4-bit samples as their STORED values (0-3 in a 2-bit PNG, never Pillow's
 *     rescaled 0/85/170/255): bytes into the 256-bin table, then each byte into its samples;
 *   - 16-bit gray in a 65536-bin table, a run of equal samples at a time;
 *   - RGB and RGBA as colours packed 0xRRGGBB (alpha is not part of a class colour; 16-bit
 *     samples by their high byte, as Pillow reads them), runs of equal pixels into an
 *     open-addressing hash table.
 *
 * It returns (values, counts): two bytes objects of native int64, the distinct values (sorted
 * for tables, in table order for colours) and their pixel counts. The GIL is released around
 * the loop. A filter type above 4 or a stream that is not exactly `height` rows raises
 * ValueError naming what is wrong.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* --- row filters (PNG specification, section 9.2) ------------------------------------- */

INLINE uint8_t paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return (uint8_t)((pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c));
}

INLINE uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The first k in [i, n) with p[k] != 0, else n: eight bytes at a time. */
INLINE size_t next_nonzero(const uint8_t *p, size_t i, size_t n)
{
    for (; i + 8 <= n; i += 8)
        if (load64(p + i)) break;
    while (i < n && p[i] == 0) i++;
    return i;
}

/* The first k in [i, n) with up[k] != up[k - bpp] (an edge in the row above), else n;
 * i >= bpp. */
INLINE size_t next_edge(const uint8_t *up, size_t i, size_t n, size_t bpp)
{
    for (; i + 8 <= n; i += 8)
        if (load64(up + i) != load64(up + i - bpp)) break;
    while (i < n && up[i] == up[i - bpp]) i++;
    return i;
}

INLINE void store64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Little-endian machines build a pixel repeated over words in registers: */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD_PATTERNS 1
#else
#define WORD_PATTERNS 0
#endif

/* Bytes a repeated pixel of `bpp` bytes takes to fill whole words: 24 for 3 and 6, else 8. */
INLINE size_t pattern_bytes(size_t bpp)
{
    return bpp == 3 || bpp == 6 ? 24 : 8;
}

/* w[0 .. pattern_bytes(bpp) / 8) = the pixel at `p` repeated (1, 2, 3, 4, 6 or 8 bytes). */
INLINE void pattern(const uint8_t *p, size_t bpp, uint64_t w[3])
{
    uint64_t px = 0;
    memcpy(&px, p, bpp);
    switch (bpp) {
    case 1: w[0] = 0x0101010101010101ULL * px; break;
    case 2: w[0] = 0x0001000100010001ULL * px; break;
    case 3: /* 8 pixels over three words: p0 p1 p2 p0 p1 p2 p0 p1 | p2 p0 ... */
        w[0] = px | px << 24 | px << 48;
        w[1] = px >> 16 | px << 8 | px << 32 | px << 56;
        w[2] = px >> 8 | px << 16 | px << 40;
        break;
    case 4: w[0] = 0x0000000100000001ULL * px; break;
    case 6: /* 4 pixels over three words */
        w[0] = px | px << 48;
        w[1] = px >> 16 | px << 32;
        w[2] = px >> 32 | px << 16;
        break;
    default: w[0] = px; break; /* 8 */
    }
}

/* out[k] = out[k - bpp] for k in [i, j): the pixel on the left repeated. The pixel is read
 * once, and the fill stored a word at a time from words built in registers: a word loaded
 * from bytes stored one at a time would stall on every block. */
INLINE void repeat_fill(uint8_t *out, size_t i, size_t j, size_t bpp)
{
    if (j <= i) return;
    if (bpp == 1) {
        memset(out + i, out[i - 1], j - i);
        return;
    }
    if (WORD_PATTERNS) {
        uint64_t w[3];
        size_t k, block = pattern_bytes(bpp);
        pattern(out + i - bpp, bpp, w);
        for (; i + block <= j; i += block)
            for (k = 0; k < block / 8; k++) memcpy(out + i + 8 * k, &w[k], 8);
    }
    for (; i < j; i++) out[i] = out[i - bpp];
}

/* Rebuild one row into `out` from its filtered bytes `in` and the rebuilt row above `up`
 * (all zeros for the first row). `bpp` is a constant in each caller below, so the compiler
 * makes one loop per pixel size. Sub, Average and Paeth chain each byte to the one a pixel
 * to its left: that byte is carried in a register along its lane (the bytes at one position
 * of every pixel), not read back from `out`, which would stall on every byte. */
INLINE void unfilter_bpp(int kind, uint8_t *restrict out, const uint8_t *restrict in,
                         const uint8_t *restrict up, size_t n, const size_t bpp)
{
    size_t i, lane;
    switch (kind) {
    case 1: /* Sub */
        for (i = 0; i < bpp && i < n; i++) out[i] = in[i];
        while (i < n) {
            /* Residuals of 0 (flat regions, most of a mask) repeat the pixel on the left:
             * they are found eight at a time and filled a word at a time. */
            size_t j = next_nonzero(in, i, n), end;
            repeat_fill(out, i, j, bpp);
            for (end = j + bpp < n ? j + bpp : n; j < end; j++)
                out[j] = (uint8_t)(in[j] + out[j - bpp]);
            i = j;
        }
        break;
    case 2: /* Up */
        for (i = 0; i < n; i++) out[i] = (uint8_t)(in[i] + up[i]);
        break;
    case 3: /* Average */
        for (lane = 0; lane < bpp; lane++) {
            uint8_t a = 0;
            for (i = lane; i < n; i += bpp) out[i] = a = (uint8_t)(in[i] + ((a + up[i]) >> 1));
        }
        break;
    case 4: /* Paeth */
        for (i = 0; i < bpp && i < n; i++) out[i] = (uint8_t)(in[i] + up[i]);
        while (i < n) {
            /* Where the residual is 0 and the row above is flat (b == c), the predictor is
             * a: the pixel on the left repeats, as in Sub. Only the bytes at an edge of
             * this row or the row above go through the predictor. */
            size_t j = next_nonzero(in, i, n), edge = next_edge(up, i, j, bpp), end;
            j = edge < j ? edge : j;
            repeat_fill(out, i, j, bpp);
            for (end = j + bpp < n ? j + bpp : n; j < end; j++)
                out[j] = (uint8_t)(in[j] + paeth(out[j - bpp], up[j], up[j - bpp]));
            i = j;
        }
        break;
    }
}

static void unfilter(int kind, uint8_t *out, const uint8_t *in, const uint8_t *up, size_t n,
                     size_t bpp)
{
    switch (bpp) {
    case 1: unfilter_bpp(kind, out, in, up, n, 1); break;
    case 2: unfilter_bpp(kind, out, in, up, n, 2); break;
    case 3: unfilter_bpp(kind, out, in, up, n, 3); break;
    case 4: unfilter_bpp(kind, out, in, up, n, 4); break;
    case 6: unfilter_bpp(kind, out, in, up, n, 6); break;
    default: unfilter_bpp(kind, out, in, up, n, 8); break;
    }
}

/* --- counting -------------------------------------------------------------------------- */


/* Count the bytes of `row` into `table`, a run of equal bytes at a time: eight bytes are
 * compared at once while they all equal the run's byte. */
static void count_bytes(const uint8_t *row, size_t n, uint64_t *table)
{
    size_t start = 0, i = 1;
    if (n == 0) return;
    while (i < n) {
        uint8_t v = row[start];
        uint64_t wide = 0x0101010101010101ULL * v;
        while (i + 8 <= n && load64(row + i) == wide) i += 8;
        while (i < n && row[i] == v) i++;
        if (i < n) {
            table[v] += i - start;
            start = i++;
        }
    }
    table[row[start]] += n - start;
}

/* Add a run of n samples of value v to the 16-bit table, noting v in `seen` the first time:
 * the result then reads the few values seen, not all 65536 bins. */
INLINE void add_u16(uint64_t *table, uint16_t *seen, size_t *nseen, unsigned v, size_t n)
{
    if (table[v] == 0) seen[(*nseen)++] = (uint16_t)v;
    table[v] += n;
}

/* Count big-endian 16-bit samples, a run of equal samples at a time. */
static void count_u16(const uint8_t *row, size_t samples, uint64_t *table, uint16_t *seen,
                      size_t *nseen)
{
    size_t start = 0, i = 1;
    if (samples == 0) return;
    while (i < samples) {
        uint16_t v;
        memcpy(&v, row + 2 * start, 2);
        uint64_t wide = 0x0001000100010001ULL * v;
        while (i + 4 <= samples && load64(row + 2 * i) == wide) i += 4;
        while (i < samples && memcmp(row + 2 * i, &v, 2) == 0) i++;
        if (i < samples) {
            add_u16(table, seen, nseen, (row[2 * start] << 8) | row[2 * start + 1], i - start);
            start = i++;
        }
    }
    add_u16(table, seen, nseen, (row[2 * start] << 8) | row[2 * start + 1], samples - start);
}

/* Colours: keys 0xRRGGBB in an open-addressing table; EMPTY is no colour. */
#define EMPTY 0xFFFFFFFFu

typedef struct {
    uint32_t *keys;
    uint64_t *counts;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t used;
    int failed;  /* out of memory */
} Colours;

static int colours_init(Colours *t, size_t capacity)
{
    t->keys = malloc(capacity * sizeof *t->keys);
    t->counts = calloc(capacity, sizeof *t->counts);
    t->mask = capacity - 1;
    t->used = 0;
    t->failed = t->keys == NULL || t->counts == NULL;
    if (!t->failed) memset(t->keys, 0xFF, capacity * sizeof *t->keys);
    return !t->failed;
}

static void colours_free(Colours *t)
{
    free(t->keys);
    free(t->counts);
}

INLINE size_t slot_of(uint32_t key, size_t mask)
{
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

static void colours_grow(Colours *t)
{
    Colours bigger;
    size_t i;
    if (!colours_init(&bigger, 2 * (t->mask + 1))) {
        colours_free(&bigger);
        t->failed = 1;
        return;
    }
    for (i = 0; i <= t->mask; i++) {
        if (t->keys[i] == EMPTY) continue;
        size_t s = slot_of(t->keys[i], bigger.mask);
        while (bigger.keys[s] != EMPTY) s = (s + 1) & bigger.mask;
        bigger.keys[s] = t->keys[i];
        bigger.counts[s] = t->counts[i];
    }
    bigger.used = t->used;
    colours_free(t);
    *t = bigger;
}

static void colours_add(Colours *t, uint32_t key, uint64_t n)
{
    size_t s = slot_of(key, t->mask);
    while (t->keys[s] != key) {
        if (t->keys[s] == EMPTY) {
            if (2 * (t->used + 1) > t->mask + 1) { /* keep the table at most half full */
                colours_grow(t);
                if (t->failed) return;
                colours_add(t, key, n);
                return;
            }
            t->keys[s] = key;
            t->used++;
            break;
        }
        s = (s + 1) & t->mask;
    }
    t->counts[s] += n;
}

/* The colour of pixel `i` of a rebuilt row: `step` bytes a pixel, `sample` bytes a sample
 * (2 for 16 bits: the high byte, first, is what Pillow keeps). */
INLINE uint32_t colour_at(const uint8_t *row, size_t i, size_t step, size_t sample)
{
    const uint8_t *p = row + i * step;
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[sample] << 8) | p[2 * sample];
}

static void count_colours(const uint8_t *row, size_t width, size_t step, size_t sample,
                          Colours *t)
{
    size_t start = 0, i = 1, k;
    size_t block = pattern_bytes(step), per_block = block / step;
    uint32_t run = colour_at(row, 0, step, sample);
    uint64_t w[3];
    if (WORD_PATTERNS) pattern(row, step, w);
    while (i < width) {
        /* A run goes a block of pixels at a time while their bytes repeat its first pixel's
         * (alpha and low bytes included: a run may end early, never late). */
        if (WORD_PATTERNS) {
            while (i + per_block <= width) {
                uint64_t differ = 0;
                for (k = 0; k < block / 8; k++) differ |= load64(row + i * step + 8 * k) ^ w[k];
                if (differ) break;
                i += per_block;
            }
        }
        while (i < width && colour_at(row, i, step, sample) == run) i++;
        if (i < width) {
            colours_add(t, run, i - start);
            run = colour_at(row, i, step, sample);
            start = i;
            if (WORD_PATTERNS) pattern(row + i * step, step, w);
            i++;
        }
    }
    colours_add(t, run, width - start);
}

/* --- the pass over the rows ------------------------------------------------------------ */

typedef struct {
    Py_ssize_t bad_row;  /* >= 0: this row's filter type is above 4 */
    int bad_filter;
    int no_memory;
} Outcome;

static PyObject *int64_bytes(const int64_t *items, Py_ssize_t n)
{
    return PyBytes_FromStringAndSize((const char *)items, n * (Py_ssize_t)sizeof(int64_t));
}

/* Return (values, counts) as two bytes objects of the first n items, and free both arrays;
 * NULL with MemoryError if either could not be allocated. */
static PyObject *pair_result(int64_t *values, int64_t *counts, size_t n)
{
    PyObject *result = NULL;
    if (values == NULL || counts == NULL) {
        PyErr_NoMemory();
    } else {
        PyObject *v = int64_bytes(values, (Py_ssize_t)n), *c = int64_bytes(counts, (Py_ssize_t)n);
        if (v && c) result = PyTuple_Pack(2, v, c);
        Py_XDECREF(v);
        Py_XDECREF(c);
    }
    PyMem_Free(values);
    PyMem_Free(counts);
    return result;
}

static int compare_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Return (values, counts) of the non-zero bins of `table`; each bin's value is its index.
 * With `seen` (16-bit tables), only the nseen bins listed there are read. */
static PyObject *table_result(const uint64_t *table, size_t bins, uint16_t *seen, size_t nseen)
{
    size_t i, n = 0;
    if (seen != NULL) {
        qsort(seen, nseen, sizeof *seen, compare_u16);
        n = nseen;
    } else {
        for (i = 0; i < bins; i++) n += table[i] != 0;
    }
    int64_t *values = PyMem_Malloc((n + 1) * sizeof *values);
    int64_t *counts = PyMem_Malloc((n + 1) * sizeof *counts);
    n = 0;
    for (i = 0; values && counts && i < (seen != NULL ? nseen : bins); i++) {
        size_t bin = seen != NULL ? seen[i] : i;
        if (table[bin]) {
            values[n] = (int64_t)bin;
            counts[n++] = (int64_t)table[bin];
        }
    }
    return pair_result(values, counts, n);
}

/* Return (values, counts) of the colours in `t`, in table order. */
static PyObject *colours_result(const Colours *t)
{
    size_t i, n = 0;
    int64_t *values = PyMem_Malloc((t->used + 1) * sizeof *values);
    int64_t *counts = PyMem_Malloc((t->used + 1) * sizeof *counts);
    for (i = 0; values && counts && i <= t->mask; i++) {
        if (t->keys[i] != EMPTY) {
            values[n] = t->keys[i];
            counts[n++] = (int64_t)t->counts[i];
        }
    }
    return pair_result(values, counts, n);
}

static PyObject *count(PyObject *self, PyObject *args)
{
    Py_buffer stream;
    Py_ssize_t width, height;
    int depth, colour_type;
    PyObject *result = NULL;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*nnii:count", &stream, &width, &height, &depth, &colour_type))
        return NULL;

    int channels = colour_type == 0 || colour_type == 3 ? 1
                   : colour_type == 2                   ? 3
                   : colour_type == 6                   ? 4
                                                        : 0;
    int depth_ok = colour_type == 0   ? (depth == 1 || depth == 2 || depth == 4 || depth == 8 ||
                                       depth == 16)
                   : colour_type == 3 ? (depth == 1 || depth == 2 || depth == 4 || depth == 8)
                                      : (depth == 8 || depth == 16);
    if (channels == 0 || !depth_ok || width <= 0 || height <= 0 ||
        width > (PY_SSIZE_T_MAX / 64) || height > PY_SSIZE_T_MAX / 64) {
        PyErr_Format(PyExc_ValueError, "no kernel for colour type %d at %d bits (%zdx%zd)",
                     colour_type, depth, width, height);
        goto release;
    }

    size_t bits = (size_t)channels * (size_t)depth;
    size_t n = ((size_t)width * bits + 7) / 8; /* bytes a row, filter byte not included */
    size_t bpp = bits < 8 ? 1 : bits / 8;
    size_t stride = n + 1;
    if ((size_t)stream.len != stride * (size_t)height) {
        size_t rows = (size_t)stream.len / stride;
        if ((size_t)stream.len < stride * (size_t)height)
            PyErr_Format(PyExc_ValueError, "image data ends after %zu of %zd rows", rows, height);
        else
            PyErr_Format(PyExc_ValueError, "image data holds more than its %zd rows", height);
        goto release;
    }

    int colour = colour_type == 2 || colour_type == 6;
    size_t bins = depth == 16 && !colour ? 65536 : 256;
    uint64_t *table = NULL;
    uint16_t *seen = NULL; /* 16-bit gray: the values met, in order of their first run */
    size_t nseen = 0;
    uint8_t *buffers = malloc(2 * n);
    uint8_t *zeros = calloc(n, 1);
    Colours colours = {0};
    Outcome outcome = {-1, 0, 0};

    if (colour)
        colours_init(&colours, 1024);
    else
        table = calloc(bins, sizeof *table);
    if (bins == 65536) seen = malloc(bins * sizeof *seen);
    if (buffers == NULL || zeros == NULL || (colour ? colours.failed : table == NULL) ||
        (bins == 65536 && seen == NULL)) {
        PyErr_NoMemory();
        goto free;
    }

    Py_BEGIN_ALLOW_THREADS
    const uint8_t *data = stream.buf;
    const uint8_t *up = zeros; /* the row above the first is all zeros */
    uint8_t *spare[2] = {buffers, buffers + n};
    /* Sub-byte samples: a row's last byte may hold fewer than 8/depth samples (and padding
     * bits, which are not pixels); it is counted sample by sample into `tail`. */
    size_t full = depth < 8 ? (size_t)width * (size_t)depth / 8 : n;
    uint64_t tail[16] = {0};
    size_t step = bits / 8, sample = depth / 8;
    Py_ssize_t y;

    for (y = 0; y < height; y++) {
        const uint8_t *line = data + (size_t)y * stride;
        const uint8_t *row;
        int kind = line[0];
        if (kind > 4) {
            outcome.bad_row = y;
            outcome.bad_filter = kind;
            break;
        }
        if (kind == 0) {
            row = line + 1; /* stored as it is: count it in place */
        } else {
            uint8_t *out = spare[y & 1];
            unfilter(kind, out, line + 1, up, n, bpp);
            row = out;
        }
        /* `up` must not be the buffer written next: a row rebuilt in spare[y & 1] is read
         * as `up` while row y + 1 is written into spare[(y + 1) & 1]. */
        if (colour) {
            count_colours(row, (size_t)width, step, sample, &colours);
            if (colours.failed) {
                outcome.no_memory = 1;
                break;
            }
        } else if (depth == 16) {
            count_u16(row, (size_t)width, table, seen, &nseen);
        } else {
            count_bytes(row, full, table);
            if (full < n) {
                size_t left = (size_t)width - full * 8 / (size_t)depth;
                uint8_t last = row[full];
                size_t k;
                for (k = 0; k < left; k++)
                    tail[(last >> (8 - (size_t)depth * (k + 1))) & ((1u << depth) - 1)]++;
            }
        }
        up = row;
    }

    if (!colour && depth < 8 && outcome.bad_row < 0) {
        /* Each counted byte holds 8/depth samples, the first in its high bits. */
        uint64_t samples[16] = {0};
        size_t b, k, per = 8 / (size_t)depth, top = (1u << depth) - 1;
        for (b = 0; b < 256; b++) {
            if (!table[b]) continue;
            for (k = 0; k < per; k++) samples[(b >> (8 - (size_t)depth * (k + 1))) & top] += table[b];
        }
        memset(table, 0, 256 * sizeof *table);
        for (k = 0; k <= top; k++) table[k] = samples[k] + tail[k];
    }
    Py_END_ALLOW_THREADS

    if (outcome.bad_row >= 0)
        PyErr_Format(PyExc_ValueError, "row %zd has filter type %d (PNG has 0 to 4)",
                     outcome.bad_row + 1, outcome.bad_filter);
    else if (outcome.no_memory)
        PyErr_NoMemory();
    else
        result = colour ? colours_result(&colours) : table_result(table, bins, seen, nseen);

free:
    free(buffers);
    free(zeros);
    free(table);
    free(seen);
    if (colour) colours_free(&colours);
release:
    PyBuffer_Release(&stream);
    return result;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS,
     "count(stream, width, height, depth, colour_type) -> (values, counts)\n\n"
     "Undo the row filters of an inflated, non-interlaced PNG stream and count its pixels.\n"
     "values and counts are bytes of native int64: stored sample values for gray and\n"
     "palette images, colours packed 0xRRGGBB for RGB and RGBA."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "classweights._kernel",
    "Undo PNG row filters and count pixels in one pass a row (C).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    return PyModule_Create(&module);
}
