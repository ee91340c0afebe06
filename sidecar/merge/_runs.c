/* sidecar.merge._runs: proving a run of a merge target's sample lines, in C.
 *
 * take_run(body, start, limit, names, allowed, counter, suffix) reads the sample lines
 * of an ASCII exposition from `start` up to the next comment line (or `limit`) and
 * proves each one against the grammar that rawtext._run_pattern writes as a regular
 * expression (the Python side and the reasons are in rawtext.py):
 *
 *     name{n1="v",n2="v"} value\n       (exactly `names`, in that order; no braces when
 *                                        `names` is empty)
 *
 * where `name` is one of `allowed` (the family's sample names), a label value is any run
 * of characters but `"`, `\` and newline, or the escapes \\ \n \", and `value` is
 * [-+]?(digits[.digits*]|.digits)([eE][-+]?digits)? or [-+]Inf or NaN. With `counter`
 * (an OpenMetrics counter) a *_total sample's value must not be negative or NaN:
 * \+?(digits...)(exp)? or +Inf.
 *
 * Returns (end, text): where the run ends (the start of the next comment line, or
 * `limit`) and its lines, with `suffix` (configured labels, already escaped) added to
 * every label list as rawtext's line-by-line way adds them. Returns None when a line is
 * not taken (the line-by-line way then decides, and says why) and, with a suffix, when
 * the run has an escape (as rawtext._Labeller.run declines it). It takes only lines
 * that end before `limit`, reads no further than the body's end (CPython ends every str
 * with a NUL, which no token takes) and runs without the GIL (the body is immutable).
 *
 * split_created(chunk, created) parts a counter's checked sample lines into those that
 * are not and those that are its `created` samples (text writes them as two families).
 *
 * scan_text(body) cuts a whole ASCII text 0.0.4 body laid out as client_golang and
 * prometheus_client write it into its families, in one pass: every family is
 *
 *     [# HELP name text\n] # TYPE name kind\n sample lines
 *
 * (kind one of counter, gauge, untyped, summary, histogram; a counter's name ends in
 * _total; HELP text without a backslash and without whitespace or a control character at
 * either end), and every sample line is `name{l1="v",...} value\n` as above, named as the
 * family's samples are (the TYPE name for counter, gauge and untyped; name, _count,
 * _sum, _created and for histograms _bucket), with at least one label between braces,
 * no label name twice and none called __name__. It returns one tuple per family,
 * (name, kind, help or None, start of its HELP/TYPE lines, start of its samples, end),
 * or None for anything else (rawtext.py's way then reads the body and says why). Sample
 * lines are then exactly what rawtext's line-by-line way keeps of them. Each tuple ends
 * with the distinct label names of the family's sample lines, in the order first seen
 * (read in the same walk over every label pair; None past 64 names), so that
 * sidecar/relabel/families.py need not read the lines again to know them.
 *
 * apply_plan(chunks, olds, old_ends, order, news, new_ends, split) writes a relabelled
 * family from a plan that sidecar/relabel/families.py remembered: each line's new
 * `name{labels}` with the line's value, once it has checked that every line still has
 * the plan's old `name{labels}` (tests/relabel/test_apply_plan.py holds it to the
 * Python spelling, `_apply_plan`).
 *
 * tests/merge/test_rawtext_runs.py holds this to the same answers as the `re` spelling
 * of the grammar and as the line-by-line way, on tables and on generated runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef unsigned char u8;

/* [a-zA-Z0-9_:]: bit 1 for a name character, bit 2 for one that may also start a name */
static u8 NAME_CHAR[256];

static void
init_tables(void)
{
    for (int c = 0; c < 256; c++) {
        u8 v = 0;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':')
            v = 3;
        else if (c >= '0' && c <= '9')
            v = 1;
        NAME_CHAR[c] = v;
    }
}

typedef struct {
    const char *text;
    Py_ssize_t len;
    int total;  /* a *_total name (an OpenMetrics counter's value must not be negative) */
} Name;

typedef struct {
    const Name *names;      /* label names, in order */
    Py_ssize_t n_names;
    const Name *allowed;    /* sample names */
    Py_ssize_t n_allowed;
    int counter;
    const char *suffix;     /* configured labels, "" for none */
    Py_ssize_t suffix_len;
    const char *insert;     /* what goes in: ",suffix" before '}', or "{suffix}" before ' ' */
    Py_ssize_t insert_len;
} Grammar;

/* Output buffer for runs that get a suffix. */
typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Out;

static int
out_put(Out *out, const char *data, Py_ssize_t len)
{
    if (out->len + len > out->cap) {
        Py_ssize_t cap = out->cap ? out->cap : 4096;
        while (cap < out->len + len) {
            if (cap > PY_SSIZE_T_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *grown = PyMem_RawRealloc(out->data, (size_t)cap);
        if (grown == NULL)
            return -1;
        out->data = grown;
        out->cap = cap;
    }
    memcpy(out->data + out->len, data, (size_t)len);
    out->len += len;
    return 0;
}

static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A value from q; a character no value has (the newline, at the latest the NUL after
 * the body) stops every loop. Returns past the value, or NULL. */
static const char *
scan_value(const char *q, int nonnegative)
{
    int sign = 0;
    if (*q == '+') {
        sign = 1;
        q++;
    } else if (*q == '-') {
        if (nonnegative)
            return NULL;
        sign = 1;
        q++;
    }
    if (*q == 'I')
        return sign && q[1] == 'n' && q[2] == 'f' ? q + 3 : NULL;
    if (*q == 'N')
        return !sign && !nonnegative && q[1] == 'a' && q[2] == 'N' ? q + 3 : NULL;
    const char *digits = q;
    while (is_digit(*q))
        q++;
    int whole = q != digits;
    if (*q == '.') {
        q++;
        const char *fraction = q;
        while (is_digit(*q))
            q++;
        if (!whole && q == fraction)
            return NULL;
    } else if (!whole) {
        return NULL;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        const char *exponent = q;
        while (is_digit(*q))
            q++;
        if (q == exponent)
            return NULL;
    }
    return q;
}

static inline int
ends_with_total(const char *name, Py_ssize_t len)
{
    return len >= 6 && memcmp(name + len - 6, "_total", 6) == 0;
}

static inline int
same8(const char *a, const char *b)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return x == y;
}

static inline int
same4(const char *a, const char *b)
{
    uint32_t x, y;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    return x == y;
}

/* a[0:n] == b[0:n] for the short names of a sample line, inline: whole words, the last
 * one overlapping the one before (a libc call per name costs more than the compare). */
static inline int
same(const char *a, const char *b, Py_ssize_t n)
{
    if (n >= 8) {
        for (Py_ssize_t i = 0; i + 8 < n; i += 8) {
            if (!same8(a + i, b + i))
                return 0;
        }
        return same8(a + n - 8, b + n - 8);
    }
    if (n >= 4)
        return same4(a, b) && same4(a + n - 4, b + n - 4);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

/* Past a label value's closing quote (q is just after the opening one), or NULL when a
 * newline or a bad escape comes first or the text ends. Sets *escaped on an escape. */
static inline const char *
scan_label_value(const char *q, const char *end, int *escaped)
{
    for (;;) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'),
                      newline = _mm_set1_epi8('\n');
        while (end - q >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)q);
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                    _mm_cmpeq_epi8(v, slash)),
                                       _mm_cmpeq_epi8(v, newline));
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                q += __builtin_ctz((unsigned)mask);
                break;
            }
            q += 16;
        }
#endif
        while (q < end && *q != '"' && *q != '\\' && *q != '\n')
            q++;
        if (q >= end || *q == '\n')
            return NULL;
        if (*q == '"')
            return q + 1;
        if (end - q < 2 || (q[1] != '\\' && q[1] != 'n' && q[1] != '"'))
            return NULL;
        *escaped = 1;
        q += 2;
    }
}

/* One line from p, which is before `end` (the end of the body: *end is its NUL). Returns
 * past its newline and sets *close (where the suffix goes: the '}', or the space before
 * the value) and *escaped; NULL when the grammar does not take the line. */
static const char *
scan_line(const Grammar *g, const char *p, const char *end, const char **close, int *escaped)
{
    const char *q = NULL;
    int nonnegative = 0;
    for (Py_ssize_t i = 0; i < g->n_allowed; i++) {
        Py_ssize_t len = g->allowed[i].len;
        /* the name is exactly this one: it is followed by a character no name has */
        if (end - p > len && same(p, g->allowed[i].text, len) && !NAME_CHAR[(u8)p[len]]) {
            q = p + len;
            nonnegative = g->counter && g->allowed[i].total;
            break;
        }
    }
    if (q == NULL)
        return NULL;
    if (g->n_names) {
        if (*q++ != '{')
            return NULL;
        for (Py_ssize_t i = 0; i < g->n_names; i++) {
            const Name *label = &g->names[i];
            if (i && *q++ != ',')
                return NULL;
            if (end - q < label->len + 2 || !same(q, label->text, label->len))
                return NULL;
            q += label->len;
            if (q[0] != '=' || q[1] != '"')
                return NULL;
            q = scan_label_value(q + 2, end, escaped);
            if (q == NULL)
                return NULL;
        }
        if (*q != '}')
            return NULL;
        *close = q++;
    } else {
        *close = q;
    }
    if (*q++ != ' ')
        return NULL;
    q = scan_value(q, nonnegative);  /* stops at the NUL after the body at the latest */
    return q != NULL && q < end && *q == '\n' ? q + 1 : NULL;
}

/* Scans [start, limit) of a body of `size`; returns the end, or -1 (not taken), or -2
 * (out of memory). */
static Py_ssize_t
scan_run(const Grammar *g, const char *body, Py_ssize_t size, Py_ssize_t start,
         Py_ssize_t limit, Out *out)
{
    const char *p = body + start;
    const char *lim = body + limit;
    const char *end = body + size;
    const char *copied = p;
    int escaped = 0;
    while (p < lim && *p != '#') {
        const char *close;
        const char *next = scan_line(g, p, end, &close, &escaped);
        if (next == NULL || next > lim)
            return -1;  /* not taken (or past the limit): line by line */
        if (g->suffix_len) {
            if (escaped)
                return -1;
            if (out_put(out, copied, close - copied) < 0
                || out_put(out, g->insert, g->insert_len) < 0)
                return -2;
            copied = close;
        }
        p = next;
    }
    if (g->suffix_len && out_put(out, copied, p - copied) < 0)
        return -2;
    return p - body;
}

/* The ASCII text of each str in `tuple`, borrowed for as long as the tuple lives. */
static Name *
names_of(PyObject *tuple, const char *what)
{
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    Name *names = PyMem_Malloc(sizeof(Name) * (size_t)(n ? n : 1));
    if (names == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be ASCII str", what);
            PyMem_Free(names);
            return NULL;
        }
        names[i].text = (const char *)PyUnicode_DATA(item);
        names[i].len = PyUnicode_GET_LENGTH(item);
        names[i].total = ends_with_total(names[i].text, names[i].len);
    }
    return names;
}

static PyObject *
take_run(PyObject *module, PyObject *args)
{
    PyObject *body, *names_tuple, *allowed_tuple, *suffix;
    Py_ssize_t start, limit;
    int counter;
    if (!PyArg_ParseTuple(args, "UnnO!O!pU:take_run", &body, &start, &limit, &PyTuple_Type,
                          &names_tuple, &PyTuple_Type, &allowed_tuple, &counter, &suffix))
        return NULL;
    if (!PyUnicode_IS_ASCII(body) || !PyUnicode_IS_ASCII(suffix)) {
        PyErr_SetString(PyExc_TypeError, "body and suffix must be ASCII str");
        return NULL;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(body);
    if (start < 0 || limit < start || limit > size) {
        PyErr_SetString(PyExc_ValueError, "start and limit must satisfy 0 <= start <= limit <= len(body)");
        return NULL;
    }
    Name *names = names_of(names_tuple, "names");
    if (names == NULL)
        return NULL;
    Name *allowed = names_of(allowed_tuple, "allowed");
    if (allowed == NULL) {
        PyMem_Free(names);
        return NULL;
    }
    Grammar g = {
        names, PyTuple_GET_SIZE(names_tuple), allowed, PyTuple_GET_SIZE(allowed_tuple), counter,
        (const char *)PyUnicode_DATA(suffix), PyUnicode_GET_LENGTH(suffix), NULL, 0,
    };
    const char *text = (const char *)PyUnicode_DATA(body);
    Out out = {NULL, 0, 0};
    char *insert = NULL;
    if (g.suffix_len) {
        /* the run's size and a quarter more: about one reallocation for labels of ~15 bytes */
        Py_ssize_t cap = (limit - start) + (limit - start) / 4 + 4096;
        g.insert_len = g.suffix_len + (g.n_names ? 1 : 2);
        insert = PyMem_Malloc((size_t)g.insert_len);
        out.data = PyMem_RawMalloc((size_t)cap);
        if (insert == NULL || out.data == NULL) {
            PyMem_Free(names);
            PyMem_Free(allowed);
            PyMem_Free(insert);
            PyMem_RawFree(out.data);
            return PyErr_NoMemory();
        }
        out.cap = cap;
        insert[0] = g.n_names ? ',' : '{';
        memcpy(insert + 1, g.suffix, (size_t)g.suffix_len);
        if (!g.n_names)
            insert[g.insert_len - 1] = '}';
        g.insert = insert;
    }
    Py_ssize_t end;
    Py_BEGIN_ALLOW_THREADS
    end = scan_run(&g, text, size, start, limit, &out);
    Py_END_ALLOW_THREADS
    PyMem_Free(names);
    PyMem_Free(allowed);
    PyMem_Free(insert);
    PyObject *result = NULL;
    if (end == -2) {
        PyErr_NoMemory();
    } else if (end < 0) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *run = g.suffix_len ? PyUnicode_DecodeASCII(out.data, out.len, NULL)
                                     : PyUnicode_Substring(body, start, end);
        if (run != NULL) {
            result = Py_BuildValue("nN", end, run);
        }
    }
    PyMem_RawFree(out.data);
    return result;
}

/* split_created(chunk, created): the chunk's lines without and with the sample name
 * `created` (followed by '{' or ' '), each in their order. A counter's text exposition
 * writes them as two families; OpenMetrics writes them interleaved. */
static PyObject *
split_created(PyObject *module, PyObject *args)
{
    PyObject *chunk, *created;
    if (!PyArg_ParseTuple(args, "UU:split_created", &chunk, &created))
        return NULL;
    if (!PyUnicode_IS_ASCII(chunk) || !PyUnicode_IS_ASCII(created)) {
        PyErr_SetString(PyExc_TypeError, "chunk and created must be ASCII str");
        return NULL;
    }
    const char *text = (const char *)PyUnicode_DATA(chunk);
    Py_ssize_t size = PyUnicode_GET_LENGTH(chunk);
    const char *name = (const char *)PyUnicode_DATA(created);
    Py_ssize_t name_len = PyUnicode_GET_LENGTH(created);
    Out kept = {NULL, 0, 0}, moved = {NULL, 0, 0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    const char *p = text, *end = text + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        int is_created = next - p > name_len && memcmp(p, name, (size_t)name_len) == 0
                         && (p[name_len] == '{' || p[name_len] == ' ');
        if (out_put(is_created ? &moved : &kept, p, next - p) < 0) {
            failed = 1;
            break;
        }
        p = next;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (failed) {
        PyErr_NoMemory();
    } else if (moved.len == 0) {
        result = Py_BuildValue("Os", chunk, "");
    } else {
        PyObject *a = PyUnicode_DecodeASCII(kept.data ? kept.data : "", kept.len, NULL);
        PyObject *b = a ? PyUnicode_DecodeASCII(moved.data, moved.len, NULL) : NULL;
        if (b != NULL)
            result = PyTuple_Pack(2, a, b);
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    PyMem_RawFree(kept.data);
    PyMem_RawFree(moved.data);
    return result;
}

/* [a-zA-Z0-9_]: a label name (no ':') */
static inline int
label_char(u8 c, int first)
{
    return NAME_CHAR[c] && c != ':' && (!first || NAME_CHAR[c] == 3);
}

/* Past a metric name at p (or p itself: none) */
static inline const char *
scan_name(const char *p)
{
    if (NAME_CHAR[(u8)*p] != 3)
        return p;
    p++;
    while (NAME_CHAR[(u8)*p])
        p++;
    return p;
}

/* One sample line at p of a family allowed `allowed` names (suffixes of `family`): past its
 * newline, or NULL. Label names: at most 64 per line are checked for repeats. */
#define MAX_CHECKED_LABELS 64
/* The distinct label names of one family's sample lines, as spans of the body (at most
 * MAX_FAMILY_LABELS; past that `overflow`: the names are not reported). */
#define MAX_FAMILY_LABELS 64
typedef struct {
    const char *names[MAX_FAMILY_LABELS];
    Py_ssize_t lens[MAX_FAMILY_LABELS];
    int count;
    int overflow;
} LabelSet;

static inline void
label_set_add(LabelSet *set, const char *name, Py_ssize_t len, int hint)
{
    /* a family's lines mostly repeat the previous line's names in the same order */
    if (hint < set->count && set->lens[hint] == len
        && memcmp(set->names[hint], name, (size_t)len) == 0)
        return;
    for (int i = 0; i < set->count; i++) {
        if (set->lens[i] == len && memcmp(set->names[i], name, (size_t)len) == 0)
            return;
    }
    if (set->count == MAX_FAMILY_LABELS) {
        set->overflow = 1;
        return;
    }
    set->names[set->count] = name;
    set->lens[set->count++] = len;
}

/* The set's names as a tuple of str (None: overflowed), in first-seen order */
static PyObject *
label_set_tuple(const LabelSet *set)
{
    if (set->overflow)
        Py_RETURN_NONE;
    PyObject *tuple = PyTuple_New(set->count);
    if (tuple == NULL)
        return NULL;
    for (int i = 0; i < set->count; i++) {
        PyObject *name = PyUnicode_FromStringAndSize(set->names[i], set->lens[i]);
        if (name == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, name);
    }
    return tuple;
}

static const char *
scan_sample(const char *p, const char *end, const char *family, Py_ssize_t family_len,
            const char *const *suffixes, LabelSet *seen)
{
    const char *name_end = scan_name(p);
    Py_ssize_t len = name_end - p;
    if (len < family_len || memcmp(p, family, (size_t)family_len) != 0)
        return NULL;
    int allowed = 0;
    for (const char *const *suffix = suffixes; *suffix != NULL; suffix++) {
        Py_ssize_t n = (Py_ssize_t)strlen(*suffix);
        if (len == family_len + n && memcmp(p + family_len, *suffix, (size_t)n) == 0) {
            allowed = 1;
            break;
        }
    }
    if (!allowed)
        return NULL;
    const char *q = name_end;
    if (*q == '{') {
        const char *names[MAX_CHECKED_LABELS];
        Py_ssize_t lens[MAX_CHECKED_LABELS];
        int count = 0;
        q++;
        for (;;) {
            const char *label = q;
            if (!label_char((u8)*q, 1))
                return NULL;  /* also "{}": the line-by-line way drops the braces */
            q++;
            while (label_char((u8)*q, 0))
                q++;
            Py_ssize_t label_len = q - label;
            if (label_len == 8 && memcmp(label, "__name__", 8) == 0)
                return NULL;
            if (count == MAX_CHECKED_LABELS)
                return NULL;
            for (int i = 0; i < count; i++) {
                if (lens[i] == label_len && memcmp(names[i], label, (size_t)label_len) == 0)
                    return NULL;
            }
            names[count] = label;
            lens[count] = label_len;
            label_set_add(seen, label, label_len, count);
            count++;
            if (q[0] != '=' || q[1] != '"')
                return NULL;
            int escaped = 0;
            q = scan_label_value(q + 2, end, &escaped);
            if (q == NULL)
                return NULL;
            if (*q == '}')
                break;
            if (*q++ != ',')
                return NULL;
        }
        q++;
    }
    if (*q++ != ' ')
        return NULL;
    q = scan_value(q, 0);
    return q != NULL && q < end && *q == '\n' ? q + 1 : NULL;
}

static const char *const SIMPLE_SUFFIXES[] = {"", NULL};
static const char *const SUMMARY_SUFFIXES[] = {"", "_count", "_sum", "_created", NULL};
static const char *const HISTOGRAM_SUFFIXES[] = {"", "_bucket", "_count", "_sum", "_created", NULL};
static const char *const KINDS[] = {"counter", "gauge", "untyped", "summary", "histogram", NULL};

/* The kind of a TYPE line's rest at p (up to its newline): an index in KINDS, or -1 */
static int
kind_at(const char *p, const char *end, const char **after)
{
    for (int i = 0; KINDS[i] != NULL; i++) {
        size_t n = strlen(KINDS[i]);
        if ((size_t)(end - p) > n && memcmp(p, KINDS[i], n) == 0 && p[n] == '\n') {
            *after = p + n + 1;
            return i;
        }
    }
    return -1;
}

static inline int
blank_or_control(u8 c)
{
    return c <= ' ' || c == 0x7f;
}

static PyObject *
scan_text(PyObject *module, PyObject *args)
{
    PyObject *body;
    if (!PyArg_ParseTuple(args, "U:scan_text", &body))
        return NULL;
    if (!PyUnicode_IS_ASCII(body)) {
        PyErr_SetString(PyExc_TypeError, "body must be ASCII str");
        return NULL;
    }
    const char *text = (const char *)PyUnicode_DATA(body);
    Py_ssize_t size = PyUnicode_GET_LENGTH(body);
    const char *p = text, *end = text + size;
    if (size == 0 || end[-1] != '\n')
        Py_RETURN_NONE;
    PyObject *kinds[5];
    for (int i = 0; i < 5; i++)
        kinds[i] = NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (p < end) {
        const char *header = p, *help = NULL, *help_end = NULL;
        if (end - p > 7 && memcmp(p, "# HELP ", 7) == 0) {
            const char *name = p + 7, *name_end = scan_name(name);
            if (name_end == name || *name_end != ' ')
                goto unsupported;
            help = name_end + 1;
            help_end = memchr(help, '\n', (size_t)(end - help));
            if (help_end > help
                && (blank_or_control((u8)help[0]) || blank_or_control((u8)help_end[-1])))
                goto unsupported;
            if (memchr(help, '\\', (size_t)(help_end - help)) != NULL)
                goto unsupported;
            p = help_end + 1;
            /* the TYPE line must name the same family */
            Py_ssize_t name_len = name_end - name;
            if (end - p < 7 + name_len + 1 || memcmp(p, "# TYPE ", 7) != 0
                || memcmp(p + 7, name, (size_t)name_len) != 0 || p[7 + name_len] != ' ')
                goto unsupported;
        }
        if (end - p <= 7 || memcmp(p, "# TYPE ", 7) != 0)
            goto unsupported;
        const char *name = p + 7, *name_end = scan_name(name);
        Py_ssize_t name_len = name_end - name;
        if (name_len == 0 || *name_end != ' ')
            goto unsupported;
        const char *samples;
        int kind = kind_at(name_end + 1, end, &samples);
        if (kind < 0 || (kind == 0 && !ends_with_total(name, name_len)))
            goto unsupported;
        const char *const *suffixes = kind == 3 ? SUMMARY_SUFFIXES
                                      : kind == 4 ? HISTOGRAM_SUFFIXES
                                                  : SIMPLE_SUFFIXES;
        p = samples;
        LabelSet seen;
        seen.count = seen.overflow = 0;
        while (p < end && *p != '#') {
            p = scan_sample(p, end, name, name_len, suffixes, &seen);
            if (p == NULL)
                goto unsupported;
        }
        if (kinds[kind] == NULL && (kinds[kind] = PyUnicode_InternFromString(KINDS[kind])) == NULL)
            goto error;
        PyObject *name_obj = PyUnicode_Substring(body, name - text, name_end - text);
        PyObject *help_obj = help == NULL ? Py_NewRef(Py_None)
                                          : PyUnicode_Substring(body, help - text, help_end - text);
        PyObject *labels_obj = label_set_tuple(&seen);
        PyObject *item = name_obj && help_obj && labels_obj
                             ? Py_BuildValue("OOOnnnO", name_obj, kinds[kind], help_obj,
                                             header - text, samples - text, p - text,
                                             labels_obj)
                             : NULL;
        Py_XDECREF(name_obj);
        Py_XDECREF(help_obj);
        Py_XDECREF(labels_obj);
        if (item == NULL)
            goto error;
        int appended = PyList_Append(out, item);
        Py_DECREF(item);
        if (appended < 0)
            goto error;
    }
    for (int i = 0; i < 5; i++)
        Py_XDECREF(kinds[i]);
    return out;
unsupported:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(kinds[i]);
    Py_DECREF(out);
    Py_RETURN_NONE;
error:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(kinds[i]);
    Py_DECREF(out);
    return NULL;
}

/* apply_plan(chunks, olds, old_ends, order, news, new_ends, split): a merge target's
 * family relabelled by a remembered plan (sidecar/relabel/families.py; `_apply_plan` is
 * the same in Python). `olds` holds every input line's `name{labels}` and `news` every
 * output line's, one after the other in one ASCII str each (read in order: no object a
 * line to chase), line i ending at old_ends[i] (new_ends[k]), int64 buffers. Line i of
 * the ASCII `chunks` (each a run of whole lines) must be its old `name{labels}`, a space,
 * then a value without a space and '\n' (so the value is the line's last space on), and
 * the chunks must have exactly len(old_ends) lines. Output line k is the k-th new
 * `name{labels}` followed by the value of line order[k] (order: an int64 buffer, or None
 * for line k itself); the result is (output lines before `split`, those from it) as two
 * str, or None when a line does not match (the plan does not hold for this scrape). */
typedef struct {
    const char *text;
    Py_ssize_t len;
} Span;

/* A buffer of int64 ("q" or "l"): 0, or -1 with an error set. */
static int
int64_buffer(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL
        || (strcmp(view->format, "q") != 0 && strcmp(view->format, "l") != 0)) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a buffer of int64", what);
        return -1;
    }
    return 0;
}

/* ends[] cut text of length len into pieces: non-decreasing, the last one len */
static int
valid_ends(const int64_t *ends, Py_ssize_t n, Py_ssize_t len, const char *what)
{
    int64_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ends[i] < at) {
            PyErr_Format(PyExc_ValueError, "%s must not decrease", what);
            return -1;
        }
        at = ends[i];
    }
    if (at != len) {
        PyErr_Format(PyExc_ValueError, "%s must end where its text ends", what);
        return -1;
    }
    return 0;
}

static PyObject *
apply_plan(PyObject *module, PyObject *args)
{
    PyObject *chunks_arg, *olds, *old_ends_arg, *order_arg, *news, *new_ends_arg;
    Py_ssize_t split;
    if (!PyArg_ParseTuple(args, "OUOOUOn:apply_plan", &chunks_arg, &olds, &old_ends_arg,
                          &order_arg, &news, &new_ends_arg, &split))
        return NULL;
    if (!PyUnicode_IS_ASCII(olds) || !PyUnicode_IS_ASCII(news)) {
        PyErr_SetString(PyExc_TypeError, "olds and news must be ASCII str");
        return NULL;
    }
    Py_buffer old_ends, new_ends, order;
    if (int64_buffer(old_ends_arg, &old_ends, "old_ends") < 0)
        return NULL;
    if (int64_buffer(new_ends_arg, &new_ends, "new_ends") < 0) {
        PyBuffer_Release(&old_ends);
        return NULL;
    }
    int have_order = order_arg != Py_None;
    if (have_order && int64_buffer(order_arg, &order, "order") < 0) {
        PyBuffer_Release(&old_ends);
        PyBuffer_Release(&new_ends);
        return NULL;
    }
    PyObject *chunks = NULL, *result = NULL;
    Span *values = NULL;
    Py_ssize_t n_lines = old_ends.len / 8, n_out = new_ends.len / 8;
    const int64_t *o_ends = old_ends.buf, *n_ends = new_ends.buf;
    const char *o = (const char *)PyUnicode_DATA(olds);
    const char *n_text = (const char *)PyUnicode_DATA(news);
    if (valid_ends(o_ends, n_lines, PyUnicode_GET_LENGTH(olds), "old_ends") < 0
        || valid_ends(n_ends, n_out, PyUnicode_GET_LENGTH(news), "new_ends") < 0)
        goto done;
    if (have_order ? order.len / 8 != n_out : n_out != n_lines) {
        PyErr_SetString(PyExc_ValueError,
                        "order (or else old_ends) and new_ends must have one length");
        goto done;
    }
    if (split < 0 || split > n_out) {
        PyErr_SetString(PyExc_ValueError, "split must be within news");
        goto done;
    }
    chunks = PySequence_Fast(chunks_arg, "chunks must be a sequence");
    values = chunks ? PyMem_Malloc(sizeof(Span) * (size_t)(n_lines ? n_lines : 1)) : NULL;
    if (values == NULL) {
        if (chunks != NULL)
            PyErr_NoMemory();
        goto done;
    }
    /* every line: its old `name{labels}`, a space, a value without a space, '\n' */
    Py_ssize_t n_chunks = PySequence_Fast_GET_SIZE(chunks), line = 0;
    int64_t start = 0;
    for (Py_ssize_t c = 0; c < n_chunks; c++) {
        PyObject *chunk = PySequence_Fast_GET_ITEM(chunks, c);
        if (!PyUnicode_Check(chunk) || !PyUnicode_IS_ASCII(chunk)) {
            PyErr_SetString(PyExc_TypeError, "chunks must hold ASCII str");
            goto done;
        }
        const char *p = (const char *)PyUnicode_DATA(chunk);
        const char *end = p + PyUnicode_GET_LENGTH(chunk);
        while (p < end) {
            if (line == n_lines)
                goto mismatch;
            Py_ssize_t len = (Py_ssize_t)(o_ends[line] - start);
            if (end - p <= len || p[len] != ' ' || memcmp(p, o + start, (size_t)len) != 0)
                goto mismatch;
            const char *value = p + len, *q = value + 1;
            while (q < end && *q != '\n' && *q != ' ')
                q++;
            if (q == end || *q != '\n')
                goto mismatch;
            values[line].text = value;
            values[line].len = q + 1 - value;
            start = o_ends[line];
            line++;
            p = q + 1;
        }
    }
    if (line != n_lines)
        goto mismatch;
    const int64_t *at = have_order ? (const int64_t *)order.buf : NULL;
    Py_ssize_t sizes[2] = {split ? n_ends[split - 1] : 0, 0};
    sizes[1] = PyUnicode_GET_LENGTH(news) - sizes[0];
    for (Py_ssize_t k = 0; k < n_out; k++) {
        int64_t i = at ? at[k] : k;
        if (i < 0 || i >= n_lines) {
            PyErr_SetString(PyExc_IndexError, "order names a line the chunks do not have");
            goto done;
        }
        sizes[k >= split] += values[i].len;
    }
    PyObject *parts[2] = {PyUnicode_New(sizes[0], 127), NULL};
    parts[1] = parts[0] ? PyUnicode_New(sizes[1], 127) : NULL;
    if (parts[1] == NULL) {
        Py_XDECREF(parts[0]);
        goto done;
    }
    int64_t from = 0;
    for (int part = 0; part < 2; part++) {
        char *w = (char *)PyUnicode_DATA(parts[part]);
        for (Py_ssize_t k = part ? split : 0; k < (part ? n_out : split); k++) {
            const Span *v = &values[at ? at[k] : k];
            memcpy(w, n_text + from, (size_t)(n_ends[k] - from));
            w += n_ends[k] - from;
            from = n_ends[k];
            memcpy(w, v->text, (size_t)v->len);
            w += v->len;
        }
    }
    result = PyTuple_Pack(2, parts[0], parts[1]);
    Py_DECREF(parts[0]);
    Py_DECREF(parts[1]);
    goto done;
mismatch:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(values);
    Py_XDECREF(chunks);
    PyBuffer_Release(&old_ends);
    PyBuffer_Release(&new_ends);
    if (have_order)
        PyBuffer_Release(&order);
    return result;
}

static PyMethodDef runs_methods[] = {
    {"apply_plan", apply_plan, METH_VARARGS,
     "apply_plan(chunks, olds, old_ends, order, news, new_ends, split) -> (str, str) | None"},
    {"scan_text", scan_text, METH_VARARGS,
     "scan_text(body) -> [(name, kind, help, header, start, end), ...] | None"},
    {"split_created", split_created, METH_VARARGS,
     "split_created(chunk, created) -> (lines without created, lines with it)"},
    {"take_run", take_run, METH_VARARGS,
     "take_run(body, start, limit, names, allowed, counter, suffix) -> (end, text) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef runs_module = {
    PyModuleDef_HEAD_INIT,
    "sidecar.merge._runs",
    "Proving a run of a merge target's sample lines (see rawtext.py).",
    -1,
    runs_methods,
};

PyMODINIT_FUNC
PyInit__runs(void)
{
    init_tables();
    return PyModule_Create(&runs_module);
}
