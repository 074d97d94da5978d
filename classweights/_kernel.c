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
 *     exactly where its residual is not 0;
 *   - Paeth rows are rebuilt and counted in one pass, from the runs of the row above: only
 *     at an event (a residual that is not 0, or a run start in the row above) does a pixel
 *     go through the predictor;
 *   - Up and Average rows are rebuilt (Up is vectorised by the compiler), then counted.
 *
 * A row leaves the next one what that one reads: Up and Average rows read the row above
 * written out, Paeth rows its runs, None and Sub rows nothing.
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

/* Whether a word's low byte comes first in memory: then words are loaded and stored whole.
 * Elsewhere (or where the compiler does not say) they are put together byte by byte; build
 * with -DLITTLE_ENDIAN_WORDS=0 to run that code on any machine (as the tests were). */
#if !defined(LITTLE_ENDIAN_WORDS)
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LITTLE_ENDIAN_WORDS 1
#else
#define LITTLE_ENDIAN_WORDS 0
#endif
#endif

/* A pixel of bpp bytes (at most 8) as a word, its first byte in the low bits: byte j of the
 * pixel is (v >> 8 * j) & 0xFF on any machine; the word's other bytes are 0. */
INLINE uint64_t pixel_at(const uint8_t *p, const size_t bpp)
{
    uint64_t v = 0;
    size_t j;
    if (LITTLE_ENDIAN_WORDS && (bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8)) {
        memcpy(&v, p, bpp); /* one load */
        return v;
    }
    /* In registers: 3 or 6 bytes copied into a word in memory and loaded whole would wait
     * for the stores (a third of the time of colour masks written by OpenCV). */
    for (j = bpp; j-- > 0;) v = v << 8 | p[j];
    return v;
}

/* Store the pixel `v` (as `pixel_at` gives it) at p. */
INLINE void store_pixel(uint8_t *p, uint64_t v, const size_t bpp)
{
#if LITTLE_ENDIAN_WORDS
    memcpy(p, &v, bpp);
#else
    size_t j;
    for (j = 0; j < bpp; j++) p[j] = (uint8_t)(v >> (8 * j));
#endif
}

/* Byte j of a pixel held as a word. */
INLINE unsigned lane(uint64_t v, size_t j)
{
    return (unsigned)(v >> (8 * j)) & 0xFF;
}

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


/* The bytes of [i, i + 16 * blocks) where `what` is found, as bits: bit j for byte i + j.
 * Sixteen bytes are compared at once where SSE2 is there (every x86-64), else eight. */
INLINE uint64_t event_bits(const uint8_t *a, size_t i, size_t bpp, size_t blocks, const int what)
{
    uint64_t m = 0;
    size_t j;
#if defined(__SSE2__)
    for (j = 0; j < blocks; j++) {
        const uint8_t *p = a + i + 16 * j;
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i y = what == CHANGES ? _mm_loadu_si128((const __m128i *)(p - bpp))
                                    : _mm_setzero_si128();
        m |= (uint64_t)((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) ^ 0xFFFFu) << (16 * j);
    }
#else
    for (j = 0; j < 2 * blocks; j++) {
        size_t at = i + 8 * j;
        uint64_t w = pixel_at(a + at, 8) ^ (what == CHANGES ? pixel_at(a + at - bpp, 8) : 0);
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

/* Bytes `find_events` looks at in one step: 64, or 48 for pixels of 3 and 6 bytes (whole
 * pixels). Step g covers the row's bytes from bpp + g * step: bit j of its mask is byte
 * bpp + g * step + j, in the last step too (which may overlap the one before it). */
INLINE size_t step_bytes(size_t bpp)
{
    return bpp == 3 || bpp == 6 ? 48 : 64;
}

/* Steps a row of n bytes takes (the first pixel has nothing on its left: no step). */
INLINE size_t steps_of(size_t n, size_t bpp)
{
    return n > bpp ? (n - bpp + step_bytes(bpp) - 1) / step_bytes(bpp) : 0;
}

/* Write to `at` the pixels k in [1, width) where `what` is found in any of their bytes, or
 * where `also` (when not NULL: a mask a step, as above) has a bit, in order, and return how
 * many: a run can end only at such a pixel. `keep`, when not NULL, gets each step's mask.
 * The row is looked at a step at a time, steps with no branch of their own, and its events
 * are then walked in one loop. Looking for the next event and stopping there cost a branch
 * the processor could not predict at each event; the list takes 40% less time on palette
 * masks, a fifth less on gray masks written by Pillow. */
INLINE size_t find_events(const uint8_t *a, size_t width, const size_t bpp, const int what,
                          const uint64_t *also, uint64_t *keep, uint32_t *at)
{
    const size_t group = step_bytes(bpp), blocks = group / 16;
    size_t n = width * bpp, i = bpp, found = 0, g = 0;
    uint32_t first = 1;
    for (; i + group <= n; i += group, first += (uint32_t)(group / bpp), g++) {
        uint64_t m = event_bits(a, i, bpp, blocks, what);
        if (also) m |= also[g];
        if (keep) keep[g] = m;
        found = list_pixels(at, found, m, first, bpp);
    }
    if (i < n) {
        uint64_t m;
        if (n >= group + bpp) { /* a step that ends the row: its bits before i are seen */
            m = event_bits(a, n - group, bpp, blocks, what) >> (group - (n - i));
        } else { /* a short row: from a copy, after the pixel on its left */
            uint8_t t[64 + 8] = {0};
            size_t r = n - i;
            memcpy(t, a + i - bpp, bpp + r);
            m = event_bits(t, bpp, bpp, blocks, what) & ((1ULL << r) - 1);
        }
        if (also) m |= also[g];
        if (keep) keep[g] = m;
        found = list_pixels(at, found, m, first, bpp);
    }
    return found;
}

/* Bytes a repeated pixel of `bpp` bytes takes to fill whole words: 24 for 3 and 6, else 8. */
INLINE size_t pattern_bytes(size_t bpp)
{
    return bpp == 3 || bpp == 6 ? 24 : 8;
}

/* w[0 .. pattern_bytes(bpp) / 8) = the pixel at `p` repeated (1, 2, 3, 4, 6 or 8 bytes). */
INLINE void pattern(const uint8_t *p, size_t bpp, uint64_t w[3])
{
    uint64_t px = pixel_at(p, bpp);
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
#if defined(__SSE2__) && LITTLE_ENDIAN_WORDS
    if (bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8) {
        uint64_t px = pixel_at(out + i - bpp, bpp); /* the pixel on the left */
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
    if (LITTLE_ENDIAN_WORDS) {
        uint64_t w[3];
        size_t k, block = pattern_bytes(bpp);
        pattern(out + i - bpp, bpp, w);
        for (; i + block <= j; i += block)
            for (k = 0; k < block / 8; k++) memcpy(out + i + 8 * k, &w[k], 8);
    }
    for (; i < j; i++) out[i] = out[i - bpp];
}

/* Rebuild an Up or Average row into `out` from its filtered bytes `in` and the rebuilt row
 * above `up` (all zeros for the first row); the other rows are rebuilt as they are counted.
 * `bpp` is a constant in each caller, so the compiler makes one loop per pixel size. Average
 * chains each byte to the one a pixel to its left: that byte is carried in a register along
 * its lane, not read back from `out`, which would stall. */
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

/* Add n pixels equal to `pixel` (bpp bytes, as `pixel_at` gives them). For colours, 16-bit
 * samples are taken by their high byte, as Pillow reads them, and alpha is left out. */
INLINE void add_run(Counter *c, uint64_t pixel, size_t n, const size_t bpp)
{
    if (bpp == 1) {
        c->bytes[lane(pixel, 0)] += n;
    } else if (bpp == 2) {
        uint64_t **block = &c->blocks[lane(pixel, 0)];
        if (*block == NULL && (*block = calloc(256, sizeof **block)) == NULL) {
            c->failed = 1;
            return;
        }
        (*block)[lane(pixel, 1)] += n;
    } else {
        const size_t sample = bpp >= 6 ? 2 : 1;
        colours_add(&c->colours,
                    lane(pixel, 0) << 16 | lane(pixel, sample) << 8 | lane(pixel, 2 * sample), n);
        c->failed |= c->colours.failed;
    }
}

/* --- rows --------------------------------------------------------------------------------- */

/* A rebuilt row, kept as its runs for a Paeth row below it: where each run starts and its
 * pixel, and the starts as bits, a mask a step of `find_events` (bit j of mask g for byte
 * bpp + g * step + j). Where the row above is the same at k - 1 and k, a Paeth predictor is
 * the pixel on the left (PNG specification, section 9.4), so a pixel with a residual of 0
 * repeats it: a Paeth row's runs can end only where its residual is not 0 or the row above
 * starts a run, and its pixels need the row above only there. Writing each Paeth row out (a
 * fill between its events) took a quarter of its time; it is written out only for a row
 * below that reads every byte of it (Up, Average). */
typedef struct {
    uint32_t *starts; /* starts[0] = 0, and after the last run's UINT32_MAX, a sentinel */
    uint64_t *pixels; /* each run's pixel, as `pixel_at` gives it */
    uint64_t *bits;   /* the starts after the first pixel's */
} Runs;

/* What a row leaves for the one below, by that row's filter: Up and Average read the row
 * above written out, Paeth its runs, None and Sub nothing. */
enum { LEAVE_NOTHING, LEAVE_ROW, LEAVE_RUNS };

/* The bytes of x and y added one by one, modulo 256 (no carry from byte to byte). */
INLINE uint64_t add_bytes(uint64_t x, uint64_t y)
{
    const uint64_t high = 0x8080808080808080ULL;
    return ((x & ~high) + (y & ~high)) ^ ((x ^ y) & high);
}

/* A Paeth pixel: residual r plus the predictor of a (left), b (above), c (above left). */
INLINE uint64_t paeth_pixel(uint64_t r, uint64_t a, uint64_t b, uint64_t c, const size_t bpp)
{
    uint64_t w = 0;
    size_t j;
    for (j = 0; j < bpp; j++) {
        uint8_t p = paeth((int)lane(a, j), (int)lane(b, j), (int)lane(c, j));
        w |= (uint64_t)(uint8_t)(lane(r, j) + p) << (8 * j);
    }
    return w;
}

/* Keep the runs of a row whose events all end a run (the bits are already kept). */
INLINE void keep_runs(Runs *keep, const uint8_t *row, const uint32_t *at, size_t events,
                      const size_t bpp)
{
    size_t e;
    keep->starts[0] = 0;
    keep->pixels[0] = pixel_at(row, bpp);
    for (e = 0; e < events; e++) {
        keep->starts[e + 1] = at[e];
        keep->pixels[e + 1] = pixel_at(row + at[e] * bpp, bpp);
    }
    keep->starts[events + 1] = UINT32_MAX;
}

/* Count a rebuilt row of `width` pixels a run at a time (and keep its runs when `keep` is
 * not NULL). A run ends where a pixel differs from the one on its left (the row compared
 * with itself shifted by a pixel). Alpha and the low bytes of 16-bit samples take part: a
 * run may end early, never late. */
INLINE void count_row(const uint8_t *row, size_t width, Counter *c, uint32_t *at, Runs *keep,
                      const size_t bpp)
{
    size_t events = find_events(row, width, bpp, CHANGES, NULL, keep ? keep->bits : NULL, at);
    size_t e, start = 0;
    for (e = 0; e < events; e++) {
        add_run(c, pixel_at(row + start * bpp, bpp), at[e] - start, bpp);
        start = at[e];
    }
    add_run(c, pixel_at(row + start * bpp, bpp), width - start, bpp);
    if (keep) keep_runs(keep, row, at, events, bpp);
}

/* Count a Sub row straight from its residuals: a pixel differs from the one on its left
 * exactly where its residual bytes are not all zero (section 9.2), so the runs are found in
 * `in` without rebuilding the row. The row is written to `out` only when the next row reads
 * it (out is not NULL), a run at a time; its runs are kept when `keep` is not NULL. Returns
 * the row's last pixel. */
INLINE uint64_t sub_row(const uint8_t *in, uint8_t *out, Runs *keep, size_t width, Counter *c,
                        uint32_t *at, const size_t bpp)
{
    size_t n = width * bpp, start = 0, k;
    size_t events = find_events(in, width, bpp, RESIDUALS, NULL, keep ? keep->bits : NULL, at);
    size_t e;
    uint64_t pixel = pixel_at(in, bpp); /* the first pixel has nothing on its left */
    if (keep) keep->starts[0] = 0, keep->pixels[0] = pixel;
    for (e = 0; e < events; e++) {
        k = at[e];
        add_run(c, pixel, k - start, bpp);
        if (out) {
            store_pixel(out + start * bpp, pixel, bpp);
            repeat_fill(out, (start + 1) * bpp, k * bpp, bpp);
        }
        pixel = add_bytes(pixel, pixel_at(in + k * bpp, bpp));
        if (keep) keep->starts[e + 1] = (uint32_t)k, keep->pixels[e + 1] = pixel;
        start = k;
    }
    add_run(c, pixel, width - start, bpp);
    if (out) {
        store_pixel(out + start * bpp, pixel, bpp);
        repeat_fill(out, (start + 1) * bpp, n, bpp);
    }
    if (keep) keep->starts[events + 1] = UINT32_MAX;
    return pixel;
}

/* Rebuild and count a Paeth row from its residuals `in` and the runs of the row above `up`.
 * Its events are its residuals that are not 0 and the starts of the runs above; at each, the
 * pixel goes through the predictor, with the pixels above (b) and above left (c) taken from
 * the run above that holds them. Whether the run ends there is a coin toss the processor
 * would lose half the time: the run is added with length 0 when it goes on, without a
 * branch. The row is written to `out` when it is not NULL, its runs kept in `keep` when that
 * is not NULL. Returns the row's last pixel. */
INLINE uint64_t paeth_row(const uint8_t *in, const Runs *up, uint8_t *out, Runs *keep,
                          size_t width, Counter *c, uint32_t *at, const size_t bpp)
{
    const size_t step = step_bytes(bpp);
    size_t n = width * bpp, start = 0, above = 0, kept = 1, k, e;
    size_t events = find_events(in, width, bpp, RESIDUALS, up->bits, NULL, at);
    uint64_t run = add_bytes(pixel_at(in, bpp), up->pixels[0]); /* a = c = 0: p is b */
    if (out) store_pixel(out, run, bpp);
    if (keep) {
        memset(keep->bits, 0, steps_of(n, bpp) * sizeof *keep->bits);
        keep->starts[0] = 0, keep->pixels[0] = run;
    }
    size_t done = bpp; /* out[0 .. done) is written */
    for (e = 0; e < events; e++) {
        k = at[e];
        size_t edge = up->starts[above + 1] == k; /* the row above starts a run at k */
        above += edge;
        uint64_t pixel = paeth_pixel(pixel_at(in + k * bpp, bpp), run, up->pixels[above],
                                     up->pixels[above - edge], bpp);
        size_t ends = (size_t)0 - (size_t)(pixel != run);
        add_run(c, run, (k - start) & ends, bpp);
        start ^= (start ^ k) & ends;
        if (out) {
            repeat_fill(out, done, k * bpp, bpp);
            store_pixel(out + k * bpp, pixel, bpp);
            done = (k + 1) * bpp;
        }
        if (keep) {
            size_t o = (k - 1) * bpp; /* the start's bit: its byte in the steps */
            keep->bits[o / step] |= (uint64_t)(ends & 1) << (o % step);
            keep->starts[kept] = (uint32_t)k;
            keep->pixels[kept] = pixel;
            kept += ends & 1;
        }
        run = pixel;
    }
    add_run(c, run, width - start, bpp);
    if (out) repeat_fill(out, done, n, bpp);
    if (keep) keep->starts[kept] = UINT32_MAX;
    return run;
}

/* One row: rebuild it (as far as the next row needs: `leave`) and count it. `*row` is set to
 * the rebuilt row, which is written out for None, Up and Average rows, and for the others
 * with LEAVE_ROW; `runs` gets its runs with LEAVE_RUNS. Returns the last pixel of a Sub or
 * Paeth row (which may not be written out), else 0. Each case names its outputs as
 * constants, so that the compiler drops what is not left. */
INLINE uint64_t row_bpp(int kind, const uint8_t *in, const uint8_t *up_row, const Runs *up_runs,
                        uint8_t *out, const uint8_t **row, int leave, Runs *runs,
                        size_t width, Counter *c, uint32_t *at, const size_t bpp)
{
    *row = kind == 0 ? in : out;
    if (kind == 2 || kind == 3) { /* Up, Average */
        unfilter_bpp(kind, out, in, up_row, width * bpp, bpp);
        in = out;
    }
    switch (kind * 3 + leave) {
    case 0 * 3 + LEAVE_RUNS:
    case 2 * 3 + LEAVE_RUNS:
    case 3 * 3 + LEAVE_RUNS: count_row(in, width, c, at, runs, bpp); return 0;
    case 1 * 3 + LEAVE_NOTHING: return sub_row(in, NULL, NULL, width, c, at, bpp);
    case 1 * 3 + LEAVE_ROW: return sub_row(in, out, NULL, width, c, at, bpp);
    case 1 * 3 + LEAVE_RUNS: return sub_row(in, NULL, runs, width, c, at, bpp);
    case 4 * 3 + LEAVE_NOTHING: return paeth_row(in, up_runs, NULL, NULL, width, c, at, bpp);
    case 4 * 3 + LEAVE_ROW: return paeth_row(in, up_runs, out, NULL, width, c, at, bpp);
    case 4 * 3 + LEAVE_RUNS: return paeth_row(in, up_runs, NULL, runs, width, c, at, bpp);
    default: count_row(in, width, c, at, NULL, bpp); return 0; /* None, Up, Average */
    }
}

/* --- the pass over the rows ------------------------------------------------------------ */

typedef struct {
    Py_ssize_t bad_row;  /* >= 0: this row's filter type is above 4 */
    int bad_filter;
} Outcome;

/* What the pass over the rows works in: two rows to rebuild into (each SLACK bytes longer)
 * and the runs of two rows (the row above, the row being counted), a row of zeros (the row
 * above the first), and room for the events of a row. */
typedef struct {
    uint8_t *rows[2];
    Runs runs[2];
    uint8_t *zeros;
    uint32_t *events;
} Scratch;

/* Count every row of the stream into `c`; sub-byte samples are counted as bytes, then the
 * bytes split into their samples. `bpp` is a constant in each caller (`count_rows`): the
 * compiler makes one pass for each pixel size, with each row's work inlined in it. */
INLINE Outcome rows_bpp(const uint8_t *data, size_t width, size_t height, int depth, size_t n,
                        Scratch *s, Counter *c, const size_t bpp)
{
    Outcome outcome = {-1, 0};
    size_t stride = n + 1, y;
    /* The row above the first is all zeros: written out, and one run. */
    const uint8_t *up_row = s->zeros;
    Runs *up_runs = &s->runs[1];
    up_runs->starts[0] = 0, up_runs->starts[1] = UINT32_MAX, up_runs->pixels[0] = 0;
    memset(up_runs->bits, 0, steps_of(n, bpp) * sizeof *up_runs->bits);
    /* Sub-byte samples: a row's last byte may hold fewer than 8/depth samples (and padding
     * bits, which are not pixels); it is counted sample by sample into `tail`. */
    size_t full = depth < 8 ? width * (size_t)depth / 8 : n;
    uint64_t tail[16] = {0};

    for (y = 0; y < height && !c->failed; y++) {
        const uint8_t *line = data + y * stride, *row;
        int kind = line[0], next = y + 1 < height ? line[stride] : 0;
        int leave = next == 4 ? LEAVE_RUNS : next == 2 || next == 3 ? LEAVE_ROW : LEAVE_NOTHING;
        if (kind > 4) {
            outcome.bad_row = (Py_ssize_t)y;
            outcome.bad_filter = kind;
            break;
        }
        /* Not the row above: that is rows[(y - 1) & 1] (or `in`), runs[(y - 1) & 1]. */
        uint8_t *out = s->rows[y & 1];
        Runs *runs = &s->runs[y & 1];
        /* A sub-byte row is counted as bytes, `n` of them. */
        uint64_t last = row_bpp(kind, line + 1, up_row, up_runs, out, &row, leave, runs,
                                depth < 8 ? n : width, c, s->events, bpp);
        if (full < n) { /* the last byte holds padding bits too: its samples one by one */
            size_t k, left = width - full * 8 / (size_t)depth;
            size_t byte = kind == 1 || kind == 4 ? lane(last, 0) : row[full];
            c->bytes[byte]--;
            for (k = 0; k < left; k++)
                tail[(byte >> (8 - (size_t)depth * (k + 1))) & ((1u << depth) - 1)]++;
        }
        up_row = row;
        up_runs = runs;
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

static Outcome count_rows(const uint8_t *data, size_t width, size_t height, int depth,
                          size_t bpp, size_t n, Scratch *s, Counter *c)
{
    switch (bpp) {
    case 1: return rows_bpp(data, width, height, depth, n, s, c, 1);
    case 2: return rows_bpp(data, width, height, depth, n, s, c, 2);
    case 3: return rows_bpp(data, width, height, depth, n, s, c, 3);
    case 4: return rows_bpp(data, width, height, depth, n, s, c, 4);
    case 6: return rows_bpp(data, width, height, depth, n, s, c, 6);
    default: return rows_bpp(data, width, height, depth, n, s, c, 8);
    }
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
    /* Pixels a row is walked as (bytes, for sub-byte samples): a row has fewer events, and
     * no more runs. */
    size_t pixels = depth < 8 ? n : (size_t)width, steps = steps_of(n, bpp), r;
    uint8_t *buffers = malloc(2 * (n + SLACK));
    Scratch scratch = {{buffers, buffers + n + SLACK}, {{0}}, calloc(n, 1),
                       malloc(pixels * sizeof(uint32_t))};
    int ok = buffers != NULL && scratch.zeros != NULL && scratch.events != NULL;
    for (r = 0; r < 2; r++) {
        Runs *runs = &scratch.runs[r];
        runs->starts = malloc((pixels + 1) * sizeof *runs->starts);
        runs->pixels = malloc(pixels * sizeof *runs->pixels);
        runs->bits = malloc((steps + 1) * sizeof *runs->bits);
        ok = ok && runs->starts && runs->pixels && runs->bits;
    }
    Counter *counter = calloc(1, sizeof *counter);
    Outcome outcome = {-1, 0};
    if (!ok || counter == NULL || (colour && !colours_init(&counter->colours, 1024))) {
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
    for (r = 0; r < 2; r++) {
        free(scratch.runs[r].starts);
        free(scratch.runs[r].pixels);
        free(scratch.runs[r].bits);
    }
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
            } else if (memcmp(kind, "fcTL", 4) == 0 && PyList_GET_SIZE(spans) == 0) {
                /* APNG: a frame before the image data is the image itself, whose size and
                 * place the header gives; a decoder that reads the frame reads it so. */
                if (length != 26) {
                    layout_error("has an fcTL chunk of %lu bytes, not 26", (unsigned long)length);
                    goto done;
                }
                uint32_t fw = be32(chunk + 12), fh = be32(chunk + 16);
                uint32_t fx = be32(chunk + 20), fy = be32(chunk + 24);
                if (fw != width || fh != height || fx || fy) {
                    layout_error("has an animation frame of %lux%lu at (%lu, %lu) as its image, "
                                 "which its header says is %lux%lu",
                                 (unsigned long)fw, (unsigned long)fh, (unsigned long)fx,
                                 (unsigned long)fy, (unsigned long)width, (unsigned long)height);
                    goto done;
                }
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
