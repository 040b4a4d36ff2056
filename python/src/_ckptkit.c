/*
 * _ckptkit.c -- the C core of the ckptkit Python package, over the public API
 * (ckptkit.h) only, in the stable ABI of CPython 3.11 (one abi3 module serves
 * every later CPython).
 *
 * Objects:
 *  - Model: owns one ck_ctx and one ck_model (the mapped file). Views of
 *    tensor bytes hold a reference to it, so the mapping lives as long as any
 *    view; close() only marks it closed (every later call raises), the
 *    mapping is unmapped when the last reference goes.
 *  - Buffer: a buffer-protocol exporter for one tensor's bytes in the mapping
 *    (numpy.frombuffer / torch.frombuffer keep it alive through their base).
 *    Files are mapped copy-on-write and writable, so writes into a view stay in
 *    this process.
 * Functions: write (tensors held by Python -> a file, through ck_model_add and
 * ck_convert), convert, verify, diff, scan.
 *
 * Threads: the GIL is released around every library call that reads, casts
 * or writes; calls on one Model are serialised by its own lock (the context's
 * error message is per model). Library messages are copied out under that
 * lock. Errors become exceptions in one place (raise_status).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ckptkit.h"

/* ---- exceptions ------------------------------------------------------------ */

static PyObject *Error, *FormatError, *UnsupportedError, *UnsafeError, *LimitError,
    *ArgumentError, *SameFileError, *CancelledError, *Warning_;

static PyObject *OrderedDict_; /* collections.OrderedDict */

/* Raises the exception for ST with MSG (the library's one-line message). */
static PyObject *raise_status(ck_status st, const char *msg)
{
    PyObject *type = Error;
    if (!msg || !*msg) msg = ck_status_name(st);
    switch (st) {
    case CK_EFORMAT: type = FormatError; break;
    case CK_EUNSUPPORTED: type = UnsupportedError; break;
    case CK_EUNSAFE: type = UnsafeError; break;
    case CK_ELIMIT: type = LimitError; break;
    case CK_EARG: type = ArgumentError; break;
    case CK_ESAMEFILE: type = SameFileError; break;
    case CK_EINTR: type = CancelledError; break;
    case CK_EEXIST: type = PyExc_FileExistsError; break;
    case CK_ENOMEM: type = PyExc_MemoryError; break;
    case CK_ENOTFOUND: type = PyExc_KeyError; break;
    case CK_EIO:
        type = strstr(msg, strerror(ENOENT))   ? PyExc_FileNotFoundError
               : strstr(msg, strerror(EACCES)) ? PyExc_PermissionError
               : strstr(msg, strerror(EISDIR)) ? PyExc_IsADirectoryError
                                               : PyExc_OSError;
        break;
    default: break;
    }
    PyErr_SetString(type, msg);
    return NULL;
}

/* ---- warnings and progress, collected while the GIL is released ------------- */

typedef struct callbacks {
    PyObject *progress; /* callable(done, total) or NULL */
    int raised;         /* the progress callable raised: its exception is set */
    char *warnings;     /* '\n'-separated, malloc'd */
    size_t wlen;
} callbacks;

static void on_warn(void *user, const char *msg)
{
    callbacks *cb = user;
    size_t n = strlen(msg);
    char *p = realloc(cb->warnings, cb->wlen + n + 2);
    if (!p) return;
    memcpy(p + cb->wlen, msg, n);
    p[cb->wlen + n] = '\n';
    p[cb->wlen + n + 1] = 0;
    cb->warnings = p;
    cb->wlen += n + 1;
}

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    callbacks *cb = user;
    PyGILState_STATE g;
    PyObject *r;
    int stop = 0;
    if (!cb->progress || cb->raised) return cb->raised;
    g = PyGILState_Ensure();
    r = PyObject_CallFunction(cb->progress, "KK", (unsigned long long)done,
                              (unsigned long long)total);
    if (!r) {
        cb->raised = 1;
        stop = 1;
    } else {
        stop = r == Py_False ? 1 : 0; /* returning False cancels */
        Py_DECREF(r);
    }
    PyGILState_Release(g);
    return stop;
}

static void callbacks_attach(callbacks *cb, ck_ctx *ctx, PyObject *progress)
{
    memset(cb, 0, sizeof *cb);
    cb->progress = progress && progress != Py_None ? progress : NULL;
    ck_ctx_set_warn(ctx, on_warn, cb);
    ck_ctx_set_progress(ctx, on_progress, cb);
}

/* Emits the collected warnings as ckptkit.Warning; detaches. -1 if a warning
 * was turned into an error. */
static int callbacks_finish(callbacks *cb, ck_ctx *ctx)
{
    int rc = 0;
    ck_ctx_set_warn(ctx, NULL, NULL);
    ck_ctx_set_progress(ctx, NULL, NULL);
    if (cb->warnings) {
        char *line = cb->warnings;
        while (*line && !rc) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            if (!PyErr_Occurred() && PyErr_WarnEx(Warning_, line, 2) < 0) rc = -1;
            line = nl ? nl + 1 : line + strlen(line);
        }
        free(cb->warnings);
        cb->warnings = NULL;
    }
    return rc;
}

/* ---- Model -------------------------------------------------------------------- */

typedef struct ModelObject {
    PyObject_HEAD
    ck_ctx *ctx;
    ck_model *m;
    PyThread_type_lock lock;
    int closed;
    int writable;   /* mapped copy-on-write and writable: views may be written */
    PyObject *data; /* bytes object a model opened from memory reads; owned */
} ModelObject;

static PyObject *ModelType, *BufferType;
static long live_models; /* models whose mapping is still held (for tests) */

static int model_check(ModelObject *self)
{
    if (!self->m || self->closed) {
        PyErr_SetString(PyExc_ValueError, "ckptkit: the checkpoint is closed");
        return -1;
    }
    return 0;
}

static const char *str_or_null(PyObject *o)
{
    if (!o || o == Py_None) return NULL;
    return PyUnicode_AsUTF8AndSize(o, NULL);
}

static int fill_open_opts(PyObject *kw, ck_open_opts *o)
{
    PyObject *v;
    memset(o, 0, sizeof *o);
    o->map_writable = 1;
    if (!kw) return 0;
#define STROPT(field)                                                                              \
    if ((v = PyDict_GetItemString(kw, #field)) && v != Py_None) {                                 \
        if (!(o->field = PyUnicode_AsUTF8AndSize(v, NULL))) return -1;                            \
    }
#define BOOLOPT(field)                                                                             \
    if ((v = PyDict_GetItemString(kw, #field))) {                                                  \
        int b = PyObject_IsTrue(v);                                                                \
        if (b < 0) return -1;                                                                      \
        o->field = b;                                                                              \
    }
    STROPT(format)
    STROPT(key)
    STROPT(manifest)
    BOOLOPT(all)
    BOOLOPT(verify_crc)
    BOOLOPT(allow_unsafe)
    BOOLOPT(values)
#undef STROPT
#undef BOOLOPT
    if ((v = PyDict_GetItemString(kw, "writable"))) {
        int b = PyObject_IsTrue(v);
        if (b < 0) return -1;
        o->map_writable = b;
    }
    return 0;
}

/* Model(path, **open options) or Model(None, data=bytes, name=..., **options) */
static PyObject *Model_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *pathobj = NULL, *path_bytes = NULL, *data = NULL;
    ModelObject *self;
    ck_open_opts o;
    callbacks cb;
    ck_status st;
    const char *path;
    char msg[1024] = "";
    Py_buffer buf;
    int have_buf = 0;

    if (!PyArg_ParseTuple(args, "O", &pathobj)) return NULL;
    if (fill_open_opts(kw, &o) < 0) return NULL;
    if (kw) data = PyDict_GetItemString(kw, "data");
    if (data && data != Py_None) {
        PyObject *name = kw ? PyDict_GetItemString(kw, "name") : NULL;
        path = name && name != Py_None ? PyUnicode_AsUTF8AndSize(name, NULL) : "<bytes>";
        if (!path) return NULL;
        if (PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) < 0) return NULL;
        have_buf = 1;
    } else {
        if (!PyUnicode_FSConverter(pathobj, &path_bytes)) return NULL;
        path = PyBytes_AsString(path_bytes);
        if (!path) {
            Py_DECREF(path_bytes);
            return NULL;
        }
    }
    self = (ModelObject *)PyType_GenericAlloc(type, 0);
    if (!self) goto fail;
    self->ctx = ck_ctx_new();
    self->lock = PyThread_allocate_lock();
    if (!self->ctx || !self->lock) {
        PyErr_NoMemory();
        goto fail;
    }
    callbacks_attach(&cb, self->ctx, NULL);
    Py_BEGIN_ALLOW_THREADS
    if (have_buf)
        st = ck_model_open_memory(self->ctx, path, buf.buf, (uint64_t)buf.len, &o, &self->m);
    else
        st = ck_model_open(self->ctx, path, &o, &self->m);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(self->ctx));
    Py_END_ALLOW_THREADS
    if (callbacks_finish(&cb, self->ctx) < 0) goto fail;
    if (st) {
        raise_status(st, msg);
        goto fail;
    }
    live_models++;
    self->writable = o.map_writable && !have_buf;
    if (have_buf) {
        /* the model reads these bytes until it is closed: keep them */
        self->data = data;
        Py_INCREF(data);
        PyBuffer_Release(&buf);
    }
    Py_XDECREF(path_bytes);
    return (PyObject *)self;
fail:
    if (have_buf) PyBuffer_Release(&buf);
    Py_XDECREF(path_bytes);
    Py_XDECREF(self);
    return NULL;
}

static void Model_dealloc(ModelObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    freefunc f;
    if (self->m) live_models--;
    ck_model_close(self->m);
    ck_ctx_free(self->ctx);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_XDECREF(self->data);
    f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(self);
    Py_DECREF(tp);
}

static PyObject *Model_close(ModelObject *self, PyObject *unused)
{
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *Model_get_closed(ModelObject *self, void *unused)
{
    return PyBool_FromLong(self->closed || !self->m);
}

static PyObject *Model_get_format(ModelObject *self, void *unused)
{
    if (model_check(self)) return NULL;
    return PyUnicode_FromString(ck_model_format(self->m));
}

static PyObject *Model_get_path(ModelObject *self, void *unused)
{
    if (model_check(self)) return NULL;
    return PyUnicode_DecodeFSDefault(ck_model_path(self->m));
}

static PyObject *Model_count(ModelObject *self, PyObject *unused)
{
    if (model_check(self)) return NULL;
    return PyLong_FromSize_t(ck_model_tensor_count(self->m));
}

/* A C string from the library (a tensor name, a metadata key or value, JSON)
 * as str: UTF-8, with bytes that are not UTF-8 kept as lone surrogates, so that
 * no name is refused or changed on the way. */
static PyObject *text(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "surrogateescape");
}

static PyObject *Model_names(ModelObject *self, PyObject *unused)
{
    size_t n;
    PyObject *list;
    if (model_check(self)) return NULL;
    n = ck_model_tensor_count(self->m);
    list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        ck_tensor_info ti;
        PyObject *s;
        ck_model_tensor(self->m, i, &ti);
        s = text(ti.name);
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, (Py_ssize_t)i, s);
    }
    return list;
}

static PyObject *shape_tuple(int ndim, const int64_t *v)
{
    PyObject *t = PyTuple_New(ndim);
    if (!t) return NULL;
    for (int d = 0; d < ndim; d++) {
        PyObject *x = PyLong_FromLongLong(v[d]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SetItem(t, d, x);
    }
    return t;
}

static int index_arg(ModelObject *self, PyObject *arg, size_t *i)
{
    size_t n = ck_model_tensor_count(self->m);
    if (PyLong_Check(arg)) {
        Py_ssize_t k = PyLong_AsSsize_t(arg);
        if (k == -1 && PyErr_Occurred()) return -1;
        if (k < 0 || (size_t)k >= n) {
            PyErr_Format(PyExc_IndexError, "tensor index %zd out of range (%zu tensors)", k, n);
            return -1;
        }
        *i = (size_t)k;
        return 0;
    }
    if (PyUnicode_Check(arg)) {
        const char *name = PyUnicode_AsUTF8AndSize(arg, NULL);
        if (!name) return -1;
        if (ck_model_find(self->m, name, i) != CK_OK) {
            PyErr_SetObject(PyExc_KeyError, arg);
            return -1;
        }
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "a tensor is named by a str or an int index");
    return -1;
}

/* find(name) -> index; KeyError if absent. */
static PyObject *Model_find(ModelObject *self, PyObject *arg)
{
    size_t i;
    if (model_check(self) || index_arg(self, arg, &i)) return NULL;
    return PyLong_FromSize_t(i);
}

/* info(i) -> (name, dtype, shape, strides or None, storage_offset, numel, nbytes, storage_id,
 *             file_offset, zero_copy) */
static PyObject *Model_info(ModelObject *self, PyObject *arg)
{
    size_t i;
    ck_tensor_info ti;
    PyObject *shape, *strides;
    unsigned bits;
    const void *p;
    int zc;
    if (model_check(self) || index_arg(self, arg, &i)) return NULL;
    ck_model_tensor(self->m, i, &ti);
    bits = ck_dtype_bits(ti.dtype);
    p = ck_model_data(self->m, i);
    /* block-quantised types (bits 0) have no element view: they are dequantised */
    zc = p && !self->data && bits && bits % 8 == 0 && ((uintptr_t)p % (bits >= 64 ? 8 : bits / 8 ? bits / 8 : 1)) == 0;
    shape = shape_tuple(ti.ndim, ti.shape);
    if (!shape) return NULL;
    if (ti.strides) {
        strides = shape_tuple(ti.ndim, ti.strides);
        if (!strides) {
            Py_DECREF(shape);
            return NULL;
        }
    } else {
        strides = Py_None;
        Py_INCREF(strides);
    }
    return Py_BuildValue("(NsNNKKKKKN)",
                         text(ti.name),
                         ck_dtype_name(ti.dtype), shape, strides,
                         (unsigned long long)ti.storage_offset, (unsigned long long)ti.numel,
                         (unsigned long long)ti.nbytes, (unsigned long long)ti.storage_id,
                         (unsigned long long)ti.file_offset, PyBool_FromLong(zc));
}

static PyObject *Model_metadata(ModelObject *self, PyObject *unused)
{
    PyObject *d;
    size_t n;
    if (model_check(self)) return NULL;
    d = PyDict_New();
    n = ck_model_meta_count(self->m);
    for (size_t i = 0; d && i < n; i++) {
        const char *k, *v;
        PyObject *ko, *vo;
        ck_model_meta(self->m, i, &k, &v);
        ko = text(k);
        vo = text(v);
        if (!ko || !vo || PyDict_SetItem(d, ko, vo) < 0) {
            Py_XDECREF(ko);
            Py_XDECREF(vo);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(ko);
        Py_DECREF(vo);
    }
    return d;
}

static PyObject *Model_values_json(ModelObject *self, PyObject *unused)
{
    const char *j;
    if (model_check(self)) return NULL;
    j = ck_model_values_json(self->m);
    return text(j);
}

/* ---- Buffer: one tensor's bytes in the mapping -------------------------------- */

typedef struct BufferObject {
    PyObject_HEAD
    PyObject *owner; /* the Model */
    void *ptr;
    Py_ssize_t len;
    int readonly;
} BufferObject;

static int Buffer_getbuffer(BufferObject *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, self->ptr, self->len, self->readonly, flags);
}

static void Buffer_dealloc(BufferObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    Py_XDECREF(self->owner);
    f(self);
    Py_DECREF(tp);
}

static PyObject *Buffer_get_address(BufferObject *self, void *unused)
{
    return PyLong_FromVoidPtr(self->ptr);
}

static PyObject *Buffer_get_nbytes(BufferObject *self, void *unused)
{
    return PyLong_FromSsize_t(self->len);
}

static PyGetSetDef Buffer_getset[] = {
    {"address", (getter)Buffer_get_address, NULL, "address of the first byte", NULL},
    {"nbytes", (getter)Buffer_get_nbytes, NULL, "length in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Buffer_slots[] = {
    {Py_bf_getbuffer, (void *)Buffer_getbuffer},
    {Py_tp_dealloc, (void *)Buffer_dealloc},
    {Py_tp_getset, Buffer_getset},
    {Py_tp_doc, "The bytes of one tensor inside a mapped checkpoint (buffer protocol). "
                "Keeps the checkpoint mapped while it lives."},
    {0, NULL},
};

static PyType_Spec Buffer_spec = {
    "ckptkit._ckptkit.Buffer", sizeof(BufferObject), 0, Py_TPFLAGS_DEFAULT, Buffer_slots,
};

static PyObject *make_view(ModelObject *self, size_t i);

/* view(i) -> Buffer over the tensor's bytes in place, or None when the tensor
 * is not usable as stored (strided, big-endian, compressed, misaligned, sub-byte). */
static PyObject *Model_view(ModelObject *self, PyObject *arg)
{
    size_t i;
    if (model_check(self) || index_arg(self, arg, &i)) return NULL;
    return make_view(self, i);
}

/* entries() -> [(name, dtype, shape, view or None, file_offset + storage offset)] for
 * every tensor in file order: what a whole-file load needs, in one call. */
static PyObject *Model_entries(ModelObject *self, PyObject *unused)
{
    size_t n;
    PyObject *list;
    if (model_check(self)) return NULL;
    n = ck_model_tensor_count(self->m);
    list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        ck_tensor_info ti;
        PyObject *e;
        ck_model_tensor(self->m, i, &ti);
        e = Py_BuildValue("(NsNNK)",
                          text(ti.name),
                          ck_dtype_name(ti.dtype), shape_tuple(ti.ndim, ti.shape),
                          make_view(self, i),
                          (unsigned long long)(ti.file_offset +
                                               ti.storage_offset * (ck_dtype_bits(ti.dtype) / 8)));
        if (!e) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, (Py_ssize_t)i, e);
    }
    return list;
}

static PyObject *make_view(ModelObject *self, size_t i)
{
    ck_tensor_info ti;
    const void *p;
    unsigned bits, align;
    BufferObject *b;
    ck_model_tensor(self->m, i, &ti);
    p = ck_model_data(self->m, i);
    bits = ck_dtype_bits(ti.dtype);
    /* bytes objects are immutable: no writable views into them */
    if (!p || !bits || bits % 8 || self->data) Py_RETURN_NONE;
    align = bits >= 64 ? 8 : bits / 8;
    if (align > 1 && (uintptr_t)p % align) Py_RETURN_NONE;
    if (ti.nbytes > (uint64_t)PY_SSIZE_T_MAX) Py_RETURN_NONE;
    b = (BufferObject *)PyType_GenericAlloc((PyTypeObject *)BufferType, 0);
    if (!b) return NULL;
    b->owner = (PyObject *)self;
    Py_INCREF(self);
    b->ptr = (void *)p;
    b->len = (Py_ssize_t)ti.nbytes;
    b->readonly = !self->writable;
    return (PyObject *)b;
}

/* read(i, first=0, count=-1, dtype=None) -> bytearray with the elements
 * [first, first+count) in row-major order, cast to DTYPE when given. */
static PyObject *Model_read(ModelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"index", "first", "count", "dtype", NULL};
    PyObject *arg, *dtobj = Py_None, *out;
    unsigned long long first = 0;
    long long count = -1;
    size_t i;
    ck_tensor_info ti;
    ck_dtype as = CK_DT_KEEP, eff;
    uint64_t nbytes;
    ck_status st;
    char msg[1024] = "";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|KLO", kwlist, &arg, &first, &count, &dtobj))
        return NULL;
    if (model_check(self) || index_arg(self, arg, &i)) return NULL;
    ck_model_tensor(self->m, i, &ti);
    if (dtobj != Py_None) {
        const char *s = PyUnicode_AsUTF8AndSize(dtobj, NULL);
        if (!s) return NULL;
        if (ck_dtype_parse(s, &as)) {
            PyErr_Format(ArgumentError, "unknown dtype '%s'", s);
            return NULL;
        }
    }
    if (first > ti.numel) first = ti.numel;
    if (count < 0 || (uint64_t)count > ti.numel - first) count = (long long)(ti.numel - first);
    eff = as == CK_DT_KEEP ? ti.dtype : as;
    if (ck_dtype_bits(eff) == 0) { /* a block-quantised type: whole blocks of it */
        unsigned bb, blk = ck_dtype_block(eff, &bb);
        if (first || (uint64_t)count != ti.numel || !blk || ti.numel % blk) {
            PyErr_Format(UnsupportedError,
                         "tensor '%s': %s values can only be read whole, in whole blocks",
                         ti.name, ck_dtype_name(eff));
            return NULL;
        }
        nbytes = eff == ti.dtype ? ti.nbytes : ti.numel / blk * bb;
    } else if (ck_dtype_bits(eff) % 8) {
        if (first || (uint64_t)count != ti.numel) {
            PyErr_Format(UnsupportedError, "tensor '%s': %s values can only be read whole",
                         ti.name, ck_dtype_name(eff));
            return NULL;
        }
        nbytes = ti.nbytes;
    } else {
        nbytes = (uint64_t)count * (ck_dtype_bits(eff) / 8);
    }
    if (nbytes > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
    out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)nbytes);
    if (!out) return NULL;
    {
        char *dst = PyByteArray_AsString(out);
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        st = ck_model_read(self->m, i, first, (uint64_t)count, as, dst, (size_t)nbytes);
        if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(self->ctx));
        PyThread_release_lock(self->lock);
        Py_END_ALLOW_THREADS
    }
    if (st) {
        Py_DECREF(out);
        return raise_status(st, msg);
    }
    return out;
}

/* ---- the value tree --------------------------------------------------------- */

typedef struct builder {
    PyObject *factory; /* methods: tensor, array, dtype, npdtype, device, size, storage,
                          global_, opaque */
    PyObject *memo;    /* node address -> object */
    PyObject *busy;    /* addresses of tuples being built (a tuple inside itself) */
} builder;

static PyObject *build(builder *b, const ck_value *v);

static PyObject *str_of(const ck_value *v)
{
    return PyUnicode_DecodeUTF8(v->s ? v->s : "", (Py_ssize_t)v->len, "surrogatepass");
}

static int fill_seq(builder *b, const ck_value *v, PyObject **items)
{
    for (uint32_t k = 0; k < v->count; k++) {
        items[k] = build(b, v->items[k]);
        if (!items[k]) {
            while (k-- > 0) Py_DECREF(items[k]);
            return -1;
        }
    }
    return 0;
}

static PyObject *build_inner(builder *b, const ck_value *v, PyObject *key)
{
    PyObject *o = NULL;
    switch (v->kind) {
    case CK_VALUE_NONE: Py_RETURN_NONE;
    case CK_VALUE_BOOL: return PyBool_FromLong((long)v->i);
    case CK_VALUE_INT: return PyLong_FromLongLong(v->i);
    case CK_VALUE_FLOAT: return PyFloat_FromDouble(v->f[0]);
    case CK_VALUE_COMPLEX: return PyComplex_FromDoubles(v->f[0], v->f[1]);
    case CK_VALUE_BIGINT: {
        PyObject *bytes = PyBytes_FromStringAndSize(v->s, (Py_ssize_t)v->len);
        PyObject *fb, *a, *k;
        if (!bytes) return NULL;
        fb = PyObject_GetAttrString((PyObject *)&PyLong_Type, "from_bytes");
        a = Py_BuildValue("(Ns)", bytes, "little");
        k = Py_BuildValue("{sO}", "signed", Py_True);
        if (fb && a && k) o = PyObject_Call(fb, a, k);
        Py_XDECREF(fb);
        Py_XDECREF(a);
        Py_XDECREF(k);
        return o;
    }
    case CK_VALUE_STR:
        o = str_of(v);
        if (o && (v->flags & CK_VALUE_F_DEVICE)) {
            PyObject *d = PyObject_CallMethod(b->factory, "device", "(O)", o);
            Py_DECREF(o);
            return d;
        }
        return o;
    case CK_VALUE_BYTES: return PyBytes_FromStringAndSize(v->s, (Py_ssize_t)v->len);
    case CK_VALUE_TUPLE:
    case CK_VALUE_SLICE: {
        PyObject **items;
        if (PySet_Add(b->busy, key) < 0) return NULL;
        items = PyMem_Calloc(v->count ? v->count : 1, sizeof *items);
        if (!items) return PyErr_NoMemory();
        if (fill_seq(b, v, items) < 0) {
            PyMem_Free(items);
            return NULL;
        }
        if (PySet_Discard(b->busy, key) < 0) {
            for (uint32_t k = 0; k < v->count; k++) Py_DECREF(items[k]);
            PyMem_Free(items);
            return NULL;
        }
        if (v->kind == CK_VALUE_SLICE) {
            o = v->count == 3 ? PySlice_New(items[0], items[1], items[2]) : NULL;
            if (v->count != 3) PyErr_SetString(FormatError, "slice without three items");
            for (uint32_t k = 0; k < v->count; k++) Py_DECREF(items[k]);
        } else {
            o = PyTuple_New(v->count);
            for (uint32_t k = 0; k < v->count; k++) {
                if (o) PyTuple_SetItem(o, k, items[k]);
                else Py_DECREF(items[k]);
            }
            if (o && (v->flags & CK_VALUE_F_SIZE)) {
                PyObject *s = PyObject_CallMethod(b->factory, "size", "(O)", o);
                Py_DECREF(o);
                o = s;
            }
        }
        PyMem_Free(items);
        return o;
    }
    case CK_VALUE_LIST:
        o = PyList_New(0);
        if (!o || PyDict_SetItem(b->memo, key, o) < 0) goto fail;
        for (uint32_t k = 0; k < v->count; k++) {
            PyObject *x = build(b, v->items[k]);
            if (!x || PyList_Append(o, x) < 0) {
                Py_XDECREF(x);
                goto fail;
            }
            Py_DECREF(x);
        }
        return o;
    case CK_VALUE_SET:
        if (v->flags & CK_VALUE_F_FROZEN) {
            PyObject *tmp = PySet_New(NULL);
            for (uint32_t k = 0; tmp && k < v->count; k++) {
                PyObject *x = build(b, v->items[k]);
                if (!x || PySet_Add(tmp, x) < 0) {
                    Py_XDECREF(x);
                    Py_CLEAR(tmp);
                    break;
                }
                Py_DECREF(x);
            }
            if (!tmp) return NULL;
            o = PyFrozenSet_New(tmp);
            Py_DECREF(tmp);
            return o;
        }
        o = PySet_New(NULL);
        if (!o || PyDict_SetItem(b->memo, key, o) < 0) goto fail;
        for (uint32_t k = 0; k < v->count; k++) {
            PyObject *x = build(b, v->items[k]);
            if (!x || PySet_Add(o, x) < 0) {
                Py_XDECREF(x);
                goto fail;
            }
            Py_DECREF(x);
        }
        return o;
    case CK_VALUE_DICT:
        o = (v->flags & CK_VALUE_F_ORDERED) ? PyObject_CallNoArgs(OrderedDict_) : PyDict_New();
        if (!o || PyDict_SetItem(b->memo, key, o) < 0) goto fail;
        for (uint32_t k = 0; k < v->count; k++) {
            PyObject *kk = build(b, v->items[2 * k]), *vv;
            if (!kk) goto fail;
            vv = build(b, v->items[2 * k + 1]);
            if (!vv || PyObject_SetItem(o, kk, vv) < 0) {
                Py_DECREF(kk);
                Py_XDECREF(vv);
                goto fail;
            }
            Py_DECREF(kk);
            Py_DECREF(vv);
        }
        return o;
    case CK_VALUE_TENSOR:
        if (v->tensor == (size_t)-1)
            return PyObject_CallMethod(b->factory, "skipped", "s", v->s ? v->s : "skipped");
        return PyObject_CallMethod(b->factory, "tensor", "nO", (Py_ssize_t)v->tensor,
                                   (v->flags & CK_VALUE_F_PARAMETER) ? Py_True : Py_False);
    case CK_VALUE_DTYPE: return PyObject_CallMethod(b->factory, "dtype", "s", v->s);
    case CK_VALUE_NPDTYPE: return PyObject_CallMethod(b->factory, "npdtype", "s", v->s);
    case CK_VALUE_STORAGE: return PyObject_CallMethod(b->factory, "storage", "s", v->s);
    case CK_VALUE_ARRAY: {
        PyObject *shape = shape_tuple(v->ndim, v->shape);
        if (!shape) return NULL;
        return PyObject_CallMethod(b->factory, "array", "y#sNO", (const char *)v->data,
                                   (Py_ssize_t)v->len, v->s, shape,
                                   (v->flags & CK_VALUE_F_FORTRAN) ? Py_True : Py_False);
    }
    case CK_VALUE_GLOBAL:
        return PyObject_CallMethod(b->factory, "global_", "ss", v->module, v->name);
    case CK_VALUE_OBJECT: {
        static const char *const attrs[] = {"args", "state", "dict", "list"};
        const ck_value *parts[4];
        o = PyObject_CallMethod(b->factory, "opaque", "ss", v->module, v->name);
        if (!o || PyDict_SetItem(b->memo, key, o) < 0) goto fail;
        parts[0] = v->args;
        parts[1] = v->state;
        parts[2] = v->dict;
        parts[3] = v->list;
        for (int k = 0; k < 4; k++) {
            PyObject *x = build(b, parts[k]);
            if (!x) goto fail;
            if (PyObject_SetAttrString(o, attrs[k], x) < 0) {
                Py_DECREF(x);
                goto fail;
            }
            Py_DECREF(x);
        }
        return o;
    }
    }
    PyErr_Format(FormatError, "value of unknown kind %d", (int)v->kind);
    return NULL;
fail:
    Py_XDECREF(o);
    return NULL;
}

static PyObject *build(builder *b, const ck_value *v)
{
    PyObject *key, *o;
    if (!v) Py_RETURN_NONE;
    key = PyLong_FromVoidPtr((void *)v);
    if (!key) return NULL;
    o = PyDict_GetItemWithError(b->memo, key);
    if (o) {
        Py_DECREF(key);
        Py_INCREF(o);
        return o;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (PySet_Contains(b->busy, key) == 1) {
        Py_DECREF(key);
        PyErr_SetString(UnsupportedError,
                        "the checkpoint holds a tuple that contains itself, which Python cannot "
                        "build without running code");
        return NULL;
    }
    if (Py_EnterRecursiveCall(" while building a checkpoint's values")) {
        Py_DECREF(key);
        return NULL;
    }
    o = build_inner(b, v, key);
    Py_LeaveRecursiveCall();
    if (o && PyDict_SetItem(b->memo, key, o) < 0) Py_CLEAR(o);
    Py_DECREF(key);
    return o;
}

/* values(factory) -> the checkpoint's object tree built through FACTORY, or
 * None when the model holds no value tree. */
static PyObject *Model_values(ModelObject *self, PyObject *factory)
{
    const ck_value *root;
    builder b;
    PyObject *o;
    if (model_check(self)) return NULL;
    root = ck_model_values(self->m);
    if (!root) Py_RETURN_NONE;
    b.factory = factory;
    b.memo = PyDict_New();
    b.busy = PySet_New(NULL);
    if (!b.memo || !b.busy) {
        Py_XDECREF(b.memo);
        Py_XDECREF(b.busy);
        return NULL;
    }
    o = build(&b, root);
    Py_DECREF(b.memo);
    Py_DECREF(b.busy);
    return o;
}

static PyObject *Model_enter(ModelObject *self, PyObject *unused)
{
    if (model_check(self)) return NULL;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Model_exit(ModelObject *self, PyObject *args)
{
    self->closed = 1;
    Py_RETURN_FALSE;
}

static PyMethodDef Model_methods[] = {
    {"close", (PyCFunction)Model_close, METH_NOARGS,
     "Marks the checkpoint closed; the mapping goes with the last view."},
    {"count", (PyCFunction)Model_count, METH_NOARGS, "Number of tensors."},
    {"names", (PyCFunction)Model_names, METH_NOARGS, "Tensor names in file order."},
    {"find", (PyCFunction)Model_find, METH_O, "Index of the tensor NAME; KeyError if absent."},
    {"info", (PyCFunction)Model_info, METH_O,
     "(name, dtype, shape, strides, storage_offset, numel, nbytes, storage_id, file_offset, "
     "zero_copy) of a tensor."},
    {"metadata", (PyCFunction)Model_metadata, METH_NOARGS, "String metadata as a dict."},
    {"values_json", (PyCFunction)Model_values_json, METH_NOARGS,
     "The non-tensor values as the library's JSON document."},
    {"entries", (PyCFunction)Model_entries, METH_NOARGS,
     "[(name, dtype, shape, view or None, byte offset)] for every tensor, in file order."},
    {"view", (PyCFunction)Model_view, METH_O,
     "A Buffer over the tensor's bytes in place, or None when it must be materialised."},
    {"read", (PyCFunction)(void (*)(void))Model_read, METH_VARARGS | METH_KEYWORDS,
     "read(index, first=0, count=-1, dtype=None) -> bytearray of row-major values."},
    {"values", (PyCFunction)Model_values, METH_O,
     "values(factory) -> the checkpoint's object tree, or None."},
    {"__enter__", (PyCFunction)Model_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Model_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Model_getset[] = {
    {"closed", (getter)Model_get_closed, NULL, "True after close()", NULL},
    {"format", (getter)Model_get_format, NULL, "reader name (\"safetensors\", \"torch-zip\", ...)",
     NULL},
    {"path", (getter)Model_get_path, NULL, "the path opened", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Model_slots[] = {
    {Py_tp_new, (void *)Model_new},
    {Py_tp_dealloc, (void *)Model_dealloc},
    {Py_tp_methods, Model_methods},
    {Py_tp_getset, Model_getset},
    {Py_tp_doc, "Model(path, *, format=None, key=None, manifest=None, all=False, "
                "verify_crc=False, allow_unsafe=False, values=False, writable=True, data=None, "
                "name=None): an opened checkpoint (the library's ck_model)."},
    {0, NULL},
};

static PyType_Spec Model_spec = {
    "ckptkit._ckptkit.Model", sizeof(ModelObject), 0, Py_TPFLAGS_DEFAULT, Model_slots,
};

/* ---- writing, converting, comparing, scanning ---------------------------------- */

static const char **str_list(PyObject *seq, PyObject **keep)
{
    PyObject *fast;
    Py_ssize_t n;
    const char **v;
    *keep = NULL;
    if (!seq || seq == Py_None) return NULL;
    if (PyUnicode_Check(seq)) {
        fast = PyTuple_Pack(1, seq);
    } else {
        fast = PySequence_Tuple(seq);
    }
    if (!fast) return NULL;
    n = PyTuple_Size(fast);
    v = PyMem_Calloc((size_t)n + 1, sizeof *v);
    if (!v) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        v[k] = PyUnicode_AsUTF8AndSize(PyTuple_GetItem(fast, k), NULL);
        if (!v[k]) {
            PyMem_Free(v);
            Py_DECREF(fast);
            return NULL;
        }
    }
    *keep = fast;
    return v;
}

typedef struct conv_args {
    ck_convert_opts o;
    PyObject *keep[6];
    const char **lists[6];
} conv_args;

static void conv_args_free(conv_args *c)
{
    for (int k = 0; k < 6; k++) {
        PyMem_Free(c->lists[k]);
        Py_XDECREF(c->keep[k]);
    }
}

/* Convert options from a dict with the CLI's names (lists already as lists of
 * strings, "KEY=VALUE" for metadata and "OLD=NEW" for rename). */
static int fill_convert_opts(PyObject *kw, conv_args *c)
{
    PyObject *v;
    static const char *const lists[6] = {"dtype_exclude", "metadata", "include",
                                         "exclude",       "rename",   NULL};
    memset(c, 0, sizeof *c);
    c->o.dtype = CK_DT_KEEP;
    if (!kw) return 0;
    if ((v = PyDict_GetItemString(kw, "dtype")) && v != Py_None) {
        const char *s = PyUnicode_AsUTF8AndSize(v, NULL);
        if (!s) return -1;
        if (ck_dtype_parse(s, &c->o.dtype)) {
            PyErr_Format(ArgumentError, "unknown dtype '%s'", s);
            return -1;
        }
    }
    for (int k = 0; lists[k]; k++) {
        v = PyDict_GetItemString(kw, lists[k]);
        c->lists[k] = str_list(v, &c->keep[k]);
        if (!c->lists[k] && PyErr_Occurred()) return -1;
    }
    c->o.dtype_exclude = c->lists[0];
    c->o.metadata = c->lists[1];
    c->o.include = c->lists[2];
    c->o.exclude = c->lists[3];
    c->o.rename = c->lists[4];
    if ((v = PyDict_GetItemString(kw, "out_format")) && v != Py_None &&
        !(c->o.format = PyUnicode_AsUTF8AndSize(v, NULL)))
        return -1;
    if ((v = PyDict_GetItemString(kw, "strip_prefix")) && v != Py_None &&
        !(c->o.strip_prefix = PyUnicode_AsUTF8AndSize(v, NULL)))
        return -1;
    if ((v = PyDict_GetItemString(kw, "add_prefix")) && v != Py_None &&
        !(c->o.add_prefix = PyUnicode_AsUTF8AndSize(v, NULL)))
        return -1;
#define INTOPT(field)                                                                              \
    if ((v = PyDict_GetItemString(kw, #field)) && v != Py_None) {                                 \
        long x = PyLong_AsLong(v);                                                                 \
        if (x == -1 && PyErr_Occurred()) return -1;                                                \
        c->o.field = (int)x;                                                                       \
    }
    INTOPT(force)
    INTOPT(ema)
    INTOPT(prune)
    INTOPT(no_crc)
    INTOPT(unknown)
    INTOPT(cast_all)
    INTOPT(compress)
    INTOPT(strict)
#undef INTOPT
    if ((v = PyDict_GetItemString(kw, "shard_size")) && v != Py_None) {
        unsigned long long x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        c->o.shard_size = x;
    }
    return 0;
}

static PyObject *stats_dict(const ck_convert_stats *s)
{
    return Py_BuildValue("{sKsKsKsKsKsK}", "tensors", (unsigned long long)s->tensors, "bytes",
                         (unsigned long long)s->bytes, "cast_tensors",
                         (unsigned long long)s->cast_tensors, "overflow",
                         (unsigned long long)s->overflow, "underflow",
                         (unsigned long long)s->underflow, "shards",
                         (unsigned long long)s->shards);
}

/* A whole-checkpoint rewrite's changes, as (path, what, became) tuples. */
static void on_rewrite(void *user, const char *path, const char *what, const char *became)
{
    PyObject *list = user, *t;
    PyGILState_STATE g = PyGILState_Ensure();
    t = Py_BuildValue("(sss)", path, what, became);
    if (!t || PyList_Append(list, t) < 0) PyErr_Clear();
    Py_XDECREF(t);
    PyGILState_Release(g);
}

/* Runs ck_convert on M (whose context is CTX) with the GIL released. */
static PyObject *run_convert(ck_ctx *ctx, ck_model *m, const char *dst, conv_args *c,
                             PyObject *progress)
{
    callbacks cb;
    ck_convert_stats stats;
    ck_status st;
    char msg[1024] = "";
    PyObject *rewrites = PyList_New(0), *d;
    if (!rewrites) return NULL;
    memset(&stats, 0, sizeof stats);
    c->o.on_rewrite = on_rewrite;
    c->o.rewrite_user = rewrites;
    callbacks_attach(&cb, ctx, progress);
    Py_BEGIN_ALLOW_THREADS
    st = ck_convert(ctx, m, dst, &c->o, &stats);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(ctx));
    Py_END_ALLOW_THREADS
    if (cb.raised) {
        callbacks_finish(&cb, ctx);
        Py_DECREF(rewrites);
        return NULL;
    }
    if (callbacks_finish(&cb, ctx) < 0 || st) {
        Py_DECREF(rewrites);
        return st ? raise_status(st, msg) : NULL;
    }
    d = stats_dict(&stats);
    if (d && PyDict_SetItemString(d, "rewrites", rewrites) < 0) Py_CLEAR(d);
    Py_DECREF(rewrites);
    return d;
}

/* write(path, items, metadata, options, progress): ITEMS is a sequence of
 * (name, dtype, shape, address, nbytes); the caller keeps the memory alive. */
static PyObject *py_write(PyObject *mod, PyObject *args)
{
    PyObject *pathobj, *items, *meta, *opts, *progress, *path_bytes = NULL, *fast = NULL,
                                                         *res = NULL;
    ck_ctx *ctx = NULL;
    ck_model *m = NULL;
    conv_args c;
    const char *path;
    ck_status st;
    int have_c = 0;
    if (!PyArg_ParseTuple(args, "OOOOO", &pathobj, &items, &meta, &opts, &progress)) return NULL;
    if (!PyUnicode_FSConverter(pathobj, &path_bytes)) return NULL;
    path = PyBytes_AsString(path_bytes);
    if (!path) goto done;
    if (fill_convert_opts(opts == Py_None ? NULL : opts, &c) < 0) goto done_c;
    have_c = 1;
    if (!(ctx = ck_ctx_new())) {
        PyErr_NoMemory();
        goto done_c;
    }
    if ((st = ck_model_new(ctx, path, &m))) {
        raise_status(st, ck_errmsg(ctx));
        goto done_c;
    }
    if (!(fast = PySequence_Tuple(items))) goto done_c;
    for (Py_ssize_t k = 0; k < PyTuple_Size(fast); k++) {
        PyObject *it = PyTuple_GetItem(fast, k), *shape = NULL;
        const char *name, *dts;
        unsigned long long nbytes;
        PyObject *addr;
        int64_t dims[64];
        Py_ssize_t nd;
        ck_dtype dt;
        void *p;
        if (!PyArg_ParseTuple(it, "ssOOK", &name, &dts, &shape, &addr, &nbytes)) goto done_c;
        if (ck_dtype_parse(dts, &dt)) {
            PyErr_Format(ArgumentError, "tensor '%s': unknown dtype '%s'", name, dts);
            goto done_c;
        }
        nd = PySequence_Size(shape);
        if (nd < 0) goto done_c;
        if (nd > 64) {
            PyErr_Format(ArgumentError, "tensor '%s': %zd dimensions (at most 64)", name, nd);
            goto done_c;
        }
        for (Py_ssize_t d = 0; d < nd; d++) {
            PyObject *x = PySequence_GetItem(shape, d);
            if (!x) goto done_c;
            dims[d] = PyLong_AsLongLong(x);
            Py_DECREF(x);
            if (dims[d] == -1 && PyErr_Occurred()) goto done_c;
        }
        p = PyLong_AsVoidPtr(addr);
        if (!p && PyErr_Occurred()) goto done_c;
        if ((st = ck_model_add(m, name, dt, (int)nd, dims, p, nbytes))) {
            raise_status(st, ck_errmsg(ctx));
            goto done_c;
        }
    }
    if (meta && meta != Py_None) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(meta, &pos, &key, &value)) {
            const char *ks = PyUnicode_AsUTF8AndSize(key, NULL), *vs;
            if (!ks) goto done_c;
            if (!PyUnicode_Check(value)) {
                PyErr_Format(PyExc_TypeError, "metadata value for '%s' is not a str", ks);
                goto done_c;
            }
            vs = PyUnicode_AsUTF8AndSize(value, NULL);
            if (!vs) goto done_c;
            if ((st = ck_model_set_meta(m, ks, vs))) {
                raise_status(st, ck_errmsg(ctx));
                goto done_c;
            }
        }
    }
    res = run_convert(ctx, m, path, &c, progress);
done_c:
    if (have_c) conv_args_free(&c);
done:
    Py_XDECREF(fast);
    ck_model_close(m);
    ck_ctx_free(ctx);
    Py_XDECREF(path_bytes);
    return res;
}

/* Opens PATH on CTX (GIL released); NULL with an exception on failure. */
static ck_model *open_path(ck_ctx *ctx, PyObject *pathobj, const ck_open_opts *o)
{
    PyObject *pb;
    ck_model *m = NULL;
    ck_status st;
    char msg[1024] = "";
    const char *path;
    if (!PyUnicode_FSConverter(pathobj, &pb)) return NULL;
    path = PyBytes_AsString(pb);
    Py_BEGIN_ALLOW_THREADS
    st = ck_model_open(ctx, path, o, &m);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(ctx));
    Py_END_ALLOW_THREADS
    Py_DECREF(pb);
    if (st) {
        raise_status(st, msg);
        return NULL;
    }
    return m;
}

/* convert(src, dst, open_options, convert_options, progress) -> stats dict */
static PyObject *py_convert(PyObject *mod, PyObject *args)
{
    PyObject *src, *dst, *oo, *co, *progress, *db = NULL, *res = NULL;
    ck_open_opts o;
    conv_args c;
    ck_ctx *ctx;
    ck_model *m = NULL;
    callbacks cb;
    if (!PyArg_ParseTuple(args, "OOOOO", &src, &dst, &oo, &co, &progress)) return NULL;
    if (fill_open_opts(oo == Py_None ? NULL : oo, &o) < 0) return NULL;
    o.map_writable = 0;
    if (fill_convert_opts(co == Py_None ? NULL : co, &c) < 0) {
        conv_args_free(&c);
        return NULL;
    }
    if (!(ctx = ck_ctx_new())) {
        conv_args_free(&c);
        return PyErr_NoMemory();
    }
    callbacks_attach(&cb, ctx, NULL);
    m = open_path(ctx, src, &o);
    if (callbacks_finish(&cb, ctx) < 0 || !m) goto done;
    if (!PyUnicode_FSConverter(dst, &db)) goto done;
    res = run_convert(ctx, m, PyBytes_AsString(db), &c, progress);
done:
    Py_XDECREF(db);
    conv_args_free(&c);
    ck_model_close(m);
    ck_ctx_free(ctx);
    return res;
}

static const char *const diff_kind_names[] = {"only_a", "only_b", "dtype", "shape", "values"};

static int on_verify(void *user, const ck_diff_item *it)
{
    PyObject *list = user, *rec;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    rec = Py_BuildValue("{sssssK}", "kind", diff_kind_names[it->kind], "name", it->name,
                        "first_element", (unsigned long long)it->first_elem);
    if (!rec || PyList_Append(list, rec) < 0) stop = 1;
    Py_XDECREF(rec);
    PyGILState_Release(g);
    return stop;
}

/* verify(a, b, open_options, progress) -> (same, [difference records]) */
static PyObject *py_verify(PyObject *mod, PyObject *args)
{
    PyObject *a, *b, *oo, *progress, *list = NULL, *res = NULL;
    ck_open_opts o;
    ck_ctx *ctx;
    ck_model *ma = NULL, *mb = NULL;
    callbacks cb;
    ck_status st;
    int same = 0;
    char msg[1024] = "";
    if (!PyArg_ParseTuple(args, "OOOO", &a, &b, &oo, &progress)) return NULL;
    if (fill_open_opts(oo == Py_None ? NULL : oo, &o) < 0) return NULL;
    o.map_writable = 0;
    if (!(ctx = ck_ctx_new())) return PyErr_NoMemory();
    if (!(ma = open_path(ctx, a, &o)) || !(mb = open_path(ctx, b, &o))) goto done;
    if (!(list = PyList_New(0))) goto done;
    callbacks_attach(&cb, ctx, progress);
    Py_BEGIN_ALLOW_THREADS
    st = ck_verify(ctx, ma, mb, on_verify, list, &same);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(ctx));
    Py_END_ALLOW_THREADS
    if (cb.raised || PyErr_Occurred()) {
        callbacks_finish(&cb, ctx);
        goto done;
    }
    if (callbacks_finish(&cb, ctx) < 0) goto done;
    if (st) {
        raise_status(st, msg);
        goto done;
    }
    res = Py_BuildValue("(NO)", PyBool_FromLong(same), list);
done:
    Py_XDECREF(list);
    ck_model_close(ma);
    ck_model_close(mb);
    ck_ctx_free(ctx);
    return res;
}

static PyObject *num_or_none(double x, int have)
{
    if (!have) Py_RETURN_NONE;
    return PyFloat_FromDouble(x);
}

static PyObject *opt_shape(int ndim, const int64_t *s)
{
    if (!s || ndim < 0) Py_RETURN_NONE;
    return shape_tuple(ndim, s);
}

static int on_diff(void *user, const ck_diff_tensor *t)
{
    PyObject *list = user, *rec;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    rec = Py_BuildValue(
        "{sssNsNsNsNsOsKsKsKsNsNsNsO}", "name", t->name, "dtype_a",
        t->index_a == (size_t)-1 ? Py_NewRef(Py_None) : PyUnicode_FromString(ck_dtype_name(t->dtype_a)),
        "dtype_b",
        t->index_b == (size_t)-1 ? Py_NewRef(Py_None) : PyUnicode_FromString(ck_dtype_name(t->dtype_b)),
        "shape_a", opt_shape(t->ndim_a, t->shape_a), "shape_b", opt_shape(t->ndim_b, t->shape_b),
        "compared", t->compared ? Py_True : Py_False, "numel", (unsigned long long)t->numel,
        "mismatched", (unsigned long long)t->mismatched, "nan_mismatched",
        (unsigned long long)t->nan_mismatched, "max_abs", num_or_none(t->max_abs, t->have_stats),
        "mean_abs", num_or_none(t->mean_abs, t->have_stats), "cosine",
        num_or_none(t->cosine, t->have_stats), "equal", t->equal ? Py_True : Py_False);
    if (!rec || PyList_Append(list, rec) < 0) stop = 1;
    Py_XDECREF(rec);
    PyGILState_Release(g);
    return stop;
}

/* diff(a, b, rtol, atol, open_options, progress) -> ([records], summary dict) */
static PyObject *py_diff(PyObject *mod, PyObject *args)
{
    PyObject *a, *b, *oo, *progress, *list = NULL, *res = NULL;
    ck_open_opts o;
    ck_diff_opts d;
    ck_diff_result r;
    ck_ctx *ctx;
    ck_model *ma = NULL, *mb = NULL;
    callbacks cb;
    ck_status st;
    char msg[1024] = "";
    if (!PyArg_ParseTuple(args, "OOddOO", &a, &b, &d.rtol, &d.atol, &oo, &progress)) return NULL;
    if (fill_open_opts(oo == Py_None ? NULL : oo, &o) < 0) return NULL;
    o.map_writable = 0;
    if (!(ctx = ck_ctx_new())) return PyErr_NoMemory();
    if (!(ma = open_path(ctx, a, &o)) || !(mb = open_path(ctx, b, &o))) goto done;
    if (!(list = PyList_New(0))) goto done;
    memset(&r, 0, sizeof r);
    callbacks_attach(&cb, ctx, progress);
    Py_BEGIN_ALLOW_THREADS
    st = ck_diff(ctx, ma, mb, &d, on_diff, list, &r);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(ctx));
    Py_END_ALLOW_THREADS
    if (cb.raised || PyErr_Occurred()) {
        callbacks_finish(&cb, ctx);
        goto done;
    }
    if (callbacks_finish(&cb, ctx) < 0) goto done;
    if (st) {
        raise_status(st, msg);
        goto done;
    }
    res = Py_BuildValue("(O{sKsKsKsKsKsKsKsKsN})", list, "only_a", (unsigned long long)r.only_a,
                        "only_b", (unsigned long long)r.only_b, "dtype_changed",
                        (unsigned long long)r.dtype_changed, "shape_changed",
                        (unsigned long long)r.shape_changed, "values_differ",
                        (unsigned long long)r.values_differ, "equal", (unsigned long long)r.equal,
                        "elements", (unsigned long long)r.elements, "bytes",
                        (unsigned long long)r.bytes, "same", PyBool_FromLong(r.same));
done:
    Py_XDECREF(list);
    ck_model_close(ma);
    ck_model_close(mb);
    ck_ctx_free(ctx);
    return res;
}

static const char *const verdict_names[] = {"allowed", "unknown", "dangerous"};

typedef struct scan_collect {
    PyObject *list;
    int failed;
} scan_collect;

static void on_scan(void *user, const ck_scan_item *it)
{
    scan_collect *sc = user;
    PyGILState_STATE g;
    PyObject *rec;
    if (sc->failed) return;
    g = PyGILState_Ensure();
    rec = Py_BuildValue("{sssssssssK}", "module", it->module, "name", it->name, "verdict",
                        verdict_names[it->verdict], "where", it->where, "offset",
                        (unsigned long long)it->offset);
    if (!rec || PyList_Append(sc->list, rec) < 0) sc->failed = 1;
    Py_XDECREF(rec);
    PyGILState_Release(g);
}

/* scan(path) -> (worst verdict, [global records]) */
static PyObject *py_scan(PyObject *mod, PyObject *pathobj)
{
    PyObject *pb, *res = NULL;
    scan_collect sc;
    ck_ctx *ctx;
    ck_verdict worst = CK_VERDICT_ALLOWED;
    ck_status st;
    char msg[1024] = "";
    const char *path;
    if (!PyUnicode_FSConverter(pathobj, &pb)) return NULL;
    path = PyBytes_AsString(pb);
    sc.failed = 0;
    sc.list = PyList_New(0);
    ctx = ck_ctx_new();
    if (!sc.list || !ctx) {
        if (!ctx) PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    st = ck_scan(ctx, path, on_scan, &sc, &worst);
    if (st) snprintf(msg, sizeof msg, "%s", ck_errmsg(ctx));
    Py_END_ALLOW_THREADS
    if (sc.failed) goto done;
    if (st && st != CK_EUNSAFE) {
        raise_status(st, msg);
        goto done;
    }
    res = Py_BuildValue("(sO)", verdict_names[worst], sc.list);
done:
    Py_XDECREF(sc.list);
    ck_ctx_free(ctx);
    Py_DECREF(pb);
    return res;
}

static PyObject *py_dtype_info(PyObject *mod, PyObject *arg)
{
    const char *s = PyUnicode_AsUTF8AndSize(arg, NULL);
    ck_dtype dt;
    if (!s) return NULL;
    if (ck_dtype_parse(s, &dt)) {
        PyErr_Format(ArgumentError, "unknown dtype '%s'", s);
        return NULL;
    }
    return Py_BuildValue("(sIN)", ck_dtype_name(dt), ck_dtype_bits(dt),
                         PyBool_FromLong(ck_dtype_can_cast(dt)));
}

static PyObject *py_format_for_path(PyObject *mod, PyObject *arg)
{
    PyObject *pb;
    const char *f;
    if (!PyUnicode_FSConverter(arg, &pb)) return NULL;
    f = ck_format_for_path(PyBytes_AsString(pb));
    Py_DECREF(pb);
    if (!f) Py_RETURN_NONE;
    return PyUnicode_FromString(f);
}

static PyObject *py_live_models(PyObject *mod, PyObject *unused)
{
    return PyLong_FromLong(live_models);
}

static PyMethodDef module_methods[] = {
    {"write", py_write, METH_VARARGS,
     "write(path, items, metadata, options, progress) -> stats: writes tensors held in memory."},
    {"convert", py_convert, METH_VARARGS,
     "convert(src, dst, open_options, convert_options, progress) -> stats."},
    {"verify", py_verify, METH_VARARGS,
     "verify(a, b, open_options, progress) -> (same, differences)."},
    {"diff", py_diff, METH_VARARGS,
     "diff(a, b, rtol, atol, open_options, progress) -> (records, summary)."},
    {"scan", py_scan, METH_O, "scan(path) -> (verdict, globals)."},
    {"dtype_info", py_dtype_info, METH_O, "dtype_info(name) -> (canonical name, bits, castable)."},
    {"format_for_path", py_format_for_path, METH_O,
     "Output format the extension of PATH selects, or None."},
    {"_live_models", py_live_models, METH_NOARGS,
     "Number of opened checkpoints whose mapping is still held (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ckptkit._ckptkit",
    "The C core of ckptkit: checkpoints opened, read and written by libckptkit.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

static int add_exc(PyObject *m, const char *name, PyObject *base, const char *doc, PyObject **out)
{
    char full[128];
    snprintf(full, sizeof full, "ckptkit.%s", name);
    *out = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
    if (!*out) return -1;
    Py_INCREF(*out);
    return PyModule_AddObject(m, name, *out);
}

PyMODINIT_FUNC PyInit__ckptkit(void)
{
    PyObject *m = PyModule_Create(&module_def), *coll, *bases;
    if (!m) return NULL;
    if (add_exc(m, "Error", NULL, "Base class of every ckptkit error.", &Error) < 0 ||
        add_exc(m, "FormatError", Error, "The input breaks a rule of its format.",
                &FormatError) < 0 ||
        add_exc(m, "UnsupportedError", Error,
                "Valid input that ckptkit cannot represent or write.", &UnsupportedError) < 0 ||
        add_exc(m, "UnsafeError", Error,
                "A pickle references a global that would run code under Python's unpickler.",
                &UnsafeError) < 0 ||
        add_exc(m, "LimitError", Error, "A configured limit was exceeded.", &LimitError) < 0 ||
        add_exc(m, "SameFileError", Error, "Refused write: the output is one of the inputs.",
                &SameFileError) < 0 ||
        add_exc(m, "CancelledError", Error, "A progress callback cancelled the call.",
                &CancelledError) < 0)
        goto fail;
    bases = PyTuple_Pack(2, Error, PyExc_ValueError);
    if (!bases) goto fail;
    if (add_exc(m, "ArgumentError", bases, "Invalid arguments.", &ArgumentError) < 0) {
        Py_DECREF(bases);
        goto fail;
    }
    Py_DECREF(bases);
    Warning_ = PyErr_NewExceptionWithDoc("ckptkit.Warning", "A warning from the library.",
                                         PyExc_UserWarning, NULL);
    if (!Warning_) goto fail;
    Py_INCREF(Warning_);
    if (PyModule_AddObject(m, "Warning", Warning_) < 0) goto fail;
    coll = PyImport_ImportModule("collections");
    if (!coll) goto fail;
    OrderedDict_ = PyObject_GetAttrString(coll, "OrderedDict");
    Py_DECREF(coll);
    if (!OrderedDict_) goto fail;
    ModelType = PyType_FromSpec(&Model_spec);
    BufferType = PyType_FromSpec(&Buffer_spec);
    if (!ModelType || !BufferType) goto fail;
    Py_INCREF(ModelType);
    Py_INCREF(BufferType);
    if (PyModule_AddObject(m, "Model", ModelType) < 0 ||
        PyModule_AddObject(m, "Buffer", BufferType) < 0 ||
        PyModule_AddStringConstant(m, "library_version", ck_version()) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
