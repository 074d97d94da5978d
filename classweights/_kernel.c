/* Undo the row filters of an inflated PNG stream and count its pixels, in one pass a row;
 * and walk a PNG's chunks.
 *
 * classweights._kernel.count(stream, width, height, depth, colour_type) takes the inflated
 * image data of a non-interlaced PNG (or of one interlace pass): `height` scanlines, each a
 * filter-type byte and the row's filtered bytes (PNG specification, sections 7.2 and 9). A
 * mask is runs of one label, so the kernel counts runs, and a run ends only where a pixel
 * differs from the one on its left. A row's candidates for that (its events) are listed
 * first, 16 or 8 bytes compared at a time, then walked: a row costs one branch the processor
 * cannot predict, not one for each run.
 *
 *   - None rows are counted where they lie in the stream;
 *   - Sub rows straight from their residuals: a pixel differs from its left neighbour
 *     exactly where its residual is not 0; the row is rebuilt only if the next row reads it;
 *   - Paeth rows are rebuilt and counted in one pass: only at an event (a residual that is
 *     not 0, or an edge in the row above) does a pixel go through the predictor;
 *   - Up and Average rows are rebuilt (Up is vectorised by the compiler), then counted.
 *
 * Pixels are counted as: 8-bit gray and palette samples in a 256-bin table; 1-, 2- and 4-bit
 * samples as their STORED values (0-3 in a 2-bit PNG, never Pillow's rescaled 0/85/170/255),
 * bytes first, then each byte split into its samples; 16-bit gray in 256 blocks of 256 bins,
 * each made when first needed; RGB and RGBA as colours packed 0xRRGGBB (alpha is not part of
 * a class colour; 16-bit samples by their high byte, as Pillow reads them) in an
 * open-addressing hash table.
 *
 * It returns (values, counts): two bytes objects of native int64, the distinct values
 * (sorted) and their pixel counts. The GIL is released around the rows. A filter type above
 * 4 or a stream that is not exactly `height` rows raises ValueError naming what is wrong.
 *
 * classweights._kernel.layout(data, crc32) walks the chunks as classweights.png.walk does:
 * see `layout` below.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* --- row filters (PNG specification, section 9.2) ------------------------------------- */

INLINE uint8_t paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    int bc = pb <= pc ? b : c; /* selects, not branches: the choice is data */
    return (uint8_t)(((pa <= pb) & (pa <= pc)) ? a : bc);
}

/* What `find_events` looks for, byte by byte (i >= bpp): */
enum {
    CHANGES,   /* a[i] != a[i - bpp]: a pixel that differs from the one on its left */
    RESIDUALS, /* a[i] != 0: a Sub or Paeth residual that is not 0 */
    EVENTS,    /* a[i] != 0 or b[i] != b[i - bpp]: that, or an edge in the row above b */
};

INLINE size_t lowest_bit(uint64_t m)
{
#if defined(__GNUC__)
    return (size_t)__builtin_ctzll(m);
#else
    size_t k = 0;
    while (!(m & 1)) m >>= 1, k++;
    return k;
#endif
}

#if !defined(__SSE2__)
/* Eight bytes from p, the first in the low bits. */
INLINE uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8);
#else
    int k;
    for (k = 7; k >= 0; k--) v = v << 8 | p[k];
#endif
    return v;
}
#endif

/* The bytes of [i, i + 16 * blocks) where `what` is found, as bits: bit j for byte i + j.
 * Sixteen bytes are compared at once where SSE2 is there (every x86-64), else eight. */
INLINE uint64_t event_bits(const uint8_t *a, const uint8_t *b, size_t i, size_t bpp,
                           size_t blocks, const int what)
{
    uint64_t m = 0;
    size_t j;
#if defined(__SSE2__)
    for (j = 0; j < blocks; j++) {
        const uint8_t *p = a + i + 16 * j;
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i y = what == CHANGES ? _mm_loadu_si128((const __m128i *)(p - bpp))
                                    : _mm_setzero_si128();
        __m128i same = _mm_cmpeq_epi8(x, y);
        if (what == EVENTS) {
            const uint8_t *q = b + i + 16 * j;
            same = _mm_and_si128(same, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)q),
                                                      _mm_loadu_si128((const __m128i *)(q - bpp))));
        }
        m |= (uint64_t)((unsigned)_mm_movemask_epi8(same) ^ 0xFFFFu) << (16 * j);
    }
#else
    for (j = 0; j < 2 * blocks; j++) {
        size_t at = i + 8 * j;
        uint64_t w = load_le64(a + at) ^ (what == CHANGES ? load_le64(a + at - bpp) : 0);
        if (what == EVENTS) w |= load_le64(b + at) ^ load_le64(b + at - bpp);
        w |= w >> 4, w |= w >> 2, w |= w >> 1; /* bit 0 of each byte: is the byte not 0 */
        m |= ((w & 0x0101010101010101ULL) * 0x0102040810204080ULL >> 56) << (8 * j);
    }
#endif
    return m;
}

/* Append to at[found ..] the pixels, counted from `first`, that hold a bit of m. */
INLINE size_t list_pixels(uint32_t *at, size_t found, uint64_t m, uint32_t first,
                          const size_t bpp)
{
    const uint64_t pixel = (1ULL << bpp) - 1; /* a pixel's bits */
    while (m) {
        size_t k = lowest_bit(m) / bpp;
        at[found++] = first + (uint32_t)k;
        m &= ~(pixel << (k * bpp)); /* the pixel's other bytes are the same event */
    }
    return found;
}

/* Write to `at` the pixels k in [1, width) where `what` is found in any of their bytes, in
 * order, and return how many: a run can end only at such a pixel. The row is looked at 64
 * bytes a step (48 for pixels of 3 and 6 bytes: whole pixels), steps with no branch of their
 * own, and its events are then walked in one loop. Looking for the next event and stopping
 * there cost a branch the processor could not predict at each event; the list takes 40% less
 * time on palette masks, a fifth less on gray masks written by Pillow. */
INLINE size_t find_events(const uint8_t *a, const uint8_t *b, size_t width, const size_t bpp,
                          const int what, uint32_t *at)
{
    const size_t blocks = bpp == 3 || bpp == 6 ? 3 : 4, group = 16 * blocks;
    size_t n = width * bpp, i = bpp, found = 0;
    uint32_t first = 1;
    for (; i + group <= n; i += group, first += (uint32_t)(group / bpp))
        found = list_pixels(at, found, event_bits(a, b, i, bpp, blocks, what), first, bpp);
    if (i < n && n >= group + bpp) { /* a group that ends the row: its bits before i are seen */
        uint64_t m = event_bits(a, b, n - group, bpp, blocks, what) >> (group - (n - i));
        found = list_pixels(at, found, m, first, bpp);
    } else if (i < n) { /* a short row: from copies, after the pixel on their left */
        uint8_t ta[64 + 8] = {0}, tb[64 + 8] = {0};
        size_t r = n - i;
        memcpy(ta, a + i - bpp, bpp + r);
        if (what == EVENTS) memcpy(tb, b + i - bpp, bpp + r);
        uint64_t m = event_bits(ta, tb, bpp, bpp, blocks, what) & ((1ULL << r) - 1);
        found = list_pixels(at, found, m, first, bpp);
    }
    return found;
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

/* Bytes past the end of a row that `repeat_fill` may write: the row buffers have them. */
#define SLACK 16

/* out[k] = out[k - bpp] for k in [i, j): the pixel on the left repeated. The pixel is read
 * once, and the fill stored a word at a time from words built in registers: a word loaded
 * from bytes stored one at a time would stall on every block. Where SSE2 is there, pixels of
 * 1, 2, 4 and 8 bytes are stored 16 bytes at a time, up to SLACK bytes past j: those bytes
 * are the next pixels, written again before they are read. */
INLINE void repeat_fill(uint8_t *out, size_t i, size_t j, size_t bpp)
{
    if (j <= i) return;
#if defined(__SSE2__) && WORD_PATTERNS
    if (bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8) {
        uint64_t px = 0;
        memcpy(&px, out + i - bpp, bpp); /* the pixel on the left */
        __m128i v = bpp == 1   ? _mm_set1_epi8((char)px)
                    : bpp == 2 ? _mm_set1_epi16((short)px)
                    : bpp == 4 ? _mm_set1_epi32((int)px)
                               : _mm_set1_epi64x((long long)px);
        for (; i < j; i += 16) _mm_storeu_si128((__m128i *)(out + i), v);
        return;
    }
#endif
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

/* Rebuild an Up or Average row into `out` from its filtered bytes `in` and the rebuilt row
 * above `up` (all zeros for the first row); Sub and Paeth rows are rebuilt as they are
 * counted (`sub_row`, `paeth_row`). `bpp` is a constant in each caller, so the compiler makes
 * one loop per pixel size. Average chains each byte to the one a pixel to its left: that byte
 * is carried in a register along its lane, not read back from `out`, which would stall. */
INLINE void unfilter_bpp(int kind, uint8_t *restrict out, const uint8_t *restrict in,
                         const uint8_t *restrict up, size_t n, const size_t bpp)
{
    size_t i, lane;
    switch (kind) {
    case 2: /* Up */
        for (i = 0; i < n; i++) out[i] = (uint8_t)(in[i] + up[i]);
        break;
    case 3: /* Average */
        for (lane = 0; lane < bpp; lane++) {
            uint8_t a = 0;
            for (i = lane; i < n; i += bpp) out[i] = a = (uint8_t)(in[i] + ((a + up[i]) >> 1));
        }
        break;
    }
}

/* --- counting ------------------------------------------------------------------------- */

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

static void colours_insert(Colours *t, uint32_t key, uint64_t n);

/* Add n pixels of colour `key`. A mask has few colours, so the first slot tried holds the
 * key almost always: that case is inline, the rest (probing, inserting) a call. */
INLINE void colours_add(Colours *t, uint32_t key, uint64_t n)
{
    size_t s = slot_of(key, t->mask);
    if (t->keys[s] == key)
        t->counts[s] += n;
    else
        colours_insert(t, key, n);
}

static void colours_insert(Colours *t, uint32_t key, uint64_t n)
{
    size_t s = slot_of(key, t->mask);
    while (t->keys[s] != key) {
        if (t->keys[s] == EMPTY) {
            if (2 * (t->used + 1) > t->mask + 1) { /* keep the table at most half full */
                colours_grow(t);
                if (t->failed) return;
                colours_insert(t, key, n);
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

/* What the pixels are counted into, by their size: 1 byte (8-bit gray and palette samples,
 * and the packed bytes of 1-, 2- and 4-bit ones) in a 256-bin table; 2 bytes (16-bit gray) in
 * 256 blocks of 256 bins, a block made when a value in it is first met (a full 65536-bin table
 * would be zeroed for every mask); 3 to 8 bytes (RGB, RGBA) as colours. */
typedef struct {
    uint64_t bytes[256];
    uint64_t *blocks[256];
    Colours colours;
    int failed; /* out of memory */
} Counter;

/* Add n pixels equal to the pixel at p (bpp bytes). For colours, 16-bit samples are taken
 * by their high byte, as Pillow reads them, and alpha is left out. */
INLINE void add_run(Counter *c, const uint8_t *p, size_t n, const size_t bpp)
{
    if (bpp == 1) {
        c->bytes[p[0]] += n;
    } else if (bpp == 2) {
        uint64_t *block = c->blocks[p[0]];
        if (block == NULL && (block = c->blocks[p[0]] = calloc(256, sizeof *block)) == NULL) {
            c->failed = 1;
            return;
        }
        block[p[1]] += n;
    } else {
        const size_t sample = bpp >= 6 ? 2 : 1;
        colours_add(&c->colours,
                    ((uint32_t)p[0] << 16) | ((uint32_t)p[sample] << 8) | p[2 * sample], n);
        c->failed |= c->colours.failed;
    }
}

/* Count a rebuilt row of `width` pixels a run at a time. A run ends where a pixel differs
 * from the one on its left (the row compared with itself shifted by a pixel). Alpha and the
 * low bytes of 16-bit samples take part: a run may end early, never late. */
INLINE void count_row(const uint8_t *row, size_t width, Counter *c, uint32_t *at,
                      const size_t bpp)
{
    size_t events = find_events(row, NULL, width, bpp, CHANGES, at), e, start = 0;
    for (e = 0; e < events; e++) {
        add_run(c, row + start * bpp, at[e] - start, bpp);
        start = at[e];
    }
    add_run(c, row + start * bpp, width - start, bpp);
}

/* Count a Sub row straight from its residuals: a pixel differs from the one on its left
 * exactly where its residual bytes are not all zero (PNG specification, section 9.2), so the
 * runs are found in `in` without rebuilding the row. The row is rebuilt into `out` only when
 * the next row needs it (out is not NULL), a run at a time. */
INLINE void sub_row(const uint8_t *in, uint8_t *out, size_t width, Counter *c, uint32_t *at,
                    const size_t bpp)
{
    uint8_t pixel[8] = {0};
    size_t n = width * bpp, start = 0, k, b;
    size_t events = find_events(in, NULL, width, bpp, RESIDUALS, at), e;
    memcpy(pixel, in, bpp); /* the first pixel has nothing on its left */
    for (e = 0; e < events; e++) {
        k = at[e];
        add_run(c, pixel, k - start, bpp);
        if (out) {
            memcpy(out + start * bpp, pixel, bpp);
            repeat_fill(out, (start + 1) * bpp, k * bpp, bpp);
        }
        for (b = 0; b < bpp; b++) pixel[b] = (uint8_t)(pixel[b] + in[k * bpp + b]);
        start = k;
    }
    add_run(c, pixel, width - start, bpp);
    if (out) {
        memcpy(out + start * bpp, pixel, bpp);
        repeat_fill(out, (start + 1) * bpp, n, bpp);
    }
}

/* Rebuild and count a Paeth row in one pass. Where a pixel's residual is 0 and the row above
 * is flat there (b == c), the predictor p = a + b - c is a (section 9.4): the pixel repeats
 * the one on its left. So only at an event (a residual that is not 0, or an edge in the row
 * above) does a pixel go through the predictor, and only there can a run end. */
INLINE void paeth_row(const uint8_t *in, const uint8_t *up, uint8_t *out, size_t width,
                      Counter *c, uint32_t *at, const size_t bpp)
{
    size_t n = width * bpp, start = 0, k, b;
    size_t events = find_events(in, up, width, bpp, EVENTS, at), e;
    for (b = 0; b < bpp; b++) out[b] = (uint8_t)(in[b] + up[b]); /* a = c = 0: p is b */
    size_t done = bpp; /* out[0 .. done) is rebuilt */
    for (e = 0; e < events; e++) {
        k = at[e];
        uint8_t *pixel = out + k * bpp, *left = pixel - bpp;
        repeat_fill(out, done, k * bpp, bpp);
        for (b = 0; b < bpp; b++)
            pixel[b] = (uint8_t)(in[k * bpp + b] + paeth(left[b], up[k * bpp + b],
                                                         up[k * bpp + b - bpp]));
        /* Whether the run ends here is a coin toss the processor would lose half the
         * time: the run is added with length 0 when it goes on, without a branch. */
        size_t ends = (size_t)0 - (size_t)(memcmp(pixel, left, bpp) != 0);
        add_run(c, out + start * bpp, (k - start) & ends, bpp);
        start ^= (start ^ k) & ends;
        done = (k + 1) * bpp;
    }
    repeat_fill(out, done, n, bpp);
    add_run(c, out + start * bpp, width - start, bpp);
}

/* One row: rebuild it (unless it is stored unfiltered, or is a Sub row that no later row
 * reads) and count it. Returns the rebuilt row, the row above for the next one. */
INLINE const uint8_t *row_bpp(int kind, const uint8_t *in, uint8_t *out, const uint8_t *up,
                              int next_reads, size_t width, Counter *c, uint32_t *at,
                              const size_t bpp)
{
    size_t n = width * bpp;
    if (kind == 0) {
        count_row(in, width, c, at, bpp);
        return in;
    }
    if (kind == 1) {
        sub_row(in, next_reads ? out : NULL, width, c, at, bpp);
        return out;
    }
    if (kind == 4) {
        paeth_row(in, up, out, width, c, at, bpp);
        return out;
    }
    unfilter_bpp(kind, out, in, up, n, bpp);
    count_row(out, width, c, at, bpp);
    return out;
}

static const uint8_t *count_one_row(int kind, const uint8_t *in, uint8_t *out,
                                    const uint8_t *up, int next_reads, size_t width,
                                    Counter *c, uint32_t *at, size_t bpp)
{
    switch (bpp) {
    case 1: return row_bpp(kind, in, out, up, next_reads, width, c, at, 1);
    case 2: return row_bpp(kind, in, out, up, next_reads, width, c, at, 2);
    case 3: return row_bpp(kind, in, out, up, next_reads, width, c, at, 3);
    case 4: return row_bpp(kind, in, out, up, next_reads, width, c, at, 4);
    case 6: return row_bpp(kind, in, out, up, next_reads, width, c, at, 6);
    default: return row_bpp(kind, in, out, up, next_reads, width, c, at, 8);
    }
}

/* --- the pass over the rows ------------------------------------------------------------ */

typedef struct {
    Py_ssize_t bad_row;  /* >= 0: this row's filter type is above 4 */
    int bad_filter;
} Outcome;

/* What the pass over the rows works in: two rows to rebuild into (each SLACK bytes longer),
 * a row of zeros (the row above the first), and room for the events of a row. */
typedef struct {
    uint8_t *rows[2];
    uint8_t *zeros;
    uint32_t *events;
} Scratch;

/* Count every row of the stream into `c`; sub-byte samples are counted as bytes, then the
 * bytes split into their samples. */
static Outcome count_rows(const uint8_t *data, size_t width, size_t height, int depth,
                          size_t bpp, size_t n, const Scratch *s, Counter *c)
{
    Outcome outcome = {-1, 0};
    const uint8_t *up = s->zeros; /* the row above the first is all zeros */
    size_t stride = n + 1, y;
    /* Sub-byte samples: a row's last byte may hold fewer than 8/depth samples (and padding
     * bits, which are not pixels); it is counted sample by sample into `tail`. */
    size_t full = depth < 8 ? width * (size_t)depth / 8 : n;
    uint64_t tail[16] = {0};

    for (y = 0; y < height && !c->failed; y++) {
        const uint8_t *line = data + y * stride;
        int kind = line[0];
        /* `out` must not be the row above: a row rebuilt in rows[y & 1] is read as `up`
         * while row y + 1 is written into rows[(y + 1) & 1]. */
        uint8_t *out = s->rows[y & 1];
        if (kind > 4) {
            outcome.bad_row = (Py_ssize_t)y;
            outcome.bad_filter = kind;
            break;
        }
        /* A sub-byte row is counted as bytes (`n` of them) and always rebuilt: its last
         * byte is read again below. */
        int next_reads = depth < 8 || (y + 1 < height && line[stride] >= 2); /* Up, Avg, Paeth */
        up = count_one_row(kind, line + 1, out, up, next_reads, depth < 8 ? n : width, c,
                           s->events, bpp);
        if (full < n) { /* the last byte holds padding bits too: its samples one by one */
            size_t k, left = width - full * 8 / (size_t)depth;
            c->bytes[up[full]]--;
            for (k = 0; k < left; k++)
                tail[(up[full] >> (8 - (size_t)depth * (k + 1))) & ((1u << depth) - 1)]++;
        }
    }
    if (depth < 8 && outcome.bad_row < 0) {
        /* Each counted byte holds 8/depth samples, the first in its high bits. */
        uint64_t samples[16] = {0};
        size_t b, k, per = 8 / (size_t)depth, top = (1u << depth) - 1;
        for (b = 0; b < 256; b++) {
            if (!c->bytes[b]) continue;
            for (k = 0; k < per; k++)
                samples[(b >> (8 - (size_t)depth * (k + 1))) & top] += c->bytes[b];
        }
        memset(c->bytes, 0, sizeof c->bytes);
        for (k = 0; k <= top; k++) c->bytes[k] = samples[k] + tail[k];
    }
    return outcome;
}

/* Return (values, counts) as two bytes objects of native int64. */
static PyObject *pair_result(const int64_t *values, const int64_t *counts, size_t n)
{
    PyObject *result = NULL;
    PyObject *v = PyBytes_FromStringAndSize((const char *)values, (Py_ssize_t)(n * 8));
    PyObject *k = PyBytes_FromStringAndSize((const char *)counts, (Py_ssize_t)(n * 8));
    if (v && k) result = PyTuple_Pack(2, v, k);
    Py_XDECREF(v);
    Py_XDECREF(k);
    return result;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Return (values, counts) of what `c` counted, sorted by value. */
static PyObject *counter_result(const Counter *c, size_t bpp)
{
    size_t i, j, n = 0, most = bpp == 1 ? 256 : bpp == 2 ? 0 : c->colours.used;
    PyObject *result;
    if (bpp == 2)
        for (i = 0; i < 256; i++) most += c->blocks[i] ? 256 : 0;
    int64_t *values = PyMem_Malloc((most + 1) * sizeof *values);
    int64_t *counts = PyMem_Malloc((most + 1) * sizeof *counts);
    if (values == NULL || counts == NULL) {
        PyMem_Free(values);
        PyMem_Free(counts);
        return PyErr_NoMemory();
    }
    if (bpp == 1) {
        for (i = 0; i < 256; i++)
            if (c->bytes[i]) values[n] = (int64_t)i, counts[n++] = (int64_t)c->bytes[i];
    } else if (bpp == 2) {
        for (i = 0; i < 256; i++)
            for (j = 0; c->blocks[i] && j < 256; j++)
                if (c->blocks[i][j])
                    values[n] = (int64_t)(i << 8 | j), counts[n++] = (int64_t)c->blocks[i][j];
    } else {
        for (i = 0; i <= c->colours.mask; i++)
            if (c->colours.keys[i] != EMPTY) values[n++] = (int64_t)c->colours.keys[i] << 32 | i;
        qsort(values, n, sizeof *values, compare_i64); /* by colour; the slot rides below */
        for (i = 0; i < n; i++) {
            counts[i] = (int64_t)c->colours.counts[values[i] & 0xFFFFFFFF];
            values[i] >>= 32;
        }
    }
    result = pair_result(values, counts, n);
    PyMem_Free(values);
    PyMem_Free(counts);
    return result;
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

    int colour = bpp >= 3;
    uint8_t *buffers = malloc(2 * (n + SLACK));
    /* A row's events are pixels (bytes, for sub-byte samples) after its first: fewer than n. */
    Scratch scratch = {{buffers, buffers + n + SLACK}, calloc(n, 1), malloc(n * sizeof(uint32_t))};
    Counter *counter = calloc(1, sizeof *counter);
    Outcome outcome = {-1, 0};
    if (buffers == NULL || scratch.zeros == NULL || scratch.events == NULL || counter == NULL ||
        (colour && !colours_init(&counter->colours, 1024))) {
        PyErr_NoMemory();
        goto free;
    }

    Py_BEGIN_ALLOW_THREADS
    outcome = count_rows(stream.buf, (size_t)width, (size_t)height, depth, bpp, n, &scratch,
                         counter);
    Py_END_ALLOW_THREADS

    if (outcome.bad_row >= 0)
        PyErr_Format(PyExc_ValueError, "row %zd has filter type %d (PNG has 0 to 4)",
                     outcome.bad_row + 1, outcome.bad_filter);
    else if (counter->failed)
        PyErr_NoMemory();
    else
        result = counter_result(counter, bpp);

free:
    free(buffers);
    free(scratch.zeros);
    free(scratch.events);
    if (counter != NULL) {
        size_t i;
        for (i = 0; i < 256; i++) free(counter->blocks[i]);
        if (colour) colours_free(&counter->colours);
        free(counter);
    }
release:
    PyBuffer_Release(&stream);
    return result;
}

/* --- the layout of a PNG ----------------------------------------------------------------- */

/* classweights._kernel.layout(data, crc32) walks the chunks of a PNG exactly as
 * classweights.png.layout does in Python, with the same checks and the same messages (the
 * tests hold the two to that): it returns None when data is not a PNG, else (width, height,
 * depth, colour_type, interlaced, spans), spans the (start, end) offsets of the IDAT chunks'
 * data; it raises ValueError with the message of the first thing wrong. Each chunk's CRC is
 * computed by crc32 (libdeflate's, which is faster than any table a few lines long). */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_letter(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The chunk type as Python's bytes.decode("latin-1") gives it, for messages. */
static PyObject *type_name(const uint8_t *kind)
{
    return PyUnicode_DecodeLatin1((const char *)kind, 4, NULL);
}

static PyObject *layout_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    PyErr_FormatV(PyExc_ValueError, format, args);
    va_end(args);
    return NULL;
}

/* The header's values, checked as png._header checks them; NULL with ValueError if not. */
static int check_header(const uint8_t *h, uint32_t *w, uint32_t *hgt, int *depth, int *type,
                        int *interlace)
{
    static const int depths[7][5] = {{1, 2, 4, 8, 16}, {0}, {8, 16}, {1, 2, 4, 8}, {8, 16},
                                     {0}, {8, 16}};
    int k, ok = 0;
    *w = be32(h);
    *hgt = be32(h + 4);
    *depth = h[8];
    *type = h[9];
    *interlace = h[12];
    if (*w == 0 || *w > 0x7FFFFFFFu || *hgt == 0 || *hgt > 0x7FFFFFFFu) {
        layout_error("has an invalid size %lux%lu in its IHDR header", (unsigned long)*w,
                     (unsigned long)*hgt);
        return 0;
    }
    if (*type > 6 || *type == 1 || *type == 5) {
        layout_error("has an invalid colour type %d", *type);
        return 0;
    }
    for (k = 0; k < 5; k++) ok |= depths[*type][k] == *depth && *depth;
    if (!ok) {
        layout_error("has an invalid bit depth %d for colour type %d", *depth, *type);
        return 0;
    }
    if (h[10] || h[11] || *interlace > 1) {
        layout_error("has an unknown compression, filter or interlace method (%d, %d, %d)",
                     h[10], h[11], *interlace);
        return 0;
    }
    return 1;
}

static PyObject *layout(PyObject *self, PyObject *args)
{
    Py_buffer buffer;
    PyObject *crc32, *spans = NULL, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O:layout", &buffer, &crc32)) return NULL;
    const uint8_t *data = buffer.buf;
    size_t size = (size_t)buffer.len, position = 8;
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint32_t width = 0, height = 0;
    int depth = 0, type = 0, interlace = 0, header = 0, palette = 0, after_data = 0;

    if (size < 8 || memcmp(data, signature, 8) != 0) {
        PyBuffer_Release(&buffer);
        Py_RETURN_NONE;
    }
    if ((spans = PyList_New(0)) == NULL) goto done;
    for (;;) {
        if (position + 12 > size) {
            layout_error("is truncated (it ends before its IEND chunk)");
            goto done;
        }
        const uint8_t *chunk = data + position, *kind = chunk + 4;
        uint32_t length = be32(chunk);
        size_t end = position + 12 + (size_t)length;
        if (length > 0x7FFFFFFFu || !is_letter(kind[0]) || !is_letter(kind[1]) ||
            !is_letter(kind[2]) || !is_letter(kind[3])) {
            PyObject *name = type_name(kind);
            if (name) layout_error("has a damaged chunk at byte %zu (type %R)", position, name);
            Py_XDECREF(name);
            goto done;
        }
        if (end > size) {
            layout_error("is truncated (in its %.4s chunk)", (const char *)kind);
            goto done;
        }
        PyObject *view = PyMemoryView_FromMemory((char *)kind, (Py_ssize_t)length + 4, PyBUF_READ);
        PyObject *computed = view ? PyObject_CallOneArg(crc32, view) : NULL;
        Py_XDECREF(view);
        if (computed == NULL) goto done;
        unsigned long crc = PyLong_AsUnsignedLong(computed);
        Py_DECREF(computed);
        if (crc == (unsigned long)-1 && PyErr_Occurred()) goto done;
        if (crc != be32(data + end - 4)) {
            layout_error("has a damaged %.4s chunk (its CRC does not match)", (const char *)kind);
            goto done;
        }
        if (!header && memcmp(kind, "IHDR", 4) != 0) {
            layout_error("has a %.4s chunk before its IHDR header", (const char *)kind);
            goto done;
        }
        if (memcmp(kind, "IHDR", 4) == 0) {
            if (header) {
                layout_error("has a second IHDR header");
                goto done;
            }
            if (length != 13) {
                layout_error("has an IHDR header of %lu bytes, not 13", (unsigned long)length);
                goto done;
            }
            if (!check_header(chunk + 8, &width, &height, &depth, &type, &interlace)) goto done;
            header = 1;
        } else if (memcmp(kind, "IDAT", 4) == 0) {
            if (after_data) {
                layout_error("has IDAT chunks that are not consecutive");
                goto done;
            }
            if (type == 3 && !palette) {
                layout_error("is a palette image without a PLTE chunk before its image data");
                goto done;
            }
            PyObject *span = Py_BuildValue("(nn)", (Py_ssize_t)position + 8, (Py_ssize_t)end - 4);
            if (span == NULL || PyList_Append(spans, span) < 0) {
                Py_XDECREF(span);
                goto done;
            }
            Py_DECREF(span);
        } else if (memcmp(kind, "IEND", 4) == 0) {
            break; /* what follows IEND is not part of the PNG */
        } else {
            after_data = PyList_GET_SIZE(spans) > 0;
            if (memcmp(kind, "PLTE", 4) == 0) {
                if (PyList_GET_SIZE(spans) > 0) {
                    layout_error("has a PLTE chunk after its image data");
                    goto done;
                }
                if (palette) {
                    layout_error("has a second PLTE chunk");
                    goto done;
                }
                if (!length || length % 3 || length > 768) {
                    layout_error("has a PLTE chunk of %lu bytes", (unsigned long)length);
                    goto done;
                }
                palette = 1;
            } else if ((kind[0] & 0x20) == 0) { /* upper case: a decoder must understand it */
                layout_error("has an unknown critical chunk %.4s", (const char *)kind);
                goto done;
            }
        }
        position = end;
    }
    if (PyList_GET_SIZE(spans) == 0)
        layout_error("has no image data (no IDAT chunk)");
    else
        result = Py_BuildValue("(kkiiOO)", (unsigned long)width, (unsigned long)height, depth,
                               type, interlace ? Py_True : Py_False, spans);
done:
    Py_XDECREF(spans);
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"layout", layout, METH_VARARGS,
     "layout(data, crc32) -> None or (width, height, depth, colour_type, interlaced, spans)\n\n"
     "Walk a PNG's chunks as classweights.png.layout does; spans: the IDAT data's offsets."},
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
