/* sidecar.events._scan: the event inspector's hot path in C.
 *
 * Two types (the Python side and the reasons are in scan.pyi and codec.py):
 *
 * KeyMemory     the idempotency keys seen within a window, at most max_keys of them,
 *               oldest forgotten first: a FIFO ring of entries (key bytes, first-seen
 *               time) indexed by an open-addressing hash table (linear probing, at most
 *               half full, deletion by backward shift: no tombstones, no rehashing
 *               except to grow). Keys are hashed with CPython's own keyed string hash
 *               (SipHash-1-3 with the process's random secret), so crafted keys cannot
 *               force collisions.
 * BatchScanner  reads an IngestEventBatchRequest body (binary protobuf or the protobuf
 *               JSON mapping) in one pass with no Python object per event: the count,
 *               each envelope's payload member and idempotency key. On success it
 *               observes the keys in a KeyMemory and adds to cumulative counters.
 *               It is deliberately narrow: anything off the plain path (escapes in a
 *               member name or key, duplicate members, nulls, wire-type surprises, an
 *               empty or oversized batch, any syntax or encoding error) makes scan()
 *               return None *before* anything is recorded, and the caller uses the
 *               exact decoder in codec.py, which gives the answer or the error reason.
 *               So what the scanner accepts must be a subset of what the exact decoder
 *               accepts, with the same reading; tests/events/test_scan.py checks that
 *               differentially on generated and mutated bodies.
 *
 * The schema (field numbers, JSON names) comes from the generated descriptors via the
 * constructor: nothing about the contract is written here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef unsigned char u8;

static inline uint64_t
hash_bytes(const u8 *data, Py_ssize_t len)
{
#if PY_VERSION_HEX >= 0x030E0000
    return (uint64_t)Py_HashBuffer(data, len);
#else
    return (uint64_t)_Py_HashBytes(data, len);
#endif
}

/* ====================================================================== KeyMemory */

#define INLINE_KEY 40
#define SLOT_EMPTY 0xFFFFFFFFu

typedef struct {
    uint64_t hash;
    double time;
    uint32_t len;
    uint32_t slot;  /* its index in the table */
    u8 *heap;       /* the key when longer than INLINE_KEY, else NULL */
    u8 inline_key[INLINE_KEY];
} Entry;

typedef struct {
    uint32_t tag;   /* low half of the hash: tag & mask is the slot it wants */
    uint32_t ref;   /* ring position, or SLOT_EMPTY */
} Slot;

typedef struct {
    PyObject_HEAD
    double window;
    Py_ssize_t max_keys;
    Entry *ring;
    Py_ssize_t ring_cap;   /* power of two */
    Py_ssize_t head;       /* oldest entry */
    Py_ssize_t size;
    Slot *table;
    Py_ssize_t table_cap;  /* power of two, 2 * ring_cap */
    unsigned long long forgotten;
} KeyMemory;

typedef struct {
    const u8 *data;
    uint32_t len;
    uint16_t kind;  /* type index (BatchScanner) */
} Span;

static inline const u8 *
entry_key(const Entry *e)
{
    return e->heap ? e->heap : e->inline_key;
}

static void
table_insert_live(KeyMemory *m, Py_ssize_t pos)
{
    Entry *e = &m->ring[pos];
    size_t mask = (size_t)m->table_cap - 1;
    size_t i = (size_t)e->hash & mask;
    while (m->table[i].ref != SLOT_EMPTY)
        i = (i + 1) & mask;
    m->table[i].tag = (uint32_t)e->hash;
    m->table[i].ref = (uint32_t)pos;
    e->slot = (uint32_t)i;
}

/* Rebuild the table at `table_cap` from the live entries. */
static int
table_rebuild(KeyMemory *m, Py_ssize_t table_cap)
{
    Slot *table = PyMem_Malloc(sizeof(Slot) * (size_t)table_cap);
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(table, 0xFF, sizeof(Slot) * (size_t)table_cap);
    PyMem_Free(m->table);
    m->table = table;
    m->table_cap = table_cap;
    for (Py_ssize_t k = 0; k < m->size; k++)
        table_insert_live(m, (m->head + k) & (m->ring_cap - 1));
    return 0;
}

/* Room for `extra` more keys: grow the ring (keeping order) and the table as needed. */
static int
memory_reserve(KeyMemory *m, Py_ssize_t extra)
{
    Py_ssize_t need = m->size + extra;
    if (need > m->ring_cap) {
        Py_ssize_t cap = m->ring_cap;
        while (cap < need)
            cap *= 2;
        Entry *ring = PyMem_Malloc(sizeof(Entry) * (size_t)cap);
        if (ring == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < m->size; k++) {
            ring[k] = m->ring[(m->head + k) & (m->ring_cap - 1)];
        }
        PyMem_Free(m->ring);
        m->ring = ring;
        m->ring_cap = cap;
        m->head = 0;
        return table_rebuild(m, cap * 2);
    }
    return 0;
}

/* Empty slot i, shifting back the entries after it that probed past it (linear
   probing's deletion: every entry stays reachable from the slot it wants). */
static void
table_delete(KeyMemory *m, size_t i)
{
    size_t mask = (size_t)m->table_cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        Slot s = m->table[j];
        if (s.ref == SLOT_EMPTY)
            break;
        size_t want = (size_t)s.tag & mask;
        if (((j - want) & mask) < ((j - i) & mask))
            continue;  /* it wants a slot after the hole: it stays */
        m->table[i] = s;
        m->ring[s.ref].slot = (uint32_t)i;
        i = j;
    }
    m->table[i].ref = SLOT_EMPTY;
}

static void
memory_pop_oldest(KeyMemory *m)
{
    Entry *e = &m->ring[m->head];
    table_delete(m, e->slot);
    if (e->heap) {
        PyMem_Free(e->heap);
        e->heap = NULL;
    }
    m->head = (m->head + 1) & (m->ring_cap - 1);
    m->size--;
}

static void
memory_expire(KeyMemory *m, double now)
{
    double horizon = now - m->window;
    while (m->size > 0 && m->ring[m->head].time <= horizon)
        memory_pop_oldest(m);
}

static void
memory_bound(KeyMemory *m)
{
    while (m->size > m->max_keys) {
        memory_pop_oldest(m);
        m->forgotten++;
    }
}

/* Find the key; when absent and `insert`, remember it (time `now`).
   Returns 1 when it was present, 0 when not, -1 on a memory error.
   Call memory_reserve first (an insert must not grow anything). */
static int
memory_observe(KeyMemory *m, uint64_t hash, const u8 *key, uint32_t len, double now, int insert)
{
    size_t mask = (size_t)m->table_cap - 1;
    size_t i = (size_t)hash & mask;
    uint32_t tag = (uint32_t)hash;
    for (;;) {
        Slot s = m->table[i];
        if (s.ref == SLOT_EMPTY)
            break;
        if (s.tag == tag) {
            const Entry *e = &m->ring[s.ref];
            if (e->hash == hash && e->len == len && memcmp(entry_key(e), key, len) == 0)
                return 1;
        }
        i = (i + 1) & mask;
    }
    if (!insert)
        return 0;
    size_t free_slot = i;
    Py_ssize_t pos = (m->head + m->size) & (m->ring_cap - 1);
    Entry *e = &m->ring[pos];
    e->hash = hash;
    e->time = now;
    e->len = len;
    e->slot = (uint32_t)free_slot;
    if (len > INLINE_KEY) {
        e->heap = PyMem_Malloc(len);
        if (e->heap == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(e->heap, key, len);
    }
    else {
        e->heap = NULL;
        memcpy(e->inline_key, key, len);
    }
    m->table[free_slot].tag = tag;
    m->table[free_slot].ref = (uint32_t)pos;
    m->size++;
    return 0;
}

/* Expire, observe every key in order (a repeat inside the batch is a duplicate too),
   then apply the bound. `dup[k]` gets 1 when key k is a duplicate, else 0.
   Returns the number of duplicates, or -1 on a memory error. */
static Py_ssize_t
memory_observe_all(KeyMemory *m, const Span *keys, Py_ssize_t n, double now, u8 *dup)
{
    uint64_t stack[1024];
    uint64_t *hashes = n <= 1024 ? stack : PyMem_Malloc(sizeof(uint64_t) * (size_t)n);
    if (hashes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memory_expire(m, now);
    if (memory_reserve(m, n) < 0) {
        if (hashes != stack)
            PyMem_Free(hashes);
        return -1;
    }
    /* hash everything first and prefetch the table slots: the misses overlap */
    size_t mask = (size_t)m->table_cap - 1;
    for (Py_ssize_t k = 0; k < n; k++) {
        hashes[k] = hash_bytes(keys[k].data, keys[k].len);
        __builtin_prefetch(&m->table[hashes[k] & mask]);
    }
    Py_ssize_t found = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        int seen = memory_observe(m, hashes[k], keys[k].data, keys[k].len, now, 1);
        if (seen < 0) {
            found = -1;
            break;
        }
        found += seen;
        dup[k] = (u8)seen;
    }
    if (hashes != stack)
        PyMem_Free(hashes);
    if (found >= 0)
        memory_bound(m);
    return found;
}

static void
memory_clear(KeyMemory *m)
{
    while (m->size > 0) {
        Entry *e = &m->ring[m->head];
        if (e->heap)
            PyMem_Free(e->heap);
        m->head = (m->head + 1) & (m->ring_cap - 1);
        m->size--;
    }
}

static int
KeyMemory_init(KeyMemory *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"window", "max_keys", NULL};
    double window;
    Py_ssize_t max_keys;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dn", kwlist, &window, &max_keys))
        return -1;
    if (max_keys < 0 || max_keys > 0x7FFFFFF0 / 2) {
        PyErr_SetString(PyExc_ValueError, "max_keys out of range");
        return -1;
    }
    memory_clear(self);
    PyMem_Free(self->ring);
    PyMem_Free(self->table);
    self->ring = NULL;
    self->table = NULL;
    self->window = window;
    self->max_keys = max_keys;
    self->ring_cap = 1024;
    self->head = 0;
    self->size = 0;
    self->forgotten = 0;
    self->ring = PyMem_Malloc(sizeof(Entry) * (size_t)self->ring_cap);
    if (self->ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return table_rebuild(self, self->ring_cap * 2);
}

static void
KeyMemory_dealloc(KeyMemory *self)
{
    if (self->ring)
        memory_clear(self);
    PyMem_Free(self->ring);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
KeyMemory_len(KeyMemory *self)
{
    return self->size;
}

/* A str as UTF-8 bytes (surrogates passed through, so every str has one spelling). */
static PyObject *
utf8_of(PyObject *key)
{
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "keys must be str");
        return NULL;
    }
    return PyUnicode_AsEncodedString(key, "utf-8", "surrogatepass");
}

static int
memory_ready(KeyMemory *m)
{
    if (m->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "KeyMemory not initialised");
        return 0;
    }
    return 1;
}

static int
KeyMemory_contains(KeyMemory *self, PyObject *key)
{
    if (!memory_ready(self))
        return -1;
    if (!PyUnicode_Check(key))
        return 0;
    PyObject *utf8 = utf8_of(key);
    if (utf8 == NULL)
        return -1;
    const u8 *data = (const u8 *)PyBytes_AS_STRING(utf8);
    Py_ssize_t len = PyBytes_GET_SIZE(utf8);
    int seen = len > UINT32_MAX ? 0 : memory_observe(self, hash_bytes(data, len), data, (uint32_t)len, 0.0, 0);
    Py_DECREF(utf8);
    return seen;
}

static PyObject *
KeyMemory_find_duplicates(KeyMemory *self, PyObject *args)
{
    PyObject *keys;
    double now;
    if (!memory_ready(self) || !PyArg_ParseTuple(args, "Od", &keys, &now))
        return NULL;
    PyObject *seq = PySequence_Fast(keys, "keys must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *utf8 = PyList_New(n);
    Span *spans = PyMem_Malloc(sizeof(Span) * (size_t)(n ? n : 1));
    u8 *dup = PyMem_Malloc((size_t)(n ? n : 1));
    PyObject *result = NULL;
    if (utf8 == NULL || spans == NULL || dup == NULL) {
        if (utf8 != NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *bytes = utf8_of(PySequence_Fast_GET_ITEM(seq, k));
        if (bytes == NULL)
            goto done;
        PyList_SET_ITEM(utf8, k, bytes);
        if (PyBytes_GET_SIZE(bytes) > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "key too long");
            goto done;
        }
        spans[k].data = (const u8 *)PyBytes_AS_STRING(bytes);
        spans[k].len = (uint32_t)PyBytes_GET_SIZE(bytes);
        spans[k].kind = 0;
    }
    if (memory_observe_all(self, spans, n, now, dup) < 0)
        goto done;
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!dup[k])
            continue;
        PyObject *index = PyLong_FromSsize_t(k);
        if (index == NULL || PyList_Append(result, index) < 0) {
            Py_XDECREF(index);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(index);
    }
done:
    PyMem_Free(spans);
    PyMem_Free(dup);
    Py_XDECREF(utf8);
    Py_DECREF(seq);
    return result;
}

static PyObject *
KeyMemory_expire(KeyMemory *self, PyObject *arg)
{
    if (!memory_ready(self))
        return NULL;
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    memory_expire(self, now);
    Py_RETURN_NONE;
}

static PyObject *
KeyMemory_get_forgotten(KeyMemory *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->forgotten);
}

static PyMethodDef KeyMemory_methods[] = {
    {"find_duplicates", (PyCFunction)KeyMemory_find_duplicates, METH_VARARGS,
     "find_duplicates(keys, now) -> list[int]\n\nExpire, then observe every key in order; "
     "the indices of the duplicates. The memory bound applies after the whole batch."},
    {"expire", (PyCFunction)KeyMemory_expire, METH_O,
     "expire(now)\n\nForget every key first seen `window` or more seconds before `now`."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef KeyMemory_getset[] = {
    {"forgotten", (getter)KeyMemory_get_forgotten, NULL,
     "Keys dropped by the memory bound before their window ended.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods KeyMemory_as_sequence = {
    .sq_length = (lenfunc)KeyMemory_len,
    .sq_contains = (objobjproc)KeyMemory_contains,
};

static PyTypeObject KeyMemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sidecar.events._scan.KeyMemory",
    .tp_doc = "KeyMemory(window, max_keys)\n\nIdempotency keys seen in the last `window` "
              "seconds, at most `max_keys` of them; oldest forgotten first.",
    .tp_basicsize = sizeof(KeyMemory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)KeyMemory_init,
    .tp_dealloc = (destructor)KeyMemory_dealloc,
    .tp_methods = KeyMemory_methods,
    .tp_getset = KeyMemory_getset,
    .tp_as_sequence = &KeyMemory_as_sequence,
};

/* ============================================================== the JSON scanner */

#define MAX_DEPTH 64  /* deeper bodies take the exact path */

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) of the sequence
   starting at p; returns its end, or NULL. */
static inline const u8 *
utf8_sequence(const u8 *p, const u8 *end)
{
    u8 c = p[0];
    if (c < 0xC2)
        return NULL;
    if (c < 0xE0) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80)
            return NULL;
        return p + 2;
    }
    if (c < 0xF0) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return NULL;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
            return NULL;
        return p + 3;
    }
    if (c < 0xF5) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return NULL;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
            return NULL;
        return p + 4;
    }
    return NULL;
}

static inline int
hex4(const u8 *p, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        u8 c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string whose opening quote is at p[-1]: returns the position after the closing
   quote, or NULL. *escaped is set when it holds an escape. Strict: no control
   characters, valid escapes, surrogate escapes only in pairs, valid UTF-8. */
static inline __attribute__((always_inline)) const u8 *
json_string(const u8 *p, const u8 *end, int *escaped)
{
    for (;;) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"');
        const __m128i backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed compare: bytes below 0x20 and from 0x80 up are "less than 0x20" */
            __m128i special = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(special);
            if (mask) {
                p += __builtin_ctz((unsigned)mask);
                goto special;
            }
            p += 16;
        }
#endif
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return NULL;
#if defined(__SSE2__)
    special:
#endif
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            *escaped = 1;
            if (end - p < 2)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                unsigned cp;
                if (end - p < 6 || !hex4(p + 2, &cp))
                    return NULL;
                p += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return NULL;  /* a lone low surrogate */
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned low;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &low) ||
                        low < 0xDC00 || low > 0xDFFF)
                        return NULL;
                    p += 6;
                }
                break;
            }
            default:
                return NULL;
            }
            continue;
        }
        if (*p < 0x20)
            return NULL;
        p = utf8_sequence(p, end);  /* from 0x80 up */
        if (p == NULL)
            return NULL;
    }
}

static inline void
put_utf8(u8 **out, unsigned cp)
{
    u8 *o = *out;
    if (cp < 0x80)
        *o++ = (u8)cp;
    else if (cp < 0x800) {
        *o++ = (u8)(0xC0 | (cp >> 6));
        *o++ = (u8)(0x80 | (cp & 0x3F));
    }
    else if (cp < 0x10000) {
        *o++ = (u8)(0xE0 | (cp >> 12));
        *o++ = (u8)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (u8)(0x80 | (cp & 0x3F));
    }
    else {
        *o++ = (u8)(0xF0 | (cp >> 18));
        *o++ = (u8)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (u8)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (u8)(0x80 | (cp & 0x3F));
    }
    *out = o;
}

/* The UTF-8 of a string json_string() already checked (p to end, quotes excluded),
   escapes resolved, written at out (never longer than the input); returns its end. */
static u8 *
json_unescape(const u8 *p, const u8 *end, u8 *out)
{
    while (p < end) {
        if (*p != '\\') {
            *out++ = *p++;
            continue;
        }
        unsigned cp = 0, low = 0;
        switch (p[1]) {
        case 'b': *out++ = '\b'; break;
        case 'f': *out++ = '\f'; break;
        case 'n': *out++ = '\n'; break;
        case 'r': *out++ = '\r'; break;
        case 't': *out++ = '\t'; break;
        case 'u':
            hex4(p + 2, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                hex4(p + 8, &low);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            }
            put_utf8(&out, cp);
            p += 6;
            continue;
        default: *out++ = p[1]; break;  /* " \\ / */
        }
        p += 2;
    }
    return out;
}

static inline const u8 *
json_ws(const u8 *p, const u8 *end)
{
    if (p < end && *p > ' ')  /* compact JSON: one test (every whitespace byte is <= ' ') */
        return p;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static inline int
is_digit(u8 c)
{
    return c >= '0' && c <= '9';
}

static const u8 *
json_number(const u8 *p, const u8 *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p))
            p++;
    }
    else
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

static inline const u8 *
json_literal(const u8 *p, const u8 *end, const char *word, size_t len)
{
    if ((size_t)(end - p) < len || memcmp(p, word, len) != 0)
        return NULL;
    return p + len;
}

static const u8 *json_value(const u8 *p, const u8 *end, int depth);

/* json_value, with the most common value (a string) read without a call. */
static inline const u8 *
json_any(const u8 *p, const u8 *end, int depth)
{
    int escaped = 0;
    if (p < end && *p == '"')
        return json_string(p + 1, end, &escaped);
    return json_value(p, end, depth);
}

/* The position after byte c, whitespace allowed before it; NULL when c is not next. */
static inline const u8 *
json_after(const u8 *p, const u8 *end, u8 c)
{
    if (p < end && *p == c)
        return p + 1;
    p = json_ws(p, end);
    return (p < end && *p == c) ? p + 1 : NULL;
}

/* After a member or an element: 1 when a ',' follows (*pp moves past it and the
   whitespace after it), 0 when `close` follows (*pp moves past it), -1 otherwise.
   Compact JSON takes the first test. */
static inline int
json_next(const u8 **pp, const u8 *end, u8 close)
{
    const u8 *p = *pp;
    if (p < end && *p == ',') {
        *pp = json_ws(p + 1, end);
        return 1;
    }
    p = json_ws(p, end);
    if (p < end && *p == ',') {
        *pp = json_ws(p + 1, end);
        return 1;
    }
    if (p < end && *p == close) {
        *pp = p + 1;
        return 0;
    }
    return -1;
}

/* An object at *pp (whitespace before it allowed): 1 when a member follows (*pp at its
   name), 0 when it is empty (*pp after it), -1 when there is no object. */
static inline int
json_open(const u8 **pp, const u8 *end)
{
    const u8 *p = json_ws(*pp, end);
    if (p >= end || *p != '{')
        return -1;
    p = json_ws(p + 1, end);
    if (p < end && *p == '}') {
        *pp = p + 1;
        return 0;
    }
    *pp = p;
    return 1;
}

/* A member's name and ':' at *pp: the name's bytes in *name and *len, *pp at the value.
   -1 for anything else, an escaped name included (callers compare names as bytes). */
static inline int
json_member(const u8 **pp, const u8 *end, const u8 **name, Py_ssize_t *len)
{
    int escaped = 0;
    const u8 *p = *pp;
    if (p >= end || *p != '"')
        return -1;
    *name = p + 1;
    p = json_string(p + 1, end, &escaped);
    if (p == NULL || escaped)
        return -1;
    *len = p - 1 - *name;
    if ((p = json_after(p, end, ':')) == NULL)
        return -1;
    *pp = json_ws(p, end);
    return 0;
}

/* One JSON value at p (whitespace skipped before it, not after); returns its end or NULL. */
static const u8 *
json_value(const u8 *p, const u8 *end, int depth)
{
    int escaped = 0;
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"':
        return json_string(p + 1, end, &escaped);
    case '{':
        if (depth >= MAX_DEPTH)
            return NULL;
        p = json_ws(p + 1, end);
        if (p < end && *p == '}')
            return p + 1;
        for (;;) {
            if (p >= end || *p != '"')
                return NULL;
            p = json_string(p + 1, end, &escaped);
            if (p == NULL || (p = json_after(p, end, ':')) == NULL)
                return NULL;
            p = json_any(json_ws(p, end), end, depth + 1);
            int more = p == NULL ? -1 : json_next(&p, end, '}');
            if (more <= 0)
                return more < 0 ? NULL : p;
        }
    case '[':
        if (depth >= MAX_DEPTH)
            return NULL;
        p = json_ws(p + 1, end);
        if (p < end && *p == ']')
            return p + 1;
        for (;;) {
            p = json_any(p, end, depth + 1);
            int more = p == NULL ? -1 : json_next(&p, end, ']');
            if (more <= 0)
                return more < 0 ? NULL : p;
        }
    case 't':
        return json_literal(p, end, "true", 4);
    case 'f':
        return json_literal(p, end, "false", 5);
    case 'n':
        return json_literal(p, end, "null", 4);
    default:
        return json_number(p, end);
    }
}

/* ============================================================ the BatchScanner */

#define NAME_BUCKETS 128

typedef struct {
    const char *name;  /* borrowed from `names` (a bytes object kept alive) */
    Py_ssize_t len;
    int kind;          /* type index, or KIND_KEY */
} Name;

#define KIND_KEY (-1)

typedef struct {
    PyObject_HEAD
    int started;              /* __init__ got past its arguments (it runs once) */
    int ready;                /* __init__ succeeded */
    int batch_field;          /* IngestEventBatchRequest.events */
    int key_field;            /* EventEnvelope.idempotency_key */
    Py_ssize_t max_events;
    Py_ssize_t kinds;         /* payload members + 1 (the last index: no payload) */
    int *kind_of_field;       /* field number -> kind + 1 (0: not a payload member) */
    int max_field;
    PyObject *batch_name;     /* bytes: "events" */
    PyObject *name_store;     /* list of bytes kept alive for Name.name */
    Name *names;
    int16_t bucket[NAME_BUCKETS][8];  /* indices into names, -1 terminated */
    /* per scan */
    u8 *scratch;              /* unescaped keys: as long as the body at most */
    Py_ssize_t scratch_len;
    Py_ssize_t scratch_used;
    Span *keys;
    uint16_t *kinds_of_events;
    u8 *dup;
    /* batch sizes since the last take_sizes(), bucketed by size_bounds (when given) */
    double *size_bounds;
    Py_ssize_t n_bounds;      /* -1: sizes not kept */
    unsigned long long *size_counts;
    unsigned long long sizes;
    double size_sum, size_min, size_max, size_last;
    /* cumulative */
    unsigned long long *events;
    unsigned long long *duplicates;
    unsigned long long missing;
} BatchScanner;

static inline unsigned
name_bucket(const u8 *p, Py_ssize_t len)
{
    unsigned h = (unsigned)len * 31u;
    if (len > 0)
        h += (unsigned)p[0] * 7u + (unsigned)p[len - 1] * 13u + (unsigned)p[len / 2];
    return h & (NAME_BUCKETS - 1);
}

/* The kind of an envelope member name: a type index, KIND_KEY, or -2 (other). */
static inline int
lookup_name(const BatchScanner *s, const u8 *p, Py_ssize_t len)
{
    const int16_t *b = s->bucket[name_bucket(p, len)];
    for (int k = 0; k < 8 && b[k] >= 0; k++) {
        const Name *n = &s->names[b[k]];
        if (n->len == len && memcmp(n->name, p, (size_t)len) == 0)
            return n->kind;
    }
    return -2;
}

typedef struct {
    Py_ssize_t count;   /* envelopes */
    Py_ssize_t n_keys;  /* non-empty keys, in s->keys */
} ScanResult;

/* Note one envelope read: its type index (-1: no payload) and its key (none when empty).
   -1 for a key too long to note. */
static inline int
record_envelope(BatchScanner *s, ScanResult *r, int kind, const u8 *key, Py_ssize_t key_len)
{
    if (kind < 0)
        kind = (int)s->kinds - 1;
    s->kinds_of_events[r->count] = (uint16_t)kind;
    if (key_len > 0) {
        if ((uint64_t)key_len > UINT32_MAX)
            return -1;
        Span *k = &s->keys[r->n_keys++];
        k->data = key;
        k->len = (uint32_t)key_len;
        k->kind = (uint16_t)kind;
    }
    r->count++;
    return 0;
}

/* The envelopes array (p after '['). Returns its end or NULL. */
static const u8 *
json_envelopes(BatchScanner *s, const u8 *p, const u8 *end, ScanResult *r)
{
    p = json_ws(p, end);
    if (p < end && *p == ']')
        return NULL;  /* empty batch: the exact path says so */
    for (;;) {
        if (r->count >= s->max_events)
            return NULL;
        int kind = -1;
        int has_key = 0;
        const u8 *key = NULL;
        Py_ssize_t key_len = 0;
        int more = json_open(&p, end);
        while (more > 0) {
            const u8 *name;
            Py_ssize_t name_len;
            int escaped = 0;
            if (json_member(&p, end, &name, &name_len) < 0)
                return NULL;
            int which = lookup_name(s, name, name_len);
            if (which == KIND_KEY) {
                if (has_key || p >= end || *p != '"')
                    return NULL;  /* a second key (either spelling), or not a string */
                key = p + 1;
                p = json_string(key, end, &escaped);
                if (p == NULL)
                    return NULL;
                key_len = p - 1 - key;
                has_key = 1;
                if (escaped) {
                    u8 *out = s->scratch + s->scratch_used;
                    u8 *stop = json_unescape(key, p - 1, out);
                    key = out;
                    key_len = stop - out;
                    s->scratch_used += key_len;
                }
            }
            else if (which >= 0) {
                if (kind >= 0 || p >= end || *p != '{')
                    return NULL;  /* a second member, or one that is not an object */
                kind = which;
                p = json_value(p, end, 3);
            }
            else {
                p = json_any(p, end, 3);
            }
            more = p == NULL ? -1 : json_next(&p, end, '}');
        }
        if (more < 0 || record_envelope(s, r, kind, key, key_len) < 0)
            return NULL;
        more = json_next(&p, end, ']');
        if (more <= 0)
            return more < 0 ? NULL : p;
    }
}

static int
json_batch(BatchScanner *s, const u8 *p, const u8 *end, ScanResult *r)
{
    const u8 *batch = (const u8 *)PyBytes_AS_STRING(s->batch_name);
    Py_ssize_t batch_len = PyBytes_GET_SIZE(s->batch_name);
    int seen_events = 0;
    int more = json_open(&p, end);
    while (more > 0) {
        const u8 *name;
        Py_ssize_t len;
        if (json_member(&p, end, &name, &len) < 0)
            return -1;
        if (len == batch_len && memcmp(name, batch, (size_t)len) == 0) {
            if (seen_events || p >= end || *p != '[')
                return -1;
            seen_events = 1;
            p = json_envelopes(s, p + 1, end, r);
        }
        else {
            p = json_value(p, end, 1);
        }
        more = p == NULL ? -1 : json_next(&p, end, '}');
    }
    return (more == 0 && seen_events && json_ws(p, end) == end) ? 0 : -1;
}

/* =========================================================== the binary scanner */

static inline const u8 *
varint(const u8 *p, const u8 *end, uint64_t *out)
{
    if (p < end && *p < 0x80) {  /* one byte: most tags and lengths */
        *out = *p;
        return p + 1;
    }
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        u8 b = *p++;
        if (shift == 63 && b > 1)
            return NULL;  /* past 64 bits */
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return p;
        }
    }
    return NULL;
}

/* One field's tag at p: its number and wire type; NULL for anything the exact path
   must judge (field 0, numbers past 2^29-1, groups, wire types 6 and 7). */
static inline const u8 *
field_tag(const u8 *p, const u8 *end, uint32_t *number, int *wire)
{
    uint64_t tag;
    p = varint(p, end, &tag);
    if (p == NULL || tag > 0xFFFFFFFFu)
        return NULL;
    *number = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    if (*number == 0 || !((0x27u >> *wire) & 1u))  /* wire types 0, 1, 2 and 5 only */
        return NULL;
    return p;
}

typedef struct {
    uint32_t number;
    int wire;
    uint64_t value;   /* a varint's value; a length-delimited field's length */
    const u8 *data;   /* a length-delimited field's bytes */
} Field;

/* The next field at *pp into *f, *pp after it: 1, or 0 at the end, or -1 for anything
   the exact path must judge (see field_tag, and lengths past the end or 2^31). */
static inline int
next_field(const u8 **pp, const u8 *end, Field *f)
{
    const u8 *p = *pp;
    if (p >= end)
        return 0;
    if ((p = field_tag(p, end, &f->number, &f->wire)) == NULL)
        return -1;
    switch (f->wire) {
    case 0:
        p = varint(p, end, &f->value);
        break;
    case 1:
        p = end - p >= 8 ? p + 8 : NULL;
        break;
    case 5:
        p = end - p >= 4 ? p + 4 : NULL;
        break;
    default:
        p = varint(p, end, &f->value);
        if (p == NULL || f->value > 0x7FFFFFFF || f->value > (uint64_t)(end - p))
            return -1;
        f->data = p;
        p += f->value;
    }
    if (p == NULL)
        return -1;
    *pp = p;
    return 1;
}

static int
utf8_valid(const u8 *p, const u8 *end)
{
    while (end - p >= 8) {  /* ASCII eight bytes at a time */
        uint64_t word;
        memcpy(&word, p, 8);
        if (word & 0x8080808080808080ull)
            break;
        p += 8;
    }
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        p = utf8_sequence(p, end);
        if (p == NULL)
            return 0;
    }
    return 1;
}

static int
binary_envelope(BatchScanner *s, const u8 *p, const u8 *end, ScanResult *r)
{
    int kind = -1;
    int has_key = 0;
    const u8 *key = NULL;
    Py_ssize_t key_len = 0;
    Field f = {0};
    int more;
    while ((more = next_field(&p, end, &f)) > 0) {
        int member = (int)f.number <= s->max_field ? s->kind_of_field[f.number] - 1 : -1;
        if (((int)f.number == s->key_field || member >= 0) && f.wire != 2)
            return -1;  /* a known field with another wire type */
        if ((int)f.number == s->key_field) {
            if (has_key)
                return -1;  /* the exact path keeps the last */
            has_key = 1;
            key = f.data;
            key_len = (Py_ssize_t)f.value;
        }
        else if (member >= 0) {
            if (kind >= 0)
                return -1;  /* two members on the wire */
            kind = member;
        }
    }
    if (more < 0 || (key_len > 0 && !utf8_valid(key, key + key_len)))
        return -1;
    return record_envelope(s, r, kind, key, key_len);
}

static int
binary_batch(BatchScanner *s, const u8 *p, const u8 *end, ScanResult *r)
{
    Field f = {0};
    int more;
    while ((more = next_field(&p, end, &f)) > 0) {
        if ((int)f.number != s->batch_field)
            continue;
        if (f.wire != 2 || r->count >= s->max_events ||
            binary_envelope(s, f.data, f.data + f.value, r) < 0)
            return -1;
    }
    return more == 0 && r->count > 0 ? 0 : -1;
}

/* ============================================================ BatchScanner API */

static int
BatchScanner_init(BatchScanner *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch_field", "key_field", "key_names", "members", "max_events",
                             "size_bounds", NULL};
    int batch_field, key_field;
    PyObject *batch_name, *key_names, *members, *size_bounds = Py_None;
    Py_ssize_t max_events;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "BatchScanner is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "(iO!)iO!O!n|$O", kwlist, &batch_field,
                                     &PyUnicode_Type, &batch_name, &key_field, &PyTuple_Type,
                                     &key_names, &PyTuple_Type, &members, &max_events,
                                     &size_bounds))
        return -1;
    self->started = 1;  /* from here on, allocations are kept until dealloc */
    self->n_bounds = -1;
    if (size_bounds != Py_None) {
        if (!PyTuple_Check(size_bounds)) {
            PyErr_SetString(PyExc_TypeError, "size_bounds must be a tuple of floats or None");
            return -1;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(size_bounds);
        self->size_bounds = PyMem_Calloc((size_t)(n ? n : 1), sizeof(double));
        self->size_counts = PyMem_Calloc((size_t)n + 1, sizeof(unsigned long long));
        if (self->size_bounds == NULL || self->size_counts == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            double bound = PyFloat_AsDouble(PyTuple_GET_ITEM(size_bounds, k));
            if (bound == -1.0 && PyErr_Occurred())
                return -1;
            if (k > 0 && !(bound > self->size_bounds[k - 1])) {
                PyErr_SetString(PyExc_ValueError, "size_bounds must increase");
                return -1;
            }
            self->size_bounds[k] = bound;
        }
        self->n_bounds = n;
    }
    Py_ssize_t n_members = PyTuple_GET_SIZE(members);
    if (max_events < 1 || max_events > 65535 || n_members < 1 || n_members > 65000) {
        PyErr_SetString(PyExc_ValueError, "max_events or members out of range");
        return -1;
    }
    self->batch_field = batch_field;
    self->key_field = key_field;
    self->max_events = max_events;
    self->kinds = n_members + 1;
    self->batch_name = PyUnicode_AsUTF8String(batch_name);
    self->name_store = PyList_New(0);
    if (self->batch_name == NULL || self->name_store == NULL)
        return -1;
    Py_ssize_t n_names = PyTuple_GET_SIZE(key_names) + 2 * n_members;
    self->names = PyMem_Calloc((size_t)n_names, sizeof(Name));
    self->keys = PyMem_Calloc((size_t)max_events, sizeof(Span));
    self->kinds_of_events = PyMem_Calloc((size_t)max_events, sizeof(uint16_t));
    self->dup = PyMem_Calloc((size_t)max_events, 1);
    self->events = PyMem_Calloc((size_t)self->kinds, sizeof(unsigned long long));
    self->duplicates = PyMem_Calloc((size_t)self->kinds, sizeof(unsigned long long));
    if (!self->names || !self->keys || !self->kinds_of_events || !self->dup || !self->events ||
        !self->duplicates) {
        PyErr_NoMemory();
        return -1;
    }
    memset(self->bucket, 0xFF, sizeof(self->bucket));
    int max_field = key_field;
    for (Py_ssize_t k = 0; k < n_members; k++) {
        PyObject *member = PyTuple_GET_ITEM(members, k);
        int number;
        PyObject *a, *b;
        if (!PyArg_ParseTuple(member, "iUU", &number, &a, &b))
            return -1;
        if (number < 1 || number > 536870911) {
            PyErr_SetString(PyExc_ValueError, "bad field number");
            return -1;
        }
        if (number > max_field)
            max_field = number;
    }
    if (key_field < 1 || key_field > 536870911 || batch_field < 1 || max_field > 1000000) {
        PyErr_SetString(PyExc_ValueError, "bad field number");
        return -1;
    }
    self->max_field = max_field;
    self->kind_of_field = PyMem_Calloc((size_t)max_field + 1, sizeof(int));
    if (self->kind_of_field == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* names: the key's spellings, then each member's two */
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < n_names; k++) {
        PyObject *text;
        int kind;
        if (k < PyTuple_GET_SIZE(key_names)) {
            text = PyTuple_GET_ITEM(key_names, k);
            kind = KIND_KEY;
        }
        else {
            Py_ssize_t m = (k - PyTuple_GET_SIZE(key_names)) / 2;
            PyObject *member = PyTuple_GET_ITEM(members, m);
            text = PyTuple_GET_ITEM(member, 1 + (k - PyTuple_GET_SIZE(key_names)) % 2);
            kind = (int)m;
            self->kind_of_field[PyLong_AsLong(PyTuple_GET_ITEM(member, 0))] = (int)m + 1;
        }
        if (!PyUnicode_Check(text)) {
            PyErr_SetString(PyExc_TypeError, "names must be str");
            return -1;
        }
        PyObject *bytes = PyUnicode_AsUTF8String(text);
        if (bytes == NULL)
            return -1;
        int stored = PyList_Append(self->name_store, bytes);
        Py_DECREF(bytes);
        if (stored < 0)
            return -1;
        const u8 *name = (const u8 *)PyBytes_AS_STRING(bytes);
        Py_ssize_t len = PyBytes_GET_SIZE(bytes);
        if (lookup_name(self, name, len) != -2)
            continue;  /* the same spelling twice (a member named in lowerCamelCase) */
        int16_t *b = self->bucket[name_bucket(name, len)];
        int slot = 0;
        while (slot < 8 && b[slot] >= 0)
            slot++;
        if (slot == 8) {
            PyErr_SetString(PyExc_ValueError, "too many names in one bucket");
            return -1;
        }
        self->names[at].name = (const char *)name;
        self->names[at].len = len;
        self->names[at].kind = kind;
        b[slot] = (int16_t)at++;
    }
    self->ready = 1;
    return 0;
}

static void
BatchScanner_dealloc(BatchScanner *self)
{
    Py_XDECREF(self->batch_name);
    Py_XDECREF(self->name_store);
    PyMem_Free(self->names);
    PyMem_Free(self->kind_of_field);
    PyMem_Free(self->scratch);
    PyMem_Free(self->size_bounds);
    PyMem_Free(self->size_counts);
    PyMem_Free(self->keys);
    PyMem_Free(self->kinds_of_events);
    PyMem_Free(self->dup);
    PyMem_Free(self->events);
    PyMem_Free(self->duplicates);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
scanner_ready(BatchScanner *s)
{
    if (!s->ready) {
        PyErr_SetString(PyExc_RuntimeError, "BatchScanner not initialised");
        return 0;
    }
    return 1;
}

static PyObject *
BatchScanner_scan(BatchScanner *self, PyObject *args)
{
    Py_buffer body;
    int binary;
    KeyMemory *memory;
    double now;
    if (!scanner_ready(self))
        return NULL;
    if (!PyArg_ParseTuple(args, "y*pO!d", &body, &binary, &KeyMemoryType, &memory, &now))
        return NULL;
    if (!memory_ready(memory)) {
        PyBuffer_Release(&body);
        return NULL;
    }
    const u8 *p = body.buf;
    const u8 *end = p + body.len;
    ScanResult r = {0, 0};
    if (!binary && body.len > self->scratch_len) {
        u8 *scratch = PyMem_Realloc(self->scratch, (size_t)body.len);
        if (scratch == NULL) {
            PyBuffer_Release(&body);
            return PyErr_NoMemory();
        }
        self->scratch = scratch;
        self->scratch_len = body.len;
    }
    self->scratch_used = 0;
    int ok = binary ? binary_batch(self, p, end, &r) : json_batch(self, p, end, &r);
    if (ok < 0) {
        PyBuffer_Release(&body);
        Py_RETURN_NONE;  /* off the plain path: nothing recorded */
    }
    Py_ssize_t found = memory_observe_all(memory, self->keys, r.n_keys, now, self->dup);
    if (found < 0) {
        PyBuffer_Release(&body);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < r.count; k++)
        self->events[self->kinds_of_events[k]]++;
    if (found) {
        for (Py_ssize_t k = 0; k < r.n_keys; k++)
            if (self->dup[k])
                self->duplicates[self->keys[k].kind]++;
    }
    self->missing += (unsigned long long)(r.count - r.n_keys);
    if (self->n_bounds >= 0) {
        double size = (double)r.count;
        Py_ssize_t bucket = 0;  /* bisect_left: the first bound >= size (Prometheus "le") */
        while (bucket < self->n_bounds && self->size_bounds[bucket] < size)
            bucket++;
        self->size_counts[bucket]++;
        if (self->sizes == 0 || size < self->size_min)
            self->size_min = size;
        if (self->sizes == 0 || size > self->size_max)
            self->size_max = size;
        self->sizes++;
        self->size_sum += size;
        self->size_last = size;
    }
    PyBuffer_Release(&body);
    return PyLong_FromSsize_t(r.count);
}

static PyObject *
counts_list(const unsigned long long *counts, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *v = PyLong_FromUnsignedLongLong(counts[k]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, v);
    }
    return list;
}

static PyObject *
BatchScanner_totals(BatchScanner *self, PyObject *Py_UNUSED(ignored))
{
    if (!scanner_ready(self))
        return NULL;
    PyObject *events = counts_list(self->events, self->kinds);
    PyObject *duplicates = counts_list(self->duplicates, self->kinds);
    if (events == NULL || duplicates == NULL) {
        Py_XDECREF(events);
        Py_XDECREF(duplicates);
        return NULL;
    }
    return Py_BuildValue("(NNK)", events, duplicates, self->missing);
}

static PyObject *
BatchScanner_take_sizes(BatchScanner *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->ready || self->n_bounds < 0 || self->sizes == 0)
        Py_RETURN_NONE;
    PyObject *counts = counts_list(self->size_counts, self->n_bounds + 1);
    if (counts == NULL)
        return NULL;
    PyObject *taken = Py_BuildValue("(Ndddd)", counts, self->size_sum, self->size_min,
                                    self->size_max, self->size_last);
    if (taken == NULL)
        return NULL;
    memset(self->size_counts, 0, sizeof(unsigned long long) * (size_t)(self->n_bounds + 1));
    self->sizes = 0;
    self->size_sum = 0.0;
    return taken;
}

static PyMethodDef BatchScanner_methods[] = {
    {"scan", (PyCFunction)BatchScanner_scan, METH_VARARGS,
     "scan(body, binary, memory, now) -> int | None\n\nRead a batch body; on the plain path "
     "observe its keys in `memory`, add to the totals and return the envelope count; "
     "otherwise None, with nothing recorded."},
    {"take_sizes", (PyCFunction)BatchScanner_take_sizes, METH_NOARGS,
     "take_sizes() -> (counts, sum, min, max, last) | None\n\nThe batch sizes scanned since "
     "the last call, bucketed by size_bounds (None when there were none, or no bounds)."},
    {"totals", (PyCFunction)BatchScanner_totals, METH_NOARGS,
     "totals() -> (events, duplicates, missing)\n\nCumulative counts of the scanned batches: "
     "per type index (members in the constructor's order, then no payload), and the events "
     "without a key."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sidecar.events._scan.BatchScanner",
    .tp_doc = "BatchScanner(batch_field, key_field, key_names, members, max_events)\n\n"
              "Reads IngestEventBatchRequest bodies in C; see scan().",
    .tp_basicsize = sizeof(BatchScanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BatchScanner_init,
    .tp_dealloc = (destructor)BatchScanner_dealloc,
    .tp_methods = BatchScanner_methods,
};

/* ===================================================== batch responses' counts */

/* A JSON count: digits only (no sign, fraction or exponent), below 2^31; else -1. */
static long
json_count(const u8 *p, const u8 *end)
{
    if (p >= end || *p < '0' || *p > '9' || (*p == '0' && end - p > 1))
        return -1;
    long v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 0x7FFFFFFF)
            return -1;
    }
    return v;
}

/* The count member of a JSON object body: camel's value unless absent or null, then
   original's; 0 when neither. -1 (decline) for anything off the plain path. */
static long
json_response_count(const u8 *p, const u8 *end, const u8 *camel, Py_ssize_t camel_len,
                    const u8 *original, Py_ssize_t original_len)
{
    long values[2] = {-2, -2};  /* -2: absent or null */
    int seen[2] = {0, 0};
    int more = json_open(&p, end);
    while (more > 0) {
        const u8 *name;
        Py_ssize_t len;
        if (json_member(&p, end, &name, &len) < 0)
            return -1;
        int which = -1;
        if (len == camel_len && memcmp(name, camel, (size_t)len) == 0)
            which = 0;
        else if (len == original_len && memcmp(name, original, (size_t)len) == 0)
            which = 1;
        const u8 *value = p;
        p = json_value(p, end, 1);
        if (p == NULL)
            return -1;
        if (which >= 0) {
            if (seen[which])
                return -1;  /* twice: the reference keeps the last; decline */
            seen[which] = 1;
            if (p - value == 4 && memcmp(value, "null", 4) == 0)
                values[which] = -2;
            else if ((values[which] = json_count(value, p)) < 0)
                return -1;
        }
        more = json_next(&p, end, '}');
    }
    if (more < 0 || json_ws(p, end) != end)
        return -1;
    if (values[0] >= 0)
        return values[0];
    return values[1] >= 0 ? values[1] : 0;
}

/* The count field (a varint, last one wins) of a binary body; 0 when absent, -1 to
   decline. */
static long
binary_response_count(const u8 *p, const u8 *end, int number_wanted)
{
    long count = 0;
    Field f = {0};
    int more;
    while ((more = next_field(&p, end, &f)) > 0) {
        if ((int)f.number == number_wanted) {
            if (f.wire != 0 || f.value > 0x7FFFFFFF)
                return -1;
            count = (long)f.value;
        }
    }
    return more == 0 ? count : -1;
}

static PyObject *
scan_response_count(PyObject *module, PyObject *args)
{
    Py_buffer body;
    int binary, number;
    const char *camel, *original;
    Py_ssize_t camel_len, original_len;
    if (!PyArg_ParseTuple(args, "y*piy#y#", &body, &binary, &number, &camel, &camel_len,
                          &original, &original_len))
        return NULL;
    const u8 *p = body.buf;
    long count = binary ? binary_response_count(p, p + body.len, number)
                        : json_response_count(p, p + body.len, (const u8 *)camel, camel_len,
                                              (const u8 *)original, original_len);
    PyBuffer_Release(&body);
    if (count < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(count);
}

static PyMethodDef scan_functions[] = {
    {"response_count", scan_response_count, METH_VARARGS,
     "response_count(body, binary, field_number, camel_name, original_name) -> int | None\n\n"
     "The non-negative int32 count member of an answer (binary: the varint field; JSON: the "
     "member in either spelling, lowerCamelCase first), 0 when absent; None for anything "
     "off the plain path (the caller's exact reader decides)."},
    {NULL, NULL, 0, NULL},
};

/* ================================================================== the module */

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sidecar.events._scan",
    .m_doc = "The event inspector's hot path in C: KeyMemory, BatchScanner, response_count.",
    .m_size = -1,
    .m_methods = scan_functions,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    if (PyType_Ready(&KeyMemoryType) < 0 || PyType_Ready(&BatchScannerType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&scan_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "KeyMemory", (PyObject *)&KeyMemoryType) < 0 ||
        PyModule_AddObjectRef(module, "BatchScanner", (PyObject *)&BatchScannerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
