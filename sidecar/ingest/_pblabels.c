/* sidecar.ingest._pblabels: a stored series' label text as protobuf LabelPair fields, in C.
 *
 * encode(text) returns the bytes sidecar.protobuf.labels_bytes(parse_labels(text)) writes
 * (each label as field 1 of a Metric: tag, length, then a LabelPair of name (1) and
 * value (2)) for label text as the store writes it:
 *
 *     n1="v1",n2="v2"       (a name may be quoted, "n.1"="v1", when UTF-8 names are kept)
 *
 * It returns None for anything else, where the Python side (parse_labels) decides: a
 * backslash anywhere (escapes), a label name twice (a dict keeps one), more than
 * MAX_PAIRS labels, or text that is not in that form. Without a backslash no quoted part
 * holds a '"', so the first '"' after a value's opening one ends it. The text's UTF-8
 * bytes are written as they are (CPython keeps an ASCII str's UTF-8 in place).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_PAIRS 128

typedef struct {
    const char *name, *value;
    Py_ssize_t name_len, value_len, inner;
} pair_t;

static Py_ssize_t
varint_len(Py_ssize_t value)
{
    Py_ssize_t n = 1;
    while (value > 0x7F) {
        value >>= 7;
        n++;
    }
    return n;
}

static char *
put_varint(char *out, Py_ssize_t value)
{
    while (value > 0x7F) {
        *out++ = (char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *out++ = (char)value;
    return out;
}

static PyObject *
encode(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "encode() takes a str");
        return NULL;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &size);
    if (text == NULL)
        return NULL;
    if (size == 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    if (memchr(text, '\\', (size_t)size) != NULL)
        Py_RETURN_NONE;
    pair_t pairs[MAX_PAIRS];
    int count = 0;
    Py_ssize_t total = 0;
    const char *at = text, *end = text + size;
    for (;;) {
        if (count == MAX_PAIRS)
            Py_RETURN_NONE;
        pair_t *p = &pairs[count];
        if (*at == '"') {  /* a quoted name: up to the next '"', then '=' */
            const char *close = memchr(at + 1, '"', (size_t)(end - at - 1));
            if (close == NULL || close + 1 >= end || close[1] != '=')
                Py_RETURN_NONE;
            p->name = at + 1;
            p->name_len = close - at - 1;
            at = close + 2;
        } else {  /* [a-zA-Z_][a-zA-Z0-9_]*, then '=' */
            const char *start = at;
            while (at < end && (*at == '_' || (*at >= 'a' && *at <= 'z') ||
                                (*at >= 'A' && *at <= 'Z') ||
                                (at > start && *at >= '0' && *at <= '9')))
                at++;
            if (at == start || at >= end || *at != '=')
                Py_RETURN_NONE;
            p->name = start;
            p->name_len = at - start;
            at++;
        }
        if (at >= end || *at != '"')
            Py_RETURN_NONE;
        at++;
        const char *close = memchr(at, '"', (size_t)(end - at));
        if (close == NULL || memchr(at, '\n', (size_t)(close - at)) != NULL)
            Py_RETURN_NONE;
        p->value = at;
        p->value_len = close - at;
        for (int i = 0; i < count; i++)
            if (pairs[i].name_len == p->name_len &&
                memcmp(pairs[i].name, p->name, (size_t)p->name_len) == 0)
                Py_RETURN_NONE;
        p->inner = 1 + varint_len(p->name_len) + p->name_len + 1 + varint_len(p->value_len) +
                   p->value_len;
        total += 1 + varint_len(p->inner) + p->inner;
        count++;
        at = close + 1;
        if (at == end)
            break;
        if (*at != ',' || at + 1 == end)
            Py_RETURN_NONE;
        at++;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (int i = 0; i < count; i++) {
        pair_t *p = &pairs[i];
        *w++ = 0x0A;
        w = put_varint(w, p->inner);
        *w++ = 0x0A;
        w = put_varint(w, p->name_len);
        memcpy(w, p->name, (size_t)p->name_len);
        w += p->name_len;
        *w++ = 0x12;
        w = put_varint(w, p->value_len);
        memcpy(w, p->value, (size_t)p->value_len);
        w += p->value_len;
    }
    return out;
}

static PyMethodDef pblabels_methods[] = {
    {"encode", encode, METH_O, "encode(text) -> LabelPair fields | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pblabels_module = {
    PyModuleDef_HEAD_INIT,
    "sidecar.ingest._pblabels",
    "A stored series' label text as protobuf LabelPair fields (see pbencode.py).",
    -1,
    pblabels_methods,
};

PyMODINIT_FUNC
PyInit__pblabels(void)
{
    return PyModule_Create(&pblabels_module);
}
