# cython: language_level=3
"""fusedopt._core: the binding between the Python API and the C kernels.

Every function here validates all of its arguments (type, dtype, shape, C-contiguity,
writability, aliasing, hyper-parameters) before any array is touched, resolves the
convention's scalars once per call, then runs the C kernel (with the GIL released, but
for steps small enough that releasing it would cost more than the update).
Not a public module: use the functions of the ``fusedopt`` package.
"""
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.dict cimport PyDict_GetItem, PyDict_Copy, PyDict_Update, PyDict_Next
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
cimport cython
from libc.math cimport pow, powf, sqrt, sqrtf, isfinite
from libc.string cimport memset
from libc.stdint cimport int64_t
from fusedopt._kernels cimport *

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    int PyArray_FailUnlessWriteable(cnp.ndarray obj, const char *name) except -1

cdef extern from *:
    """
    #ifndef FO_BUILD_FLAGS
    #define FO_BUILD_FLAGS "unknown"
    #endif
    static const char *fo_build_flags = FO_BUILD_FLAGS;
    #if defined(__clang__)
    static const char *fo_compiler = "clang " __clang_version__;
    #elif defined(__GNUC__)
    static const char *fo_compiler = "gcc " __VERSION__;
    #else
    static const char *fo_compiler = "unknown";
    #endif
    """
    const char *fo_build_flags
    const char *fo_compiler

CONVENTIONS = ("torch", "tf1", "keras", "optax", "sklearn")
cdef enum:
    C_TORCH = 0
    C_TF1 = 1
    C_KERAS = 2
    C_OPTAX = 3
    C_SKLEARN = 4

cdef object _ndarray = np.ndarray

# ----------------------------------------------------------------------------- validation

cdef int convention_code(object convention) except -1:
    if convention == "torch":
        return C_TORCH
    if convention == "tf1":
        return C_TF1
    if convention == "keras":
        return C_KERAS
    if convention == "optax":
        return C_OPTAX
    if convention == "sklearn":
        return C_SKLEARN
    raise ValueError(f"convention must be one of {', '.join(map(repr, CONVENTIONS))}; "
                     f"got {convention!r}")


cdef int _dtype_code(int type_num) noexcept:
    """FO_F32 / FO_F64 / FO_U8 for float32, float64, uint8-or-bool arrays; -1 otherwise."""
    if type_num == cnp.NPY_FLOAT:
        return FO_F32
    if type_num == cnp.NPY_DOUBLE:
        return FO_F64
    if type_num == cnp.NPY_BOOL or type_num == cnp.NPY_UBYTE:
        return FO_U8
    return -1


cdef str _dtype_name(int code):
    return "float32" if code == FO_F32 else "float64" if code == FO_F64 else "uint8/bool"


cdef str nm(str base, Py_ssize_t k):
    """An argument's name for an error message: base, or base[k] in a list (k >= 0).
    Built only when an error is raised, so validating a long list costs no formatting."""
    return base if k < 0 else f"{base}[{k}]"


ctypedef struct view:
    # An acquired array: its data, size in bytes, element size and shape, and a strong
    # reference to it (the array stays alive while a kernel runs without the GIL).
    char *buf
    Py_ssize_t len
    Py_ssize_t itemsize
    int ndim
    cnp.npy_intp *shape
    PyObject *obj


cdef int acquire(view *v, object obj, str name, bint writable, bint allow_u8=False,
                 Py_ssize_t k=-1) except -1:
    """Takes a C-contiguous, native-byte-order float32/float64 ndarray (uint8/bool too
    with `allow_u8`), writeable when `writable`, or raises naming `name` (``name[k]`` for
    element k of a list).  Reads the array's fields through NumPy's C API: a buffer
    export (PyObject_GetBuffer) costs ~950 instructions per array in NumPy 2, this ~40,
    which is most of a small step's overhead (callgrind: adam_step on 1e3 elements)."""
    if not cnp.PyArray_Check(obj):
        name = nm(name, k)
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64, "
                        f"got {type(obj).__module__}.{type(obj).__qualname__}")
    cdef cnp.ndarray a = <cnp.ndarray>obj
    cdef int flags = cnp.PyArray_FLAGS(a)
    cdef int code = _dtype_code(cnp.PyArray_TYPE(a))
    if writable and not (flags & cnp.NPY_ARRAY_WRITEABLE):
        name = nm(name, k)
        raise ValueError(f"{name} is read-only, but it is written in place; "
                         f"pass a writeable array")
    if not (flags & cnp.NPY_ARRAY_C_CONTIGUOUS):
        name = nm(name, k)
        raise ValueError(f"{name} must be C-contiguous (shape {obj.shape}, strides "
                         f"{obj.strides}); use np.ascontiguousarray")
    if code < 0 or (code == FO_U8 and not allow_u8) or not cnp.PyArray_ISNOTSWAPPED(a):
        name = nm(name, k)
        raise TypeError(f"{name} must be float32 or float64, got dtype {obj.dtype}")
    if writable:                    # (NumPy's warn-on-write views warn here, as on write)
        PyArray_FailUnlessWriteable(a, "array")
    v.buf = <char *>cnp.PyArray_DATA(a)
    v.itemsize = cnp.PyArray_ITEMSIZE(a)
    v.len = cnp.PyArray_SIZE(a) * v.itemsize
    v.ndim = cnp.PyArray_NDIM(a)
    v.shape = cnp.PyArray_DIMS(a)
    v.obj = <PyObject *>obj
    Py_INCREF(obj)
    return code


cdef inline void release(view *v) noexcept:
    if v.obj != NULL:
        Py_DECREF(<object>v.obj)
        v.obj = NULL


cdef inline fo_index nitems(view *v):
    return v.len // v.itemsize


cdef inline bint same_shape(view *a, view *b) noexcept:
    cdef int i
    if a.ndim != b.ndim:
        return False
    for i in range(a.ndim):
        if a.shape[i] != b.shape[i]:
            return False
    return True


cdef int check_like(view *ref, view *v, int refcode, int code, str refname,
                    str name, Py_ssize_t k=-1) except -1:
    """v must have ref's dtype and exactly ref's shape (no broadcasting)."""
    if code != refcode:
        refname, name = nm(refname, k), nm(name, k)
        raise TypeError(f"{name} must have the dtype of {refname} ({_dtype_name(refcode)}), "
                        f"got {_dtype_name(code)}")
    cdef int i
    if not same_shape(ref, v):
        refname, name = nm(refname, k), nm(name, k)
        raise ValueError(f"{name} must have the shape of {refname} "
                         f"{tuple([ref.shape[i] for i in range(ref.ndim)])}, got "
                         f"{tuple([v.shape[i] for i in range(v.ndim)])} (no broadcasting)")
    return 0


cdef enum:
    SHAPE_LIKE = 0
    SHAPE_ROWS = 1
    SHAPE_COLS = 2


cdef int check_factor(view *ref, view *v, int refcode, int code, int d, str refname,
                      str name, Py_ssize_t k=-1) except -1:
    """v must have ref's dtype and its shape with dimension d 1: a statistic of ref
    averaged over axis d (Adafactor's)."""
    if code != refcode:
        refname, name = nm(refname, k), nm(name, k)
        raise TypeError(f"{name} must have the dtype of {refname} ({_dtype_name(refcode)}), "
                        f"got {_dtype_name(code)}")
    cdef int i
    want = tuple([1 if i == d else ref.shape[i] for i in range(ref.ndim)])
    got = tuple([v.shape[i] for i in range(v.ndim)])
    if ref.ndim < 2 or got != want:
        refname, name = nm(refname, k), nm(name, k)
        raise ValueError(f"{name} must have shape {want} (the shape of {refname} "
                         f"{tuple([ref.shape[i] for i in range(ref.ndim)])} with dimension "
                         f"{d - ref.ndim} of size 1), got {got}")
    return 0


cdef inline bint overlaps(view *a, view *b):
    cdef char *a0 = <char *>a.buf
    cdef char *b0 = <char *>b.buf
    return a.len > 0 and b.len > 0 and a0 < b0 + b.len and b0 < a0 + a.len


cdef int check_no_alias(view *a, view *b, str an, str bn, Py_ssize_t k=-1) except -1:
    if overlaps(a, b):
        an, bn = nm(an, k), nm(bn, k)
        raise ValueError(f"{an} and {bn} share memory; they must be distinct arrays")
    return 0


ctypedef struct span:
    char *lo
    char *hi
    Py_ssize_t k      # position in the list
    int role          # index into the role names
    bint written


cdef void insertion_sort(span *sp, Py_ssize_t count) noexcept:
    cdef Py_ssize_t i, j
    cdef span tmp
    for i in range(1, count):
        tmp = sp[i]
        j = i - 1
        while j >= 0 and sp[j].lo > tmp.lo:
            sp[j + 1] = sp[j]
            j -= 1
        sp[j + 1] = tmp


cdef int sort_spans(span *sp, Py_ssize_t count) except -1:
    """Sorts spans by address: insertion sort of runs of 16, then bottom-up merges, a merge
    skipped where two runs are already in order.  Arrays allocated one after the other
    (a model's parameters, their states) come in few ordered runs, so a list of n tensors
    sorts in about linear time (libc's qsort took ~1100 instructions per span)."""
    cdef Py_ssize_t i, lo, mid, hi, l, r, o, width = 16
    if count <= 16:
        insertion_sort(sp, count)
        return 0
    for lo in range(0, count, 16):
        insertion_sort(sp + lo, min(16, count - lo))
    cdef span *tmp = <span *>PyMem_Malloc(sizeof(span) * count)
    if tmp == NULL:
        raise MemoryError()
    while width < count:
        for lo in range(0, count, 2 * width):
            mid = min(lo + width, count)
            hi = min(lo + 2 * width, count)
            if mid >= hi or sp[mid - 1].lo <= sp[mid].lo:
                continue                        # already in order
            l, r, o = lo, mid, 0
            while l < mid and r < hi:
                if sp[r].lo < sp[l].lo:
                    tmp[o] = sp[r]
                    r += 1
                else:
                    tmp[o] = sp[l]
                    l += 1
                o += 1
            while l < mid:
                tmp[o] = sp[l]
                l += 1
                o += 1
            for i in range(o):                 # (the rest of the right run is in place)
                sp[lo + i] = tmp[i]
        width *= 2
    PyMem_Free(tmp)
    return 0


cdef int check_spans(span *sp, Py_ssize_t count, tuple role_names, bint single) except -1:
    """No array that is written may share memory with any other array of the call (a
    sweep over the address-sorted spans: O(n log n) for a list of n tensors)."""
    cdef Py_ssize_t i, all_i = -1, w_i = -1
    cdef char *all_hi = NULL
    cdef char *w_hi = NULL
    cdef span *o
    sort_spans(sp, count)
    for i in range(count):
        if sp[i].hi == sp[i].lo:
            continue
        o = NULL
        if sp[i].written and all_i >= 0 and sp[i].lo < all_hi:
            o = &sp[all_i]
        elif w_i >= 0 and sp[i].lo < w_hi:
            o = &sp[w_i]
        if o != NULL:
            a = nm(role_names[o.role], -1 if single else o.k)
            b = nm(role_names[sp[i].role], -1 if single else sp[i].k)
            raise ValueError(f"{a} and {b} share memory; arrays written in place must not "
                             "overlap any other argument")
        if all_i < 0 or sp[i].hi > all_hi:
            all_hi, all_i = sp[i].hi, i
        if sp[i].written and (w_i < 0 or sp[i].hi > w_hi):
            w_hi, w_i = sp[i].hi, i
    return 0


cdef inline void set_span(span *s, view *v, Py_ssize_t k, int role, bint written) noexcept:
    s.lo = <char *>v.buf
    s.hi = <char *>v.buf + v.len
    s.k = k
    s.role = role
    s.written = written


cdef enum:
    TL_SMALL = 6


@cython.freelist(4)
cdef class TensorLists:
    """The arrays of one multi-tensor call, acquired, validated and released together.

    Role r of tensor k is ``lists[r][k]`` (a list per role; None for a role the call does
    not use, or ``used[r]`` false); in a `single` call (one tensor, the functional steps)
    ``lists[r]`` is the array itself.  Role 0 is the reference: every array of a tensor must have its dtype and
    shape, and all tensors one dtype.  Arrays of writable roles must be writeable and share
    memory with no other array of the call.  Errors name ``names[r]`` (``names[r][k]`` in
    a list call).  ``role(r)`` is the C list of role r's data pointers (NULL if unused).
    ``fill(..., one_dtype=False)`` only checks the arrays and their overlaps.  With
    ``shapes`` (a code per role) a state role's array may be None for some tensors, and
    its shape is the reference's (SHAPE_LIKE) or a factor of it (SHAPE_ROWS: the last
    dimension 1; SHAPE_COLS: the one before it 1), as Adafactor's statistics; with
    ``faxes`` (two per tensor) the dimensions that are 1 are faxes[2k] (SHAPE_ROWS) and
    faxes[2k + 1] (SHAPE_COLS)."""
    cdef view *views
    cdef char *have                # per (role, tensor): buffer acquired
    cdef void **ptrs               # [nroles][n]
    cdef fo_index *ns
    cdef span *spans
    cdef readonly Py_ssize_t n
    cdef Py_ssize_t nroles
    cdef readonly int dtype
    cdef tuple names
    cdef tuple writable
    cdef Py_ssize_t nspans
    cdef bint small
    # a single-tensor call (the functional steps) needs no allocation
    cdef view small_views[TL_SMALL]
    cdef char small_have[TL_SMALL]
    cdef void *small_ptrs[TL_SMALL]
    cdef fo_index small_ns[1]
    cdef span small_spans[TL_SMALL]

    def __cinit__(self, Py_ssize_t n, tuple names):
        self.n, self.nroles, self.names, self.dtype = n, len(names), names, -1
        cdef Py_ssize_t m = max(n, 1) * self.nroles
        self.small = n <= 1 and m <= TL_SMALL
        if self.small:
            self.views, self.have, self.ptrs = self.small_views, self.small_have, self.small_ptrs
            self.ns, self.spans = self.small_ns, self.small_spans
        else:
            self.views = <view *>PyMem_Malloc(sizeof(view) * m)
            self.have = <char *>PyMem_Malloc(m)
            self.ptrs = <void **>PyMem_Malloc(sizeof(void *) * m)
            self.ns = <fo_index *>PyMem_Malloc(sizeof(fo_index) * max(n, 1))
            self.spans = <span *>PyMem_Malloc(sizeof(span) * m)
            if self.views == NULL or self.have == NULL or self.ptrs == NULL or \
                    self.ns == NULL or self.spans == NULL:
                self.n = 0                  # (nothing acquired: __dealloc__ only frees)
                raise MemoryError()
        memset(self.have, 0, m)
        memset(self.ptrs, 0, sizeof(void *) * m)

    cdef int fill(self, list lists, tuple writable, bint single, list index,
                  bint one_dtype=True, tuple used=None, tuple shapes=None,
                  const int *faxes=NULL) except -1:
        cdef Py_ssize_t n = self.n, k, r, ki, nsp = 0
        cdef int code, d
        cdef view *ref
        cdef view *vb
        if len(lists) != self.nroles or (index is not None and len(index) < n):
            raise ValueError("internal: wrong number of array lists or indices")
        if single and n != 1:
            raise ValueError("internal: a single call has one tensor")
        for r in range(self.nroles):
            if single or (used is not None and not used[r]):
                continue
            if lists[r] is not None and type(lists[r]) is not list:
                raise TypeError(f"{self.names[r]} must be a list of arrays, got "
                                f"{type(lists[r]).__name__}")
            if lists[r] is not None and len(<list>lists[r]) != n:
                raise ValueError(f"{self.names[r]} list has {len(<list>lists[r])} arrays "
                                 f"for {n} parameters")
        for k in range(n):
            ki = -1 if single else (k if index is None else <Py_ssize_t>index[k])
            ref = self.views + k
            for r in range(self.nroles):
                if (lists[r] is None and not single) or (used is not None and not used[r]):
                    continue
                vb = self.views + r * n + k
                obj = lists[r] if single else (<list>lists[r])[k]
                if obj is None and shapes is not None and r >= 2:
                    continue                # (a state this tensor does not have)
                code = acquire(vb, obj, self.names[r], writable[r], False, ki)
                self.have[r * n + k] = 1
                if r == 0:
                    if self.dtype < 0 or not one_dtype:
                        self.dtype = code
                    elif code != self.dtype:
                        raise TypeError(f"{nm(self.names[0], ki)} is {_dtype_name(code)} but "
                                        f"earlier arrays are {_dtype_name(self.dtype)}; "
                                        "pass arrays of one dtype per call")
                elif shapes is None or shapes[r] == SHAPE_LIKE:
                    check_like(ref, vb, self.dtype, code, self.names[0], self.names[r], ki)
                else:
                    if faxes != NULL:
                        d = faxes[2 * k + (0 if shapes[r] == SHAPE_ROWS else 1)]
                    else:
                        d = ref.ndim - (1 if shapes[r] == SHAPE_ROWS else 2)
                    check_factor(ref, vb, self.dtype, code, d, self.names[0],
                                 self.names[r], ki)
                set_span(self.spans + nsp, vb, ki, <int>r, writable[r])
                nsp += 1
                self.ptrs[r * n + k] = vb.buf
            self.ns[k] = nitems(ref)
        self.writable, self.nspans = writable, nsp
        check_spans(self.spans, nsp, self.names, single)
        return 0

    cdef void **role(self, Py_ssize_t r) noexcept:
        return self.ptrs + r * self.n if self.n > 0 and self.have[r * self.n] else NULL

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.views != NULL and self.have != NULL:
            for i in range(self.n * self.nroles):
                if self.have[i]:
                    release(self.views + i)
        if not self.small:
            PyMem_Free(self.views); PyMem_Free(self.have); PyMem_Free(self.ptrs)
            PyMem_Free(self.ns); PyMem_Free(self.spans)


cdef inline Py_ssize_t nitems_of(int ndim, cnp.npy_intp *shape) noexcept:
    cdef Py_ssize_t size = 1
    cdef int i
    for i in range(ndim):
        size *= shape[i]
    return size


cdef inline bint still_valid(view *v, int dtype, bint written) noexcept:
    """The held array still has the data, size, dtype and layout it had when acquired
    (an array resized without refcheck, made read-only, given another dtype in place, ...
    has not), reading its shape anew."""
    cdef cnp.ndarray a = <cnp.ndarray>v.obj
    cdef int flags = cnp.PyArray_FLAGS(a)
    v.ndim = cnp.PyArray_NDIM(a)
    v.shape = cnp.PyArray_DIMS(a)
    return <char *>cnp.PyArray_DATA(a) == v.buf and \
        _dtype_code(cnp.PyArray_TYPE(a)) == dtype and cnp.PyArray_ISNOTSWAPPED(a) and \
        nitems_of(v.ndim, v.shape) * v.itemsize == v.len and \
        (flags & cnp.NPY_ARRAY_C_CONTIGUOUS) != 0 and \
        (not written or (flags & cnp.NPY_ARRAY_WRITEABLE) != 0)


cdef extern from "Python.h":
    int FO_DICT_NEXT "PyDict_Next"(PyObject *d, Py_ssize_t *pos, PyObject **key,
                                   PyObject **value) noexcept


cdef inline bint entry_at(PyObject *d, Py_ssize_t at, PyObject *key,
                          PyObject **value) noexcept:
    """Dict d's entry at position `at` still has this key (its value in *value).  A
    position is what PyDict_Next left when it gave the entry; if the dict changed in any
    way the position may give another entry, whose key then differs (keys are unique),
    never a wrong value for this key: the worst case is a plan taken as stale."""
    cdef PyObject *k
    if at < 0 or not FO_DICT_NEXT(d, &at, &k, value):
        return False
    return k == key


cdef class StepPlan:
    """The arrays of a class's batch (parameters and their states), acquired and checked
    once and held across steps, so that a step acquires only the gradients (a list of
    1000 tensors otherwise spends more on validation than on the update).

    ``StepPlan(tl, state, index, keys)``: ``tl`` the TensorLists of a step that has run
    (returned by the kernel entry with ``keep=True``), ``state`` the optimizer's
    ``{index: state dict}``, ``keys[r]`` the state name of role r (None for the
    parameters and gradients).  ``ready(state, grads)`` checks that nothing the plan
    holds has changed (the same state dicts holding the same state arrays and one step
    count; each array's data, dtype, size, shape, contiguity and writability) and
    acquires the
    gradients, validated as in TensorLists.fill (dtype, the parameter's shape, overlap
    with every written array); False: the plan is stale (or a gradient is None) and the
    caller takes the general path, which reports what changed.
    ``commit()`` writes the next step count into every state dict."""
    cdef TensorLists tl
    cdef tuple keys
    cdef list index
    cdef list dicts
    cdef object _step
    cdef Py_ssize_t maxindex
    cdef Py_ssize_t *cindex
    cdef span *written          # the written arrays' spans, by address (none empty)
    cdef Py_ssize_t nwritten
    # Where each checked dict entry is (a PyDict_Next position: re-read there, with no
    # hashing; any change to a dict moves or replaces it) and its key, held: tensor k's
    # entry in the state at opos[k] with key okey[k]; the entry of role r of its state
    # dict (r = 1: "step") at spos[k*nroles + r] with key skey[...] (-1: none).
    cdef Py_ssize_t *opos
    cdef Py_ssize_t *spos
    cdef PyObject **okey
    cdef PyObject **skey
    cdef list held_keys

    def __cinit__(self, TensorLists tl not None, dict state, list index, tuple keys):
        cdef Py_ssize_t n = len(index), i
        if tl.n != n or len(keys) != tl.nroles:
            raise ValueError("internal: a plan needs the tensors' indices and state names")
        self.keys, self.index, self.tl = keys, index, tl
        self.dicts = [state[i] for i in index]
        self._step = self.dicts[0]["step"] if n else 0
        self.maxindex = max(index) if n else -1
        cdef Py_ssize_t m = max(1, n * tl.nroles)
        self.written = <span *>PyMem_Malloc(sizeof(span) * m)
        self.cindex = <Py_ssize_t *>PyMem_Malloc(sizeof(Py_ssize_t) * max(1, n))
        self.opos = <Py_ssize_t *>PyMem_Malloc(sizeof(Py_ssize_t) * max(1, n))
        self.okey = <PyObject **>PyMem_Malloc(sizeof(PyObject *) * max(1, n))
        self.spos = <Py_ssize_t *>PyMem_Malloc(sizeof(Py_ssize_t) * m)
        self.skey = <PyObject **>PyMem_Malloc(sizeof(PyObject *) * m)
        if self.written == NULL or self.cindex == NULL or self.opos == NULL or \
                self.okey == NULL or self.spos == NULL or self.skey == NULL:
            raise MemoryError()
        self.locate(state)
        for i in range(n):
            self.cindex[i] = index[i]
        self.nwritten = 0
        for i in range(tl.nspans):             # (fill left the spans sorted by address)
            if tl.spans[i].written and tl.spans[i].hi > tl.spans[i].lo:
                self.written[self.nwritten] = tl.spans[i]
                self.nwritten += 1
        self.release_grads()

    cdef int locate(self, dict state) except -1:
        """Records where the checked entries are (opos, spos)."""
        cdef Py_ssize_t n = self.tl.n, nroles = self.tl.nroles, k, r, pos = 0
        cdef PyObject *key
        cdef PyObject *val
        self.held_keys = []
        for k in range(n):
            self.opos[k] = -1
            for r in range(nroles):
                self.spos[k * nroles + r] = -1
        where = {i: k for k, i in enumerate(self.index)}
        while PyDict_Next(state, &pos, &key, &val):
            k = where.get(<object>key, -1)
            if k >= 0 and val == <PyObject *>self.dicts[k]:
                self.opos[k], self.okey[k] = pos - 1, key
                self.held_keys.append(<object>key)
        roles = {"step": 1}
        for r in range(2, nroles):
            if self.keys[r] is not None:
                roles[self.keys[r]] = r
        for k in range(n):
            pos = 0
            while PyDict_Next(<dict>self.dicts[k], &pos, &key, &val):
                r = roles.get(<object>key, -1)
                if r >= 0:
                    self.spos[k * nroles + r], self.skey[k * nroles + r] = pos - 1, key
                    self.held_keys.append(<object>key)
        return 0

    def __dealloc__(self):
        PyMem_Free(self.written)
        PyMem_Free(self.cindex)
        PyMem_Free(self.opos)
        PyMem_Free(self.okey)
        PyMem_Free(self.spos)
        PyMem_Free(self.skey)

    @property
    def step(self):
        """The step count of every state of the plan."""
        return self._step

    def ready(self, dict state, list grads):
        cdef TensorLists t = self.tl
        cdef Py_ssize_t n = t.n, nroles = t.nroles, r, k, lo, hi, mid, ki
        cdef PyObject *d
        cdef PyObject *got
        cdef PyObject *step = <PyObject *>self._step
        cdef bint written[TL_SMALL]
        cdef view *vb
        cdef int code
        cdef str gname = t.names[1]
        if len(grads) <= self.maxindex or nroles > TL_SMALL:
            return False
        for r in range(nroles):
            written[r] = t.writable[r]
        for k in range(n):
            ki = self.cindex[k]
            if not entry_at(<PyObject *>state, self.opos[k], self.okey[k], &d) or \
                    d != <PyObject *>self.dicts[k]:
                return False                    # (state[i]: still its state dict)
            if not entry_at(d, self.spos[k * nroles + 1], self.skey[k * nroles + 1], &got) \
                    or (got != step and not <object>got == <object>step):
                return False                    # (its step: commit shares one object)
            for r in range(nroles):
                if r == 1 or not t.have[r * n + k]:
                    continue
                vb = t.views + r * n + k
                if r >= 2 and (not entry_at(d, self.spos[k * nroles + r],
                                            self.skey[k * nroles + r], &got) or
                               got != vb.obj):
                    return False                # (a state: still the one in its dict)
                if not still_valid(vb, t.dtype, written[r]):
                    return False
                if r >= 2 and (vb.ndim != t.views[k].ndim or
                               (vb.ndim > 1 and not same_shape(t.views + k, vb))):
                    return False                # (as the general path: like its parameter;
                                                # 1-D and of equal size: the same shape)
            g = grads[ki]                       # this step's gradient
            if g is None:
                return False
            vb = t.views + n + k
            if t.have[n + k]:
                release(vb)
                t.have[n + k] = 0
                t.ptrs[n + k] = NULL
            code = acquire(vb, g, gname, False, False, ki)
            t.have[n + k] = 1
            check_like(t.views + k, vb, t.dtype, code, t.names[0], gname, ki)
            t.ptrs[n + k] = vb.buf
            if vb.len == 0:
                continue
            lo, hi = 0, self.nwritten           # the first written span ending after it
            while lo < hi:
                mid = (lo + hi) // 2
                if self.written[mid].hi <= vb.buf:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < self.nwritten and self.written[lo].lo < vb.buf + vb.len:
                a = nm(t.names[self.written[lo].role], self.written[lo].k)
                raise ValueError(f"{a} and {nm(gname, ki)} share memory; arrays written "
                                 "in place must not overlap any other argument")
        return True

    cdef void release_grads(self) noexcept:
        """The gradients are not held between steps (the caller's memory is its own)."""
        cdef TensorLists t = self.tl
        cdef Py_ssize_t k
        for k in range(t.n):
            if t.have[t.n + k]:
                release(t.views + t.n + k)
                t.have[t.n + k] = 0
                t.ptrs[t.n + k] = NULL

    def release(self):
        """Lets go of this step's gradients (after a step that did not run)."""
        self.release_grads()

    def commit(self):
        """The step has run: every state dict's step count is the next one."""
        cdef object nxt = self._step + 1
        for d in self.dicts:
            (<dict>d)["step"] = nxt
        self._step = nxt
        self.release_grads()


cdef enum:
    # A step over at most this many elements in all runs with the GIL held: releasing and
    # taking it back costs ~600 instructions, about what Adam spends on 1000 float32
    # elements, and such a step holds the GIL for a few microseconds at most (NumPy's
    # ufuncs likewise keep it below 500 elements).
    GIL_HELD_MAX = 4096


cdef int run_step(int opt, const void *args, TensorLists t, int nt) except -1:
    """One fo_step call over the tensors of t (roles: param, grad, then the states, each
    given to the kernel, NULL where unused)."""
    cdef void **states[FO_MAX_STATES]
    cdef Py_ssize_t k, nstates = t.nroles - 2
    if nstates > FO_MAX_STATES:
        raise ValueError("internal: too many states")
    for k in range(nstates):
        states[k] = t.role(2 + k)
    cdef void **ps = t.role(0)
    cdef const void **gs = <const void **>t.role(1)
    cdef int dtype = t.dtype, n = <int>t.n
    cdef fo_index *ns = t.ns
    cdef fo_index total = 0
    for k in range(n):
        total += ns[k]
    if total <= GIL_HELD_MAX:
        fo_step(opt, dtype, args, n, ps, gs, <int>nstates, <fo_state_lists>states, ns, nt)
    elif n > 0:
        with nogil:
            fo_step(opt, dtype, args, n, ps, gs, <int>nstates, <fo_state_lists>states, ns, nt)
    return 0


def check_distinct(list arrays, str name="params"):
    """Raises ValueError naming the pair when two arrays of the list share memory."""
    cdef TensorLists t = TensorLists(len(arrays), (name,))
    t.fill([arrays], (True,), False, None, False)


cdef double real(object x, str name, double lo, bint lo_open=False, double hi=float("inf"),
                 bint hi_open=False, str label=None) except? -1.0:
    """A finite float in the range [lo, hi] (or open ends), else ValueError naming `name`.
    The range message starts as torch.optim's (``Invalid learning rate: -1``) when `label`
    is its wording, else ``Invalid <name> value: ...``."""
    cdef double v
    if type(x) is float:            # the common case first
        v = x
        if isfinite(v) and lo <= v <= hi and not (lo_open and v == lo) and \
                not (hi_open and v == hi):
            return v
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from None
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a real number, got bool")
    if not isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if v < lo or (lo_open and v == lo) or v > hi or (hi_open and v == hi):
        raise ValueError(f"Invalid {label or name + ' value'}: {x!r} (expected "
                         f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'})")
    return v


cdef bint flag(object x, str name, bint truthy=False) except -1:
    """A boolean hyper-parameter: bool or numpy.bool_ only (no truthiness of strings),
    or, for the torch drop-ins (`truthy`), any value, as torch.optim reads its flags."""
    if x is True or x is False:
        return x
    if truthy:
        return bool(x)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"{name} must be a bool, got {type(x).__name__}")


cdef object _MISSING = object()
cdef object _REQUIRED = object()
cdef double INF = float("inf")


cdef inline double learning_rate(object x) except? -1.0:
    return real(x, "lr", 0.0, False, INF, False, "learning rate")


cdef inline double weight_decay(object x) except? -1.0:
    return real(x, "weight_decay", 0.0)


cdef int max_grad_norm_arg(object x) except -1:
    """max_grad_norm: None (no clipping) or a finite number > 0."""
    if x is not None:
        real(x, "max_grad_norm", 0.0, True)
    return 0


cdef inline object hp(dict hyper, dict defaults, str name):
    """A hyper-parameter of a call: the caller's value, else the description's default."""
    cdef PyObject *v = PyDict_GetItem(hyper, name)
    if v == NULL:
        v = PyDict_GetItem(defaults, name)
        if v == NULL:
            raise KeyError(name)
    return <object>v


cdef long long integer(object x, str name, long long lo) except? -1:
    cdef long long v
    cdef int overflow = 0
    if type(x) is int:              # the common case first
        v = PyLong_AsLongLongAndOverflow(x, &overflow)
        if not overflow and v >= lo:
            return v
    if isinstance(x, bool) or not hasattr(x, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    try:
        v = x.__index__()
    except OverflowError:
        raise ValueError(f"{name} must be an integer between {lo} and {2**63 - 1}, "
                         f"got {x}") from None
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return v


cdef int nthreads_arg(object n_threads) except? -2:
    if n_threads is None:
        return 0
    cdef long long v = integer(n_threads, "n_threads", 1)
    if v > 2147483647:
        raise ValueError(f"n_threads must be >= 1 and fit a C int, got {v}")
    return <int>v


# ----------------------------------------------------------------------------- Adam

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_ADAM_TORCH
        FO_ADAM_EPSHAT
        FO_ADAM_SKLEARN
        FO_ADAM_OPTAX
    enum:
        FO_AMS_NONE
        FO_AMS_RAW
        FO_AMS_HAT
    ctypedef struct fo_adam_args:
        int form, decay, amsgrad, maximize
        double beta1, beta2, one_minus_beta1, one_minus_beta2
        double eps, eps_root, wd, lr, decay_factor, step_size, bc2_sqrt, bc1, bc2
        double grad_scale

    enum:
        FO_OPT_adam


_tf1_powers = {}   # float32 beta -> float32 array whose element t-1 is TF1's beta^t


cdef double tf1_power(double beta, long long step) except? -1.0:
    """TF1's beta^t: a float32 variable initialised to beta and multiplied by beta (in
    float32) after every step, i.e. the float32 running product.  The products are cached
    per beta (any step count, any number of optimizers: O(1) after the first call); once
    the product reaches a fixed point (0, or a subnormal that beta no longer changes) it
    stays there for every later step."""
    arr = _tf1_powers.get(beta)
    cdef Py_ssize_t have = 0 if arr is None else len(arr)
    if step > have:
        if have >= 1 and arr[have - 1] * np.float32(beta) == arr[have - 1]:
            return arr[have - 1]                     # fixed point: p*beta rounds to p
        n = max(step, 2 * have, 1024)
        arr = np.multiply.accumulate(np.full(n, beta, dtype=np.float32))
        _tf1_powers[beta] = arr
    return arr[step - 1]


cdef double f32(double x) noexcept:
    """x rounded to float32 (returned as the double of equal value)."""
    cdef volatile float y = <float>x
    return y


cdef double round_to(double x, int dtype) noexcept:
    return f32(x) if dtype == FO_F32 else x


cdef double optax_power(double beta, long long step, int dtype) noexcept:
    """optax's beta**count (``tree_bias_correction``: a Python float to the power of an
    int32 count): JAX's binary exponentiation in the parameter's dtype, each square and
    product rounded to it (not C's pow: a few ulps apart)."""
    cdef double b = round_to(beta, dtype), acc = 1.0
    cdef long long n = step
    while n > 0:
        if n & 1:
            acc = round_to(acc * b, dtype)
        b = round_to(b * b, dtype)
        n >>= 1
    return acc


cdef int adam_resolve(fo_adam_args *a, int dtype, int conv, long long step, double lr,
                      double b1, double b2, double eps, double wd, bint decoupled,
                      bint amsgrad, bint maximize, double eps_root) except -1:
    """Fills the kernel scalars for one convention (see fusedopt.reference for the
    formulas written plainly in NumPy, and SEMANTICS in the README)."""
    cdef float f1, f2, flr, fb1p, fb2p
    cdef double bc1, bc2, b1p, b2p
    memset(a, 0, sizeof(fo_adam_args))
    if maximize and conv != C_TORCH:
        raise ValueError(f"maximize=True is a torch option; convention {CONVENTIONS[conv]!r} "
                         "has no such option")
    if eps_root != 0.0 and conv != C_OPTAX:
        raise ValueError(f"eps_root is an optax option; convention {CONVENTIONS[conv]!r} "
                         "has no such option")
    a.maximize = maximize
    a.wd = wd
    a.lr = lr
    a.eps = eps
    a.eps_root = eps_root
    a.decay = FO_DECAY_NONE
    a.amsgrad = FO_AMS_RAW if amsgrad else FO_AMS_NONE
    if conv == C_TORCH:
        a.form = FO_ADAM_TORCH
        if wd != 0.0:
            a.decay = FO_DECAY_MUL if decoupled else FO_DECAY_L2
            a.decay_factor = 1.0 - lr * wd
        a.beta1, a.beta2 = b1, b2
        a.one_minus_beta1, a.one_minus_beta2 = 1.0 - b1, 1.0 - b2
        bc1 = 1.0 - pow(b1, <double>step)
        bc2 = 1.0 - pow(b2, <double>step)
        a.step_size = lr / bc1
        a.bc2_sqrt = sqrt(bc2)
    elif conv == C_TF1 or conv == C_KERAS:
        a.form = FO_ADAM_EPSHAT
        if conv == C_TF1:
            if wd != 0.0:
                raise ValueError("tf.compat.v1.train.AdamOptimizer has no weight decay "
                                 "(convention 'tf1'); use weight_decay=0")
            if amsgrad:
                raise ValueError("tf.compat.v1.train.AdamOptimizer has no amsgrad "
                                 "(convention 'tf1')")
            # TF1 holds lr, betas and eps as float32 tensors (cast to the variable's
            # dtype) and beta^t as float32 running products.
            lr = f32(lr)
            b1 = f32(b1)
            b2 = f32(b2)
            eps = f32(eps)
            b1p = tf1_power(b1, step)
            b2p = tf1_power(b2, step)
            # 1 - beta computed in the variable dtype from the float32-rounded beta
            a.one_minus_beta1 = round_to(1.0 - b1, dtype)
            a.one_minus_beta2 = round_to(1.0 - b2, dtype)
        else:
            if wd != 0.0 and not decoupled:
                raise ValueError("Keras has only decoupled weight decay (convention 'keras'): "
                                 "pass decoupled_weight_decay=True (fusedopt.AdamW)")
            if wd != 0.0:
                a.decay = FO_DECAY_SUB
            # Keras keeps the learning rate in a float32 variable (every backend)
            lr = f32(lr)
            # Keras: b^t = power(cast(b), cast(t)) in the variable dtype; 1-b as a Python
            # float cast to the variable dtype.
            # (float32: the double power of the float32 beta, rounded once)
            b1p = round_to(pow(round_to(b1, dtype), <double>step), dtype)
            b2p = round_to(pow(round_to(b2, dtype), <double>step), dtype)
            a.one_minus_beta1 = 1.0 - b1
            a.one_minus_beta2 = 1.0 - b2
        a.beta1, a.beta2, a.eps, a.lr = b1, b2, eps, lr
        if dtype == FO_F32:
            flr, fb1p, fb2p = <float>lr, <float>b1p, <float>b2p
            f1 = <float>1.0 - fb2p
            f2 = <float>1.0 - fb1p
            a.step_size = <float>(<float>(flr * sqrtf(f1)) / f2)
        else:
            a.step_size = lr * sqrt(1.0 - b2p) / (1.0 - b1p)
    elif conv == C_SKLEARN:
        a.form = FO_ADAM_SKLEARN
        if wd != 0.0:
            raise ValueError("scikit-learn's AdamOptimizer has no weight decay (its MLP adds "
                             "alpha*W to the gradient); convention 'sklearn' needs weight_decay=0")
        if amsgrad:
            raise ValueError("scikit-learn's AdamOptimizer has no amsgrad (convention 'sklearn')")
        a.beta1, a.beta2 = b1, b2
        a.one_minus_beta1, a.one_minus_beta2 = 1.0 - b1, 1.0 - b2
        a.step_size = lr * sqrt(1.0 - pow(b2, <double>step)) / (1.0 - pow(b1, <double>step))
    else:  # optax
        a.form = FO_ADAM_OPTAX
        if wd != 0.0 and not decoupled:
            raise ValueError("optax.adam has no weight decay; optax.adamw's is decoupled: pass "
                             "decoupled_weight_decay=True (fusedopt.AdamW) for convention 'optax'")
        if wd != 0.0:
            a.decay = FO_DECAY_OPTAX
        a.amsgrad = FO_AMS_HAT if amsgrad else FO_AMS_NONE
        a.beta1, a.beta2 = b1, b2
        a.one_minus_beta1, a.one_minus_beta2 = 1.0 - b1, 1.0 - b2
        # 1 - beta**count in the parameter's dtype (optax's tree_bias_correction)
        a.bc1 = round_to(1.0 - optax_power(b1, step, dtype), dtype)
        a.bc2 = round_to(1.0 - optax_power(b2, step, dtype), dtype)
    return 0


cdef int betas_pair(object betas, bint truthy, double *b1, double *b2) except -1:
    """A pair (b1, b2) with 0 <= b < 1, worded as torch.optim's errors; `truthy`: any
    pair (a tensor, an array), as torch.optim takes it."""
    if truthy and type(betas) is not tuple and not isinstance(betas, (str, bytes)):
        try:
            betas = tuple(betas)
        except TypeError:
            pass
    if type(betas) is not tuple and (isinstance(betas, _ndarray) or
                                     not isinstance(betas, (tuple, list))) \
            or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    b1[0] = real(betas[0], "beta parameter at index 0", 0.0, False, 1.0, True,
                 "beta parameter at index 0")
    b2[0] = real(betas[1], "beta parameter at index 1", 0.0, False, 1.0, True,
                 "beta parameter at index 1")
    return 0


cdef TensorLists step_arrays(list arrays, tuple names, tuple writable, tuple used,
                             bint single, list index, StepPlan plan):
    """The arrays of one optimizer step, acquired and validated (TensorLists.fill), or
    those a ready plan holds: ``arrays`` is ``[params, grads, *states]`` as the kernel
    entries take it, ``used[r]`` whether state role r is stepped by this call."""
    cdef TensorLists tl
    cdef Py_ssize_t r, nroles = len(names)
    if plan is not None:
        tl = plan.tl
        for r in range(2, nroles):
            if used[r] != (tl.role(r) != NULL):
                raise ValueError("internal: the plan's states differ from the group's")
        return tl
    if not single and (type(arrays[0]) is not list or type(arrays[1]) is not list):
        raise TypeError(f"{names[0]} and grads must be lists of arrays")
    tl = TensorLists(1 if single else len(<list>arrays[0]), names)
    tl.fill(arrays, writable, single, index, True, used)
    return tl


ctypedef struct adam_h:
    # an Adam call's hyper-parameters, validated
    double lr, b1, b2, eps, wd, eps_root
    double gs                   # the clip coefficient of this call (1: none)
    int conv
    bint amsgrad, maximize, decoupled


cdef int adam_set(adam_h *h, object lr, object betas, object eps, object wd, object amsgrad,
                  object maximize, object decoupled, object convention, object eps_root,
                  bint truthy) except -1:
    """Validates each given hyper-parameter into h (one message per error, worded as
    torch.optim's); an argument that is _MISSING keeps h's value.  `truthy`: the torch
    drop-ins read flags and betas as torch.optim does (any truthy value, any pair)."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if betas is not _MISSING:
        betas_pair(betas, truthy, &h.b1, &h.b2)
    if eps is not _MISSING:
        h.eps = real(eps, "epsilon", 0.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if eps_root is not _MISSING:
        h.eps_root = real(eps_root, "eps_root", 0.0)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    if amsgrad is not _MISSING:
        h.amsgrad = flag(amsgrad, "amsgrad", truthy)
    if maximize is not _MISSING:
        h.maximize = flag(maximize, "maximize", truthy)
    if decoupled is not _MISSING:
        h.decoupled = flag(decoupled, "decoupled_weight_decay", truthy)
    return 0


cdef int adam_from(adam_h *h, dict hyper, dict defaults) except -1:
    """h from a param group (or keyword arguments) over the description's defaults."""
    adam_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "betas"),
             hp(hyper, defaults, "eps"), hp(hyper, defaults, "weight_decay"),
             hp(hyper, defaults, "amsgrad"), hp(hyper, defaults, "maximize"),
             hp(hyper, defaults, "decoupled_weight_decay"), hp(hyper, defaults, "convention"),
             hp(hyper, defaults, "eps_root"), PyDict_GetItem(defaults, "torch_values") != NULL)
    if h.conv == C_KERAS and h.wd != 0.0 and \
            PyDict_GetItem(defaults, "keras_weight_decay_decoupled") != NULL:
        h.decoupled = True          # the classes: Keras' Adam has only decoupled decay
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists adam_run(adam_h *h, list arrays, object step, object n_threads, str pname,
                          bint single, list index, bint dry, StepPlan plan):
    cdef long long t = integer(step, "step", 1)
    cdef int nt = nthreads_arg(n_threads)
    if plan is None:
        for k, role in ((2, "exp_avg"), (3, "exp_avg_sq")):
            if arrays[k] is (_REQUIRED if single else None):
                raise TypeError(f"{role} is required (an array like param, initially zeros)")
        if h.amsgrad and arrays[4] is None:
            raise ValueError("amsgrad=True needs max_exp_avg_sq (an array like param, "
                             "initially zeros)")
    cdef TensorLists tl = step_arrays(
        arrays, (pname, "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        (True, False, True, True, True), (True, True, True, True, h.amsgrad), single, index,
        plan)
    cdef fo_adam_args a
    adam_resolve(&a, tl.dtype if tl.dtype >= 0 else FO_F32, h.conv, t, h.lr, h.b1, h.b2,
                 h.eps, h.wd, h.decoupled, h.amsgrad, h.maximize, h.eps_root)
    a.grad_scale = h.gs
    if not dry:
        run_step(FO_OPT_adam, &a, tl, nt)
    return tl


def adam(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
         bint single=False, list index=None, bint dry=False, StepPlan plan=None,
         bint keep=False, double grad_scale=1.0):
    """One Adam (AdamW) step over lists of tensors, in one C call.

    ``arrays`` is ``[params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs]`` (the last
    None without amsgrad); each hyper-parameter is taken from ``hyper`` (a param group, or
    keyword arguments), else from ``defaults`` (the optimizer description's).  Everything
    is validated before any array is written; ``dry=True`` only validates.  Errors name
    ``pname`` (``pname[k]`` in a list call, k from ``index``).  With a ready ``plan``
    (StepPlan), its arrays are stepped and ``arrays`` is not read; ``keep=True`` returns
    the call's TensorLists (for a StepPlan)."""
    if plan is None and (len(arrays) != 5 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, exp_avgs, exp_avg_sqs, "
                        "max_exp_avg_sqs], lists of arrays (the last may be None)")
    cdef adam_h h
    adam_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = adam_run(&h, arrays, step, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef adam_h ADAM_DEFAULTS
cdef bint adam_defaults_set = False


def adam_step(param, grad, exp_avg=_REQUIRED, exp_avg_sq=_REQUIRED, *, step=_REQUIRED,
              max_exp_avg_sq=None, lr=_MISSING, betas=_MISSING, eps=_MISSING,
              weight_decay=_MISSING, amsgrad=_MISSING, maximize=_MISSING,
              decoupled_weight_decay=_MISSING, convention=_MISSING, eps_root=_MISSING,
              n_threads=None):
    """The functional Adam step (``fusedopt.adam_step``, documented there): keyword
    arguments parsed here, the others from the description's defaults (set_defaults)."""
    if step is _REQUIRED:
        raise TypeError("adam_step() missing required keyword argument 'step'")
    if not adam_defaults_set:
        raise RuntimeError("internal: adam_step's defaults are not set")
    if max_exp_avg_sq is not None:
        state_type(max_exp_avg_sq, "max_exp_avg_sq")     # (even if unused)
    cdef adam_h h = ADAM_DEFAULTS
    adam_set(&h, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay,
             convention, eps_root, False)
    adam_run(&h, [param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq], step, n_threads,
             "param", True, None, False, None)


# ----------------------------------------------------------------------------- SGD

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_SGD_TORCH
        FO_SGD_TF1
        FO_SGD_KERAS
        FO_SGD_OPTAX
        FO_SGD_SKLEARN
        FO_SGD_PLAIN
    ctypedef struct fo_sgd_args:
        int form, decay, nesterov, maximize, first_step
        double lr, momentum, one_minus_dampening, wd, grad_scale

    enum:
        FO_OPT_sgd


ctypedef struct sgd_h:
    # an SGD call's hyper-parameters, validated
    double lr, momentum, dampening, wd, gs
    int conv
    bint nesterov, maximize


cdef int sgd_set(sgd_h *h, object lr, object momentum, object dampening, object wd,
                 object nesterov, object maximize, object convention, bint truthy) except -1:
    """As adam_set, for SGD."""
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if momentum is not _MISSING:
        h.momentum = real(momentum, "momentum", 0.0)
    if dampening is not _MISSING:
        h.dampening = real(dampening, "dampening", 0.0, False, 1.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if nesterov is not _MISSING:
        h.nesterov = flag(nesterov, "nesterov", truthy)
    if maximize is not _MISSING:
        h.maximize = flag(maximize, "maximize", truthy)
    return 0


cdef int sgd_from(sgd_h *h, dict hyper, dict defaults) except -1:
    sgd_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "momentum"),
            hp(hyper, defaults, "dampening"), hp(hyper, defaults, "weight_decay"),
            hp(hyper, defaults, "nesterov"), hp(hyper, defaults, "maximize"),
            hp(hyper, defaults, "convention"), PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists sgd_run(sgd_h *h, list arrays, object step, object n_threads, str pname,
                         bint single, list index, bint dry, StepPlan plan):
    cdef int nt = nthreads_arg(n_threads)
    cdef long long t = 0
    cdef int conv = h.conv
    cdef double dlr = h.lr, mu = h.momentum, d = h.dampening, wd = h.wd
    cdef bint nesterov = h.nesterov, maximize = h.maximize
    cdef str cname = CONVENTIONS[conv]
    cdef TensorLists tl
    if nesterov and (mu <= 0.0 or d != 0.0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    if maximize and conv != C_TORCH:
        raise ValueError(f"maximize=True is a torch option; convention {cname!r} has no such option")
    if d != 0.0 and conv != C_TORCH:
        raise ValueError(f"dampening is a torch option; convention {cname!r} has no such option")
    if wd != 0.0 and conv not in (C_TORCH, C_KERAS):
        raise ValueError(f"convention {cname!r} has no weight decay in its SGD; use weight_decay=0")
    cdef fo_sgd_args a
    memset(&a, 0, sizeof(fo_sgd_args))
    a.grad_scale = h.gs
    a.lr, a.momentum, a.one_minus_dampening, a.wd = dlr, mu, 1.0 - d, wd
    a.nesterov, a.maximize = nesterov, maximize
    if conv == C_TF1:
        a.lr, a.momentum = f32(dlr), f32(mu)     # float32 tensors in TF1
    elif conv == C_KERAS:
        a.lr = f32(dlr)                          # Keras' learning-rate variable is float32
    if wd != 0.0:
        a.decay = FO_DECAY_L2 if conv == C_TORCH else FO_DECAY_SUB
    if step is not None:
        t = integer(step, "step", 1)
    cdef bint use_buf = mu != 0.0
    if not use_buf:
        a.form = FO_SGD_PLAIN
    else:
        a.form = (FO_SGD_TORCH, FO_SGD_TF1, FO_SGD_KERAS, FO_SGD_OPTAX, FO_SGD_SKLEARN)[conv]
        if conv == C_TORCH:
            if step is None:
                raise ValueError("torch-convention momentum needs step (1 on the first step, "
                                 "when the buffer is set to the gradient)")
            a.first_step = t == 1
        if plan is None and arrays[2] is None:
            raise ValueError("momentum != 0 needs momentum_buffer (an array like param; "
                             "zeros before the first step)")
    tl = step_arrays(arrays, (pname, "grad", "momentum_buffer"), (True, False, True),
                     (True, True, use_buf), single, index, plan)
    if not dry:
        run_step(FO_OPT_sgd, &a, tl, nt)
    return tl


def sgd(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
        bint single=False, list index=None, bint dry=False, StepPlan plan=None,
        bint keep=False, double grad_scale=1.0):
    """One SGD step over lists of tensors, in one C call: ``arrays`` is ``[params, grads,
    momentum_buffers]`` (the last None without momentum); ``step`` 1 marks torch's first
    momentum step (the buffer is set to the gradient), None is allowed without torch
    momentum.  Hyper-parameters and errors as :func:`adam`."""
    if plan is None and (len(arrays) != 3 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, momentum_buffers], lists of arrays "
                        "(the last may be None)")
    cdef sgd_h h
    sgd_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = sgd_run(&h, arrays, step, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef sgd_h SGD_DEFAULTS
cdef bint sgd_defaults_set = False


def sgd_step(param, grad, momentum_buffer=None, *, step=None, lr=_REQUIRED,
             momentum=_MISSING, dampening=_MISSING, nesterov=_MISSING,
             weight_decay=_MISSING, maximize=_MISSING, convention=_MISSING, n_threads=None):
    """The functional SGD step (``fusedopt.sgd_step``, documented there)."""
    if lr is _REQUIRED:
        raise TypeError("sgd_step() missing required keyword argument 'lr'")
    if not sgd_defaults_set:
        raise RuntimeError("internal: sgd_step's defaults are not set")
    if momentum_buffer is not None:
        state_type(momentum_buffer, "momentum_buffer")   # (even if unused)
    cdef sgd_h h = SGD_DEFAULTS
    sgd_set(&h, lr, momentum, dampening, weight_decay, nesterov, maximize, convention, False)
    sgd_run(&h, [param, grad, momentum_buffer], step, n_threads, "param", True, None, False,
            None)


# ----------------------------------------------------------------------------- Lion

cdef extern from "fusedopt.h" nogil:
    ctypedef struct fo_lion_args:
        int decay, maximize
        double lr, beta1, beta2, one_minus_beta1, one_minus_beta2, wd, grad_scale

    enum:
        FO_OPT_lion


ctypedef struct lion_h:
    double lr, b1, b2, wd, gs
    int conv


cdef int lion_set(lion_h *h, object lr, object betas, object wd, object convention,
                  bint truthy) except -1:
    """As adam_set, for Lion."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if betas is not _MISSING:
        betas_pair(betas, truthy, &h.b1, &h.b2)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    return 0


cdef int lion_from(lion_h *h, dict hyper, dict defaults) except -1:
    lion_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "betas"),
             hp(hyper, defaults, "weight_decay"), hp(hyper, defaults, "convention"),
             PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists lion_run(lion_h *h, list arrays, object n_threads, str pname, bint single,
                          list index, bint dry, StepPlan plan):
    """optax.lion's rule (the torch convention too: torch has no Lion) or Keras' (weight
    decay p -= (p*wd)*lr first; lr a float32 variable; 1 - beta in the variable's dtype)."""
    cdef int nt = nthreads_arg(n_threads)
    if h.conv != C_TORCH and h.conv != C_OPTAX and h.conv != C_KERAS:
        raise ValueError(f"convention {CONVENTIONS[h.conv]!r} has no Lion; use 'torch', "
                         "'optax' or 'keras'")
    if plan is None and arrays[2] is (_REQUIRED if single else None):
        raise TypeError("exp_avg is required (an array like param, initially zeros)")
    cdef TensorLists tl = step_arrays(arrays, (pname, "grad", "exp_avg"), (True, False, True),
                                      (True, True, True), single, index, plan)
    cdef int dtype = tl.dtype if tl.dtype >= 0 else FO_F32
    cdef fo_lion_args a
    memset(&a, 0, sizeof(fo_lion_args))
    a.grad_scale = h.gs
    a.lr, a.beta1, a.beta2, a.wd = h.lr, h.b1, h.b2, h.wd
    a.one_minus_beta1, a.one_minus_beta2 = 1.0 - h.b1, 1.0 - h.b2     # rounded once
    if h.conv == C_KERAS:
        a.lr = f32(h.lr)
        a.beta1, a.beta2 = round_to(h.b1, dtype), round_to(h.b2, dtype)
        a.one_minus_beta1 = round_to(1.0 - a.beta1, dtype)   # in the variable's dtype
        a.one_minus_beta2 = round_to(1.0 - a.beta2, dtype)
        a.decay = FO_DECAY_SUB if h.wd != 0.0 else FO_DECAY_NONE
    else:
        a.decay = FO_DECAY_OPTAX if h.wd != 0.0 else FO_DECAY_NONE
    if not dry:
        run_step(FO_OPT_lion, &a, tl, nt)
    return tl


def lion(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
         bint single=False, list index=None, bint dry=False, StepPlan plan=None,
         bint keep=False, double grad_scale=1.0):
    """One Lion step over lists of tensors, in one C call: ``arrays`` is ``[params, grads,
    exp_avgs]``; ``step`` is not used (Lion has no bias correction).  Hyper-parameters
    and errors as :func:`adam`."""
    if plan is None and (len(arrays) != 3 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, exp_avgs], lists of arrays")
    cdef lion_h h
    lion_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = lion_run(&h, arrays, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef lion_h LION_DEFAULTS
cdef bint lion_defaults_set = False


def lion_step(param, grad, exp_avg=_REQUIRED, *, lr=_MISSING, betas=_MISSING,
              weight_decay=_MISSING, convention=_MISSING, n_threads=None):
    """The functional Lion step (``fusedopt.lion_step``, documented there)."""
    if not lion_defaults_set:
        raise RuntimeError("internal: lion_step's defaults are not set")
    cdef lion_h h = LION_DEFAULTS
    lion_set(&h, lr, betas, weight_decay, convention, False)
    lion_run(&h, [param, grad, exp_avg], n_threads, "param", True, None, False, None)


# ----------------------------------------------------------------------------- Adagrad

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_ADAGRAD_TORCH
        FO_ADAGRAD_KERAS
        FO_ADAGRAD_OPTAX
    ctypedef struct fo_adagrad_args:
        int form, decay, maximize
        double lr, eps, wd, grad_scale

    enum:
        FO_OPT_adagrad


ctypedef struct adagrad_h:
    double lr, lr_decay, wd, iav, eps, gs
    int conv
    bint maximize


cdef int adagrad_set(adagrad_h *h, object lr, object lr_decay, object wd, object iav,
                     object eps, object maximize, object convention, bint truthy) except -1:
    """As adam_set, for Adagrad."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if lr_decay is not _MISSING:
        h.lr_decay = real(lr_decay, "lr_decay", 0.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if iav is not _MISSING:
        h.iav = real(iav, "initial_accumulator_value", 0.0)
    if eps is not _MISSING:
        h.eps = real(eps, "epsilon", 0.0)
    if maximize is not _MISSING:
        h.maximize = flag(maximize, "maximize", truthy)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    return 0


cdef int adagrad_from(adagrad_h *h, dict hyper, dict defaults) except -1:
    adagrad_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "lr_decay"),
                hp(hyper, defaults, "weight_decay"),
                hp(hyper, defaults, "initial_accumulator_value"), hp(hyper, defaults, "eps"),
                hp(hyper, defaults, "maximize"), hp(hyper, defaults, "convention"),
                PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists adagrad_run(adagrad_h *h, list arrays, object step, object n_threads,
                             str pname, bint single, list index, bint dry, StepPlan plan):
    """torch.optim.Adagrad's rule ("torch"; "tf1" is the same with lr a float32 tensor),
    Keras' (eps inside the square root, decoupled weight decay) or optax's (rsqrt)."""
    cdef long long t = 1 if step is None else integer(step, "step", 1)
    cdef int nt = nthreads_arg(n_threads)
    cdef int conv = h.conv
    cdef str cname = CONVENTIONS[conv]
    if step is None and h.lr_decay != 0.0:
        raise ValueError("lr_decay needs step (1 on the first update)")
    if conv == C_SKLEARN:
        raise ValueError("convention 'sklearn' has no Adagrad; use 'torch', 'tf1', 'keras' "
                         "or 'optax'")
    if conv != C_TORCH:
        if h.maximize:
            raise ValueError(f"maximize=True is a torch option; convention {cname!r} has no "
                             "such option")
        if h.lr_decay != 0.0:
            raise ValueError(f"lr_decay is a torch option; convention {cname!r} has no such "
                             "option")
        if h.wd != 0.0 and conv != C_KERAS:
            raise ValueError(f"convention {cname!r} has no weight decay in its Adagrad; use "
                             "weight_decay=0")
    if plan is None and arrays[2] is (_REQUIRED if single else None):
        raise TypeError("state_sum is required (an array like param, initially "
                        "initial_accumulator_value)")
    cdef TensorLists tl = step_arrays(arrays, (pname, "grad", "state_sum"), (True, False, True),
                                      (True, True, True), single, index, plan)
    cdef int dtype = tl.dtype if tl.dtype >= 0 else FO_F32
    cdef fo_adagrad_args a
    memset(&a, 0, sizeof(fo_adagrad_args))
    a.grad_scale = h.gs
    a.lr, a.eps, a.wd, a.maximize = h.lr, h.eps, h.wd, h.maximize
    a.form, a.decay = FO_ADAGRAD_TORCH, FO_DECAY_NONE
    if conv == C_TORCH:
        a.lr = h.lr / (1.0 + (<double>(t - 1)) * h.lr_decay)     # torch: in double
        if h.wd != 0.0:
            a.decay = FO_DECAY_L2
    elif conv == C_TF1:
        a.lr = f32(h.lr)                       # a float32 tensor, cast to the variable's dtype
    elif conv == C_KERAS:
        a.form, a.lr = FO_ADAGRAD_KERAS, f32(h.lr)       # Keras' lr variable is float32
        if h.wd != 0.0:
            a.decay = FO_DECAY_SUB
    else:
        a.form = FO_ADAGRAD_OPTAX
    if not dry:
        run_step(FO_OPT_adagrad, &a, tl, nt)
    return tl


def adagrad(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
            bint single=False, list index=None, bint dry=False, StepPlan plan=None,
            bint keep=False, double grad_scale=1.0):
    """One Adagrad step over lists of tensors, in one C call: ``arrays`` is ``[params,
    grads, state_sums]``; ``step`` (torch's, after its increment; None: 1) is lr_decay's.
    Hyper-parameters and errors as :func:`adam`."""
    if plan is None and (len(arrays) != 3 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, state_sums], lists of arrays")
    cdef adagrad_h h
    adagrad_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = adagrad_run(&h, arrays, step, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef adagrad_h ADAGRAD_DEFAULTS
cdef bint adagrad_defaults_set = False


def adagrad_step(param, grad, state_sum=_REQUIRED, *, step=None, lr=_MISSING,
                 lr_decay=_MISSING, weight_decay=_MISSING, eps=_MISSING, maximize=_MISSING,
                 convention=_MISSING, n_threads=None):
    """The functional Adagrad step (``fusedopt.adagrad_step``, documented there)."""
    if not adagrad_defaults_set:
        raise RuntimeError("internal: adagrad_step's defaults are not set")
    cdef adagrad_h h = ADAGRAD_DEFAULTS
    adagrad_set(&h, lr, lr_decay, weight_decay, _MISSING, eps, maximize, convention, False)
    adagrad_run(&h, [param, grad, state_sum], step, n_threads, "param", True, None, False,
                None)


# ----------------------------------------------------------------------------- RMSprop

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_RMSPROP_TORCH
        FO_RMSPROP_TF1
        FO_RMSPROP_KERAS
        FO_RMSPROP_OPTAX
    ctypedef struct fo_rmsprop_args:
        int form, decay, maximize, centered, momentum
        double lr, alpha, one_minus_alpha, eps, mu, wd, grad_scale

    enum:
        FO_OPT_rmsprop


ctypedef struct rmsprop_h:
    double lr, alpha, eps, wd, mu, init, gs
    int conv
    bint centered, maximize


cdef int rmsprop_set(rmsprop_h *h, object lr, object alpha, object eps, object wd,
                     object momentum, object centered, object init, object maximize,
                     object convention, bint truthy) except -1:
    """As adam_set, for RMSprop."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if alpha is not _MISSING:
        h.alpha = real(alpha, "alpha", 0.0, False, 1.0, True)
    if eps is not _MISSING:
        h.eps = real(eps, "epsilon", 0.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if momentum is not _MISSING:
        h.mu = real(momentum, "momentum", 0.0)
    if centered is not _MISSING:
        h.centered = flag(centered, "centered", truthy)
    if init is not _MISSING:
        h.init = real(init, "initial_square_avg", 0.0)
    if maximize is not _MISSING:
        h.maximize = flag(maximize, "maximize", truthy)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    return 0


cdef int rmsprop_from(rmsprop_h *h, dict hyper, dict defaults) except -1:
    rmsprop_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "alpha"),
                hp(hyper, defaults, "eps"), hp(hyper, defaults, "weight_decay"),
                hp(hyper, defaults, "momentum"), hp(hyper, defaults, "centered"),
                hp(hyper, defaults, "initial_square_avg"), hp(hyper, defaults, "maximize"),
                hp(hyper, defaults, "convention"),
                PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists rmsprop_run(rmsprop_h *h, list arrays, object n_threads, str pname,
                             bint single, list index, bint dry, StepPlan plan):
    """torch.optim.RMSprop's rule, TF1's, Keras' or optax's (fo_rmsprop.h), with each
    one's rounding of the scalars: torch's are Python floats (1 - alpha in double); TF1
    casts lr, decay, momentum and eps to the variable's dtype (1 - decay in it); Keras
    and optax round the Python floats (1 - rho in double), Keras' lr is a float32
    variable."""
    cdef int nt = nthreads_arg(n_threads)
    cdef int conv = h.conv
    cdef str cname = CONVENTIONS[conv]
    cdef bint mom = h.mu > 0.0
    if conv == C_SKLEARN:
        raise ValueError("convention 'sklearn' has no RMSprop; use 'torch', 'tf1', 'keras' "
                         "or 'optax'")
    if conv != C_TORCH:
        if h.maximize:
            raise ValueError(f"maximize=True is a torch option; convention {cname!r} has no "
                             "such option")
        if h.wd != 0.0 and conv != C_KERAS:
            raise ValueError(f"convention {cname!r} has no weight decay in its RMSprop; use "
                             "weight_decay=0")
    if plan is None:
        if arrays[2] is (_REQUIRED if single else None):
            raise TypeError("square_avg is required (an array like param, initially "
                            "initial_square_avg)")
        if mom and arrays[3] is None:
            raise ValueError("momentum > 0 needs momentum_buffer (an array like param, "
                             "initially zeros)")
        if h.centered and arrays[4] is None:
            raise ValueError("centered=True needs grad_avg (an array like param, initially "
                             "zeros)")
    cdef TensorLists tl = step_arrays(
        arrays, (pname, "grad", "square_avg", "momentum_buffer", "grad_avg"),
        (True, False, True, True, True), (True, True, True, mom, h.centered), single, index,
        plan)
    cdef int dtype = tl.dtype if tl.dtype >= 0 else FO_F32
    cdef fo_rmsprop_args a
    memset(&a, 0, sizeof(fo_rmsprop_args))
    a.grad_scale = h.gs
    a.form = (FO_RMSPROP_TORCH, FO_RMSPROP_TF1, FO_RMSPROP_KERAS, FO_RMSPROP_OPTAX)[conv]
    a.maximize, a.centered, a.momentum = h.maximize, h.centered, mom
    a.lr, a.alpha, a.one_minus_alpha, a.eps, a.mu, a.wd = \
        h.lr, h.alpha, 1.0 - h.alpha, h.eps, h.mu, h.wd          # 1 - alpha rounded once
    if conv == C_TF1:                    # float32 tensors cast to the variable's dtype
        a.lr, a.eps = round_to(f32(h.lr), dtype), round_to(f32(h.eps), dtype)
        a.mu, a.alpha = round_to(f32(h.mu), dtype), round_to(f32(h.alpha), dtype)
        a.one_minus_alpha = round_to(1.0 - a.alpha, dtype)          # in the kernel's T
    elif conv == C_KERAS:
        a.lr = f32(h.lr)                 # Keras' learning-rate variable is float32
    if h.wd != 0.0:
        a.decay = FO_DECAY_L2 if conv == C_TORCH else FO_DECAY_SUB
    if not dry:
        run_step(FO_OPT_rmsprop, &a, tl, nt)
    return tl


def rmsprop(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
            bint single=False, list index=None, bint dry=False, StepPlan plan=None,
            bint keep=False, double grad_scale=1.0):
    """One RMSprop step over lists of tensors, in one C call: ``arrays`` is ``[params,
    grads, square_avgs, momentum_buffers, grad_avgs]`` (the last two None unless momentum
    > 0, centered); ``step`` is not used.  Hyper-parameters and errors as :func:`adam`."""
    if plan is None and (len(arrays) != 5 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, square_avgs, momentum_buffers, "
                        "grad_avgs], lists of arrays (the last two may be None)")
    cdef rmsprop_h h
    rmsprop_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = rmsprop_run(&h, arrays, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef rmsprop_h RMSPROP_DEFAULTS
cdef bint rmsprop_defaults_set = False


def rmsprop_step(param, grad, square_avg=_REQUIRED, momentum_buffer=None, grad_avg=None, *,
                 lr=_MISSING, alpha=_MISSING, eps=_MISSING, weight_decay=_MISSING,
                 momentum=_MISSING, centered=_MISSING, maximize=_MISSING,
                 convention=_MISSING, n_threads=None):
    """The functional RMSprop step (``fusedopt.rmsprop_step``, documented there)."""
    if not rmsprop_defaults_set:
        raise RuntimeError("internal: rmsprop_step's defaults are not set")
    for a, name in ((momentum_buffer, "momentum_buffer"), (grad_avg, "grad_avg")):
        if a is not None:
            state_type(a, name)          # (even if unused)
    cdef rmsprop_h h = RMSPROP_DEFAULTS
    rmsprop_set(&h, lr, alpha, eps, weight_decay, momentum, centered, _MISSING, maximize,
                convention, False)
    rmsprop_run(&h, [param, grad, square_avg, momentum_buffer, grad_avg], n_threads,
                "param", True, None, False, None)


# ----------------------------------------------------------------------------- Adafactor

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_AF_TORCH
        FO_AF_KERAS
        FO_AF_OPTAX
    ctypedef struct fo_adafactor_args:
        int form, maximize, decay
        double grad_scale, w, beta2_t, one_minus_beta2_t, eps1, eps1_sq, eps2, rho
        double decay_factor, wd, lr, d
    ctypedef struct fo_af_dims:
        fo_index nb, nr, nq, nm, ns
        int norm_cols
    void fo_adafactor(int dtype, const fo_adafactor_args *a, int ntensors, void **ps,
                      const void **gs, void **rows, void **cols, void **vars,
                      const fo_af_dims *dims, double *scratch, int n_threads)
    fo_index fo_adafactor_scratch(const fo_af_dims *d)


#: optax.adafactor's min_dim_size_to_factor (its default; fusedopt's optax convention
#: has no other)
OPTAX_MIN_DIM_TO_FACTOR = 128
_OPTAX_AXES = {}        # shape -> adafactor_factoring's answer, for the optax convention


cdef object optax_axes(tuple shape):
    """optax's factoring of a shape of two or more dimensions (factorized._factored_dims:
    numpy.argsort(shape)'s last two, the second largest d1 and the largest d0, when
    shape[d1] >= 128) as (a, b, norm_cols), or None; cached per shape."""
    r = _OPTAX_AXES.get(shape, _MISSING)
    if r is _MISSING:
        order = np.argsort(shape)
        d1, d0 = int(order[len(shape) - 2]), int(order[len(shape) - 1])
        r = None if shape[d1] < OPTAX_MIN_DIM_TO_FACTOR else (min(d0, d1), max(d0, d1),
                                                               d0 < d1)
        if len(_OPTAX_AXES) < 4096:
            _OPTAX_AXES[shape] = r
    return r


cdef bint af_factored(cnp.ndarray p, bint optax, int *a, int *b, int *norm_cols) except -1:
    """Whether p is factored, and over which axes a < b (adafactor_factoring for an array,
    on the per-step path: torch's and Keras' rule from p's ndim, no Python object made)."""
    cdef int ndim = cnp.PyArray_NDIM(p)
    if ndim < 2:
        return False
    if not optax:
        a[0], b[0], norm_cols[0] = ndim - 2, ndim - 1, 0
        return True
    f = optax_axes((<object>p).shape)
    if f is None:
        return False
    a[0], b[0], norm_cols[0] = f[0], f[1], f[2]
    return True


def adafactor_factoring(tuple shape, str convention="torch"):
    """The axes a parameter of ``shape`` keeps Adafactor's factored statistics over, as
    ``(a, b, norm_cols)`` with ``a < b``, or None when it keeps a full variance.  torch
    and Keras: the last two of a tensor of two or more dimensions.  optax
    (``factorized._factored_dims``): its two largest, ``numpy.argsort(shape)``'s last two
    (ties as numpy orders them), when the second largest is at least 128.  norm_cols:
    the largest is axis ``a``, so the statistics optax divides by their mean are the
    column ones (the means over ``a``); else the row ones (the means over ``b``)."""
    if len(shape) < 2:
        return None
    if convention == "optax":
        return optax_axes(shape)
    return (len(shape) - 2, len(shape) - 1, False)


ctypedef struct adafactor_h:
    double lr, beta2_decay, eps1, eps2, d, wd, gs
    int conv
    bint eps1_auto, maximize


cdef int adafactor_set(adafactor_h *h, object lr, object beta2_decay, object eps, object d,
                       object wd, object maximize, object convention, bint truthy) except -1:
    """As adam_set, for Adafactor (torch.optim.Adafactor's checks)."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if beta2_decay is not _MISSING:
        h.beta2_decay = real(beta2_decay, "beta2_decay", -INF, False, 0.0)
    if eps is not _MISSING:
        if truthy and type(eps) is not tuple and isinstance(eps, list):
            eps = tuple(eps)
        if type(eps) is not tuple and not isinstance(eps, list) or len(eps) != 2:
            raise TypeError(f"eps must be a pair (eps1 or None, eps2), got {eps!r}")
        h.eps1_auto = eps[0] is None
        h.eps1 = 0.0 if h.eps1_auto else real(eps[0], "epsilon1", 0.0)
        h.eps2 = real(eps[1], "epsilon2", 0.0)
    if d is not _MISSING:
        h.d = real(d, "clipping threshold d", 1.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if maximize is not _MISSING:
        h.maximize = flag(maximize, "maximize", truthy)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    return 0


cdef int adafactor_from(adafactor_h *h, dict hyper, dict defaults) except -1:
    adafactor_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "beta2_decay"),
                  hp(hyper, defaults, "eps"), hp(hyper, defaults, "d"),
                  hp(hyper, defaults, "weight_decay"), hp(hyper, defaults, "maximize"),
                  hp(hyper, defaults, "convention"),
                  PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef int adafactor_presence(list arrays, bint single, Py_ssize_t n, list index, int conv,
                            fo_af_dims *dims, int *faxes) except -1:
    """Which statistics each tensor needs (adafactor_factoring: row_var and col_var when
    it is factored, else variance); its kernel shape (dims[k]) and the axes its
    statistics have of size 1 (faxes[2k]: row_var's, faxes[2k + 1]: col_var's)."""
    cdef Py_ssize_t k, ki, j, i
    cdef int ndim, a = 0, b = 0, norm_cols = 0
    cdef cnp.npy_intp *sh
    cdef bint optax = conv == C_OPTAX
    if not single:         # (before indexing them; fill words the same errors)
        for j, role in ((1, "grads"), (2, "row_vars"), (3, "col_vars"), (4, "variances")):
            if arrays[j] is not None and (type(arrays[j]) is not list or
                                          len(<list>arrays[j]) != n):
                raise TypeError(f"{role} must be None or a list of {n} entries (one per "
                                f"parameter), got {type(arrays[j]).__name__}"
                                + (f" of {len(arrays[j])}" if isinstance(arrays[j], list)
                                   else ""))
    for k in range(n):
        p = arrays[0] if single else (<list>arrays[0])[k]
        if not cnp.PyArray_Check(p):
            continue                        # (fill names the argument)
        ndim = cnp.PyArray_NDIM(<cnp.ndarray>p)
        sh = cnp.PyArray_DIMS(<cnp.ndarray>p)
        factored = af_factored(<cnp.ndarray>p, optax, &a, &b, &norm_cols)
        ki = -1 if single else (k if index is None else <Py_ssize_t>index[k])
        r, c, v = [arrays[j] if single else
                   (None if arrays[j] is None else (<list>arrays[j])[k]) for j in (2, 3, 4)]
        if factored:
            if r is None or c is None:
                if optax:
                    raise ValueError(
                        f"{nm('param', ki)} of shape {p.shape} is factored over its axes {a} "
                        f"and {b} (optax's rule: its two largest, the second at least "
                        f"{OPTAX_MIN_DIM_TO_FACTOR}) and needs row_var and col_var "
                        f"(initially zeros, of its shape with dimension {b}, and "
                        f"dimension {a}, of size 1)")
                raise ValueError(f"{nm('param', ki)} has {ndim} dimensions: Adafactor "
                                 "factors its last two and needs row_var and col_var "
                                 "(initially zeros, of its shape with the last, and the "
                                 "second to last, dimension 1)")
            if v is not None:
                raise ValueError(f"{nm('param', ki)} has {ndim} dimensions and is "
                                 "factored: pass row_var and col_var, not variance")
            faxes[2 * k], faxes[2 * k + 1] = b, a
            dims[k].nb, dims[k].nq, dims[k].ns = 1, 1, 1
            for i in range(ndim):
                if i < a:
                    dims[k].nb *= sh[i]
                elif a < i < b:
                    dims[k].nq *= sh[i]
                elif i > b:
                    dims[k].ns *= sh[i]
            dims[k].nr, dims[k].nm, dims[k].norm_cols = sh[a], sh[b], norm_cols
        else:
            if r is not None or c is not None:
                if optax:
                    raise ValueError(
                        f"{nm('param', ki)} of shape {p.shape} is not factored (optax "
                        "factors a tensor whose second largest dimension is at least "
                        f"{OPTAX_MIN_DIM_TO_FACTOR}); pass variance, not row_var or "
                        "col_var")
                raise ValueError(f"{nm('param', ki)} has {ndim} dimension(s): it is not "
                                 "factored (torch factors tensors of 2 or more "
                                 "dimensions); pass variance, not row_var or col_var")
            if v is None:
                raise ValueError(f"{nm('param', ki)} has {ndim} dimension(s): Adafactor "
                                 "keeps its full variance (an array like it, initially "
                                 "zeros)")
            dims[k].nb, dims[k].nr, dims[k].nq, dims[k].ns = 1, 1, 1, 1
            dims[k].nm, dims[k].norm_cols = cnp.PyArray_SIZE(<cnp.ndarray>p), 0
    return 0


cdef object adafactor_run(adafactor_h *h, list arrays, object step, object n_threads,
                          str pname, bint single, list index, bint dry):
    """torch.optim.Adafactor's rule (fo_adafactor.h), its scalars as torch computes them:
    Python floats from the float step count t (``t**beta2_decay``, ``min(lr,
    1/t**0.5)``), eps1 None meaning the dtype's machine epsilon; or Keras' (every scalar
    a tensor of the variable's dtype, lr a float32 variable); or optax's (its decay
    ``1 - t**-decay_rate`` in float32, the others weak Python floats: the dtype's)."""
    cdef int nt = nthreads_arg(n_threads)
    if h.conv != C_TORCH and h.conv != C_KERAS and h.conv != C_OPTAX:
        raise ValueError(f"convention {CONVENTIONS[h.conv]!r} has no Adafactor in fusedopt; "
                         "use 'torch', 'keras' or 'optax'")
    if h.conv != C_TORCH and h.maximize:
        raise ValueError(f"maximize=True is a torch option; convention "
                         f"{CONVENTIONS[h.conv]!r} has no such option")
    cdef long long t = integer(step, "step", 1)
    if not single and (type(arrays[0]) is not list or type(arrays[1]) is not list):
        raise TypeError(f"{pname} and grads must be lists of arrays")
    cdef Py_ssize_t n = 1 if single else len(<list>arrays[0]), k, j
    cdef fo_af_dims *dims = <fo_af_dims *>PyMem_Malloc(sizeof(fo_af_dims) * max(n, 1))
    cdef int *faxes = <int *>PyMem_Malloc(sizeof(int) * 2 * max(n, 1))
    cdef TensorLists tl
    try:
        if dims == NULL or faxes == NULL:
            raise MemoryError()
        memset(dims, 0, sizeof(fo_af_dims) * max(n, 1))
        memset(faxes, 0, sizeof(int) * 2 * max(n, 1))
        adafactor_presence(arrays, single, n, index, h.conv, dims, faxes)
        tl = TensorLists(n, (pname, "grad", "row_var", "col_var", "variance"))
        tl.fill(arrays, (True, False, True, True, True), single, index, True, None,
                (SHAPE_LIKE, SHAPE_LIKE, SHAPE_ROWS, SHAPE_COLS, SHAPE_LIKE), faxes)
        if dry or n == 0:
            return None
        adafactor_call(h, tl, t, dims, nt)
    finally:
        PyMem_Free(dims)
        PyMem_Free(faxes)
    return None


cdef int adafactor_call(adafactor_h *h, TensorLists tl, long long t, fo_af_dims *dims,
                        int nt) except -1:
    """The step's scalars, then the C call over tl's tensors of kernel shapes dims."""
    cdef Py_ssize_t n = tl.n, k
    cdef int dtype = tl.dtype
    cdef fo_adafactor_args a
    memset(&a, 0, sizeof(fo_adafactor_args))
    a.grad_scale, a.maximize = h.gs, h.maximize
    cdef double tf = <double>t, lr32, tt, inv
    a.eps1 = (np.finfo(np.float32).eps if dtype == FO_F32 else np.finfo(np.float64).eps) \
        if h.eps1_auto else h.eps1
    a.eps1_sq, a.eps2, a.d = a.eps1 * a.eps1, h.eps2, h.d
    if h.conv == C_TORCH:
        a.form = FO_AF_TORCH
        a.w = pow(tf, h.beta2_decay)         # (Python's float ** is C's pow)
        a.rho = 1.0 / pow(tf, 0.5)
        if h.lr < a.rho:                     # min(lr, 1/t**0.5)
            a.rho = h.lr
        a.decay_factor = 1.0 - h.lr * h.wd
        a.decay = FO_DECAY_MUL if h.wd != 0.0 else FO_DECAY_NONE
    elif h.conv == C_KERAS:
        # keras.optimizers.Adafactor.update_step: local_step, lr = min(lr, 1/sqrt(t)),
        # beta_2_t = 1 - t**beta_2_decay, in the variable's dtype; lr a float32 variable
        a.form = FO_AF_KERAS
        lr32 = f32(h.lr)
        tt = round_to(tf, dtype)
        if dtype == FO_F32:
            inv = f32(1.0 / f32(sqrtf(<float>tt)))
            a.beta2_t = f32(1.0 - f32(powf(<float>tt, <float>h.beta2_decay)))
        else:
            inv = 1.0 / sqrt(tt)
            a.beta2_t = 1.0 - pow(tt, h.beta2_decay)
        a.one_minus_beta2_t = round_to(1.0 - a.beta2_t, dtype)
        a.rho = round_to(lr32, dtype) if round_to(lr32, dtype) < inv else inv
        a.wd, a.lr = h.wd, lr32          # the base optimizer's decay: p - (p*wd)*lr
        a.decay = FO_DECAY_SUB if h.wd != 0.0 else FO_DECAY_NONE
    else:
        # optax.adafactor: decay_rate_t = 1 - t**-decay_rate with t a float32 (its
        # _decay_rate_pow), 1 - decay_rate_t in float32 too; lr, eps, the threshold and
        # the decay rate weak Python floats (the dtype's); no relative step
        a.form = FO_AF_OPTAX
        a.beta2_t = f32(1.0 - f32(powf(<float>tf, <float>h.beta2_decay)))
        a.one_minus_beta2_t = f32(1.0 - a.beta2_t)
        a.rho, a.wd, a.lr = 1.0, h.wd, h.lr
        a.decay = FO_DECAY_OPTAX if h.wd != 0.0 else FO_DECAY_NONE
    cdef fo_index total = 0, need = 0
    for k in range(n):
        if tl.ptrs[4 * n + k] == NULL:          # (factored)
            need = max(need, fo_adafactor_scratch(dims + k))
        total += tl.ns[k]
    cdef double *scratch = <double *>PyMem_Malloc(sizeof(double) * max(need, 1))
    if scratch == NULL:
        raise MemoryError()
    try:
        if total <= GIL_HELD_MAX:
            fo_adafactor(dtype, &a, <int>n, tl.ptrs, <const void **>(tl.ptrs + n),
                         tl.ptrs + 2 * n, tl.ptrs + 3 * n, tl.ptrs + 4 * n, dims, scratch, nt)
        else:
            with nogil:
                fo_adafactor(dtype, &a, <int>n, tl.ptrs, <const void **>(tl.ptrs + n),
                             tl.ptrs + 2 * n, tl.ptrs + 3 * n, tl.ptrs + 4 * n, dims,
                             scratch, nt)
    finally:
        PyMem_Free(scratch)
    return 0


def adafactor(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
              bint single=False, list index=None, bint dry=False, StepPlan plan=None,
              bint keep=False, double grad_scale=1.0):
    """One Adafactor step over lists of tensors, in one C call: ``arrays`` is ``[params,
    grads, row_vars, col_vars, variances]`` (an entry None where a tensor has no such
    statistic, a whole list None when none has); ``step`` the 1-based step of every
    tensor.  Hyper-parameters and errors as :func:`adam`.  Holds no arrays across steps
    (``keep`` returns None: the statistics are not shaped like their parameters)."""
    if plan is not None:
        raise ValueError("internal: Adafactor steps take no plan")
    if len(arrays) != 5 or type(arrays[0]) is not list:
        raise TypeError("arrays must be [params, grads, row_vars, col_vars, variances], "
                        "lists of arrays (None where unused)")
    cdef adafactor_h h
    adafactor_from(&h, hyper, defaults)
    h.gs = grad_scale
    return adafactor_run(&h, arrays, step, n_threads, pname, single, index, dry)


cdef adafactor_h ADAFACTOR_DEFAULTS
cdef bint adafactor_defaults_set = False


def adafactor_step(param, grad, row_var=None, col_var=None, variance=None, *,
                   step=_REQUIRED, lr=_MISSING, beta2_decay=_MISSING, eps=_MISSING,
                   d=_MISSING, weight_decay=_MISSING, maximize=_MISSING,
                   convention=_MISSING, n_threads=None):
    """The functional Adafactor step (``fusedopt.adafactor_step``, documented there)."""
    if not adafactor_defaults_set:
        raise RuntimeError("internal: adafactor_step's defaults are not set")
    if step is _REQUIRED:
        raise TypeError("adafactor_step() missing required keyword argument: 'step'")
    for a, name in ((row_var, "row_var"), (col_var, "col_var"), (variance, "variance")):
        if a is not None:
            state_type(a, name)
    cdef adafactor_h h = ADAFACTOR_DEFAULTS
    adafactor_set(&h, lr, beta2_decay, eps, d, weight_decay, maximize, convention, False)
    adafactor_run(&h, [param, grad, row_var, col_var, variance], step, n_threads, "param",
                  True, None, False)


# ----------------------------------------------------------------------------- LAMB

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_LAMB_OPTAX
        FO_LAMB_KERAS
    ctypedef struct fo_lamb_args:
        fo_adam_args adam
        int trust
    void fo_lamb(int dtype, const fo_lamb_args *a, int ntensors, void *const *ps,
                 const void *const *gs, void *const *ms, void *const *vs, const fo_index *ns,
                 int n_threads)


ctypedef struct lamb_h:
    double lr, b1, b2, eps, wd, gs
    int conv


cdef int lamb_set(lamb_h *h, object lr, object betas, object eps, object wd,
                  object convention, bint truthy) except -1:
    """As adam_set, for LAMB."""
    if lr is not _MISSING:
        h.lr = learning_rate(lr)
    if betas is not _MISSING:
        betas_pair(betas, truthy, &h.b1, &h.b2)
    if eps is not _MISSING:
        h.eps = real(eps, "epsilon", 0.0)
    if wd is not _MISSING:
        h.wd = weight_decay(wd)
    if convention is not _MISSING:
        h.conv = convention_code(convention)
    return 0


cdef int lamb_from(lamb_h *h, dict hyper, dict defaults) except -1:
    lamb_set(h, hp(hyper, defaults, "lr"), hp(hyper, defaults, "betas"),
             hp(hyper, defaults, "eps"), hp(hyper, defaults, "weight_decay"),
             hp(hyper, defaults, "convention"),
             PyDict_GetItem(defaults, "torch_values") != NULL)
    max_grad_norm_arg(hp(hyper, defaults, "max_grad_norm"))
    h.gs = 1.0
    return 0


cdef TensorLists lamb_run(lamb_h *h, list arrays, object step, object n_threads, str pname,
                          bint single, list index, bint dry, StepPlan plan):
    """optax.lamb's rule (the torch convention too: torch has no LAMB) or Keras' Lamb:
    Adam's moments and bias corrections as adam_resolve makes them for optax (Keras:
    its own moments, b^t a power in the variable's dtype, lr a float32 variable), then the
    per-tensor trust ratio (fo_lamb.h)."""
    cdef long long t = integer(step, "step", 1)
    cdef int nt = nthreads_arg(n_threads)
    if h.conv != C_TORCH and h.conv != C_OPTAX and h.conv != C_KERAS:
        raise ValueError(f"convention {CONVENTIONS[h.conv]!r} has no LAMB; use 'torch', "
                         "'optax' or 'keras'")
    if plan is None:
        for k, role in ((2, "exp_avg"), (3, "exp_avg_sq")):
            if arrays[k] is (_REQUIRED if single else None):
                raise TypeError(f"{role} is required (an array like param, initially zeros)")
    cdef TensorLists tl = step_arrays(arrays, (pname, "grad", "exp_avg", "exp_avg_sq"),
                                      (True, False, True, True), (True, True, True, True),
                                      single, index, plan)
    cdef int dtype = tl.dtype if tl.dtype >= 0 else FO_F32
    cdef fo_lamb_args a
    memset(&a, 0, sizeof(fo_lamb_args))
    cdef int conv = C_KERAS if h.conv == C_KERAS else C_OPTAX
    adam_resolve(&a.adam, dtype, conv, t, h.lr, h.b1, h.b2, h.eps, h.wd, True, False,
                 False, 0.0)
    a.adam.grad_scale = h.gs
    cdef double b1p, b2p
    if conv == C_KERAS:
        a.trust = FO_LAMB_KERAS
        # m_hat = m/(1 - b1^t), b^t = power(cast(b), cast(t)) in the variable's dtype
        b1p = round_to(pow(round_to(h.b1, dtype), <double>t), dtype)
        b2p = round_to(pow(round_to(h.b2, dtype), <double>t), dtype)
        a.adam.bc1 = round_to(1.0 - b1p, dtype)
        a.adam.bc2 = round_to(1.0 - b2p, dtype)
    else:
        a.trust = FO_LAMB_OPTAX
    if dry or tl.n == 0:
        return tl
    cdef fo_index total = 0
    cdef Py_ssize_t k2
    for k2 in range(tl.n):
        total += tl.ns[k2]
    cdef void **ps = tl.role(0)
    cdef const void **gs = <const void **>tl.role(1)
    cdef void **ms = tl.role(2)
    cdef void **vs = tl.role(3)
    cdef int n = <int>tl.n
    if total <= GIL_HELD_MAX:
        fo_lamb(dtype, &a, n, ps, gs, ms, vs, tl.ns, nt)
    else:
        with nogil:
            fo_lamb(dtype, &a, n, ps, gs, ms, vs, tl.ns, nt)
    return tl


def lamb(list arrays, dict hyper, dict defaults, step, n_threads=None, str pname="param",
         bint single=False, list index=None, bint dry=False, StepPlan plan=None,
         bint keep=False, double grad_scale=1.0):
    """One LAMB step over lists of tensors, in one C call (each tensor its own trust
    ratio): ``arrays`` is ``[params, grads, exp_avgs, exp_avg_sqs]``; ``step`` the 1-based
    step (bias corrections).  Hyper-parameters and errors as :func:`adam`."""
    if plan is None and (len(arrays) != 4 or type(arrays[0]) is not list):
        raise TypeError("arrays must be [params, grads, exp_avgs, exp_avg_sqs], lists of "
                        "arrays")
    cdef lamb_h h
    lamb_from(&h, hyper, defaults)
    h.gs = grad_scale
    tl = lamb_run(&h, arrays, step, n_threads, pname, single, index, dry, plan)
    return tl if keep else None


cdef lamb_h LAMB_DEFAULTS
cdef bint lamb_defaults_set = False


def lamb_step(param, grad, exp_avg=_REQUIRED, exp_avg_sq=_REQUIRED, *, step=_REQUIRED,
              lr=_MISSING, betas=_MISSING, eps=_MISSING, weight_decay=_MISSING,
              convention=_MISSING, n_threads=None):
    """The functional LAMB step (``fusedopt.lamb_step``, documented there)."""
    if step is _REQUIRED:
        raise TypeError("lamb_step() missing required keyword argument 'step'")
    if not lamb_defaults_set:
        raise RuntimeError("internal: lamb_step's defaults are not set")
    cdef lamb_h h = LAMB_DEFAULTS
    lamb_set(&h, lr, betas, eps, weight_decay, convention, False)
    lamb_run(&h, [param, grad, exp_avg, exp_avg_sq], step, n_threads, "param", True, None,
             False, None)


# ----------------------------------------------------------------------------- functional steps

cdef int state_type(object a, str name) except -1:
    if not isinstance(a, _ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64, "
                        f"got {type(a).__module__}.{type(a).__qualname__}")
    return 0


#: the defaults of a functional step's arguments: not given (the description's default
#: applies), or required
DEFAULT = _MISSING
REQUIRED = _REQUIRED


def set_defaults(str name, dict defaults):
    """Gives a functional step its description's defaults (validated once, here)."""
    global adam_defaults_set, sgd_defaults_set, lion_defaults_set, adagrad_defaults_set, \
        rmsprop_defaults_set, adafactor_defaults_set, lamb_defaults_set
    if name == "adam_step":
        adam_from(&ADAM_DEFAULTS, defaults, defaults)
        adam_defaults_set = True
    elif name == "sgd_step":
        sgd_from(&SGD_DEFAULTS, defaults, defaults)
        sgd_defaults_set = True
    elif name == "lion_step":
        lion_from(&LION_DEFAULTS, defaults, defaults)
        lion_defaults_set = True
    elif name == "adagrad_step":
        adagrad_from(&ADAGRAD_DEFAULTS, defaults, defaults)
        adagrad_defaults_set = True
    elif name == "rmsprop_step":
        rmsprop_from(&RMSPROP_DEFAULTS, defaults, defaults)
        rmsprop_defaults_set = True
    elif name == "adafactor_step":
        adafactor_from(&ADAFACTOR_DEFAULTS, defaults, defaults)
        adafactor_defaults_set = True
    elif name == "lamb_step":
        lamb_from(&LAMB_DEFAULTS, defaults, defaults)
        lamb_defaults_set = True
    else:
        raise ValueError(f"internal: no functional step {name!r}")


# ----------------------------------------------------------------------------- non-finite

def unscale_check(list grads, scale, n_threads, str name="grads", bint single=False,
                  list index=None, bint dry=False):
    """Multiplies every array of `grads` by `scale` in place (scale None: no change) and
    returns True when any element is then NaN or infinite.  One C call for the list."""
    cdef bint do_scale = scale is not None
    cdef double sc = real(scale, "inv_scale", 0.0) if do_scale else 1.0
    cdef int nt = nthreads_arg(n_threads), found = 0
    cdef TensorLists tl = TensorLists(len(grads), (name,))
    tl.fill([grads], (do_scale,), single, index)
    cdef void **gs = tl.role(0)
    cdef int dtype = tl.dtype
    cdef fo_index *ns = tl.ns
    if tl.n > 0 and not dry:
        with nogil:
            found = fo_unscale_check(dtype, <int>tl.n, gs, ns, sc, do_scale, nt)
    return bool(found)


# ----------------------------------------------------------------------------- norms

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_NORM_SQ
        FO_NORM_ABS
        FO_NORM_POW
        FO_NORM_MAX
    double fo_grad_norm(int dtype, int ntensors, const void *const *gs, const fo_index *ns,
                        int kind, double p, int n_threads)


cdef double norm_type_arg(object x) except? -1.0:
    """A norm order: a real number > 0, or inf (also as a string such as 'inf', which
    torch reads with float(); torch's 0 and negative orders are refused)."""
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            pass
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
        v = float(x)
        if v == INF or (isfinite(v) and v > 0.0):
            return v
    raise ValueError(f"norm_type must be a positive real number or inf, got {x!r}")


def split_dtypes(list arrays, list index):
    """``[(arrays, indices)]`` per dtype, float32 first, without the empty one: the
    calls of a list that may mix float32 and float64 (anything else stays with float32,
    where the kernel entry refuses it by name)."""
    cdef list a32 = [], i32 = [], a64 = [], i64 = []
    cdef Py_ssize_t k
    for k in range(len(arrays)):
        a = arrays[k]
        if cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_DOUBLE:
            a64.append(a)
            i64.append(index[k])
        else:
            a32.append(a)
            i32.append(index[k])
    return [(a, i) for a, i in ((a32, i32), (a64, i64)) if a]


def grad_norm(list grads, norm_type, n_threads, str name="grads", bint single=False,
              list index=None, bint writable=False, bint keep=False):
    """``(sum, order)`` of a list of arrays of one dtype, in one C call: for order p the
    sum over every element of ``|g|**p`` (``g*g`` for 2, ``|g|`` for 1), for inf the
    largest ``|g|`` (NaN when any element is NaN); in double, blocks combined in a fixed
    order (the same for every thread count and CPU path).  ``writable``: also checks
    that every array can be written, and ``keep`` returns ``(sum, order, arrays)``, the
    arrays held for :func:`scale_held` (one validation of the list for both passes)."""
    cdef double p = norm_type_arg(norm_type)
    cdef int nt = nthreads_arg(n_threads)
    cdef TensorLists tl = TensorLists(len(grads), (name,))
    tl.fill([grads], (writable,), single, index)
    cdef int kind = FO_NORM_MAX if p == INF else FO_NORM_SQ if p == 2.0 else \
        FO_NORM_ABS if p == 1.0 else FO_NORM_POW
    cdef double total = 0.0
    cdef const void **gs = <const void **>tl.role(0)
    cdef int dtype = tl.dtype
    cdef fo_index *ns = tl.ns
    if tl.n > 0:
        with nogil:
            total = fo_grad_norm(dtype, <int>tl.n, gs, ns, kind, p, nt)
    return (total, p, tl) if keep else (total, p)


def scale_held(TensorLists tl, double scale, n_threads):
    """Multiplies the arrays of a writable :func:`grad_norm` call (``keep=True``) by
    ``scale`` (rounded to their dtype; NaN and infinity too) in place, in one C call."""
    cdef int nt = nthreads_arg(n_threads)
    cdef void **gs = tl.role(0)
    cdef int dtype = tl.dtype
    cdef fo_index *ns = tl.ns
    if tl.n > 0:
        if not tl.writable[0]:
            raise ValueError("internal: the arrays were not checked for writing")
        with nogil:
            fo_unscale_check(dtype, <int>tl.n, gs, ns, scale, 1, nt)


# ----------------------------------------------------------------------------- losses

cdef extern from "fusedopt.h" nogil:
    enum:
        FO_BC_SCALAR
        FO_BC_FULL
        FO_BC_COL
    enum:
        FO_REG_L1
        FO_REG_L2

    ctypedef struct fo_bce_args:
        const void *x
        const void *y
        int y_dtype
        const void *w
        int w_mode
        const void *pw
        int pw_mode
        fo_index ncols
        double w_scalar, pw_scalar, smooth_a, smooth_b, grad_scale
        void *grad
        void *loss

    ctypedef struct fo_reg_args:
        int kind
        const void *pred
        const void *target
        const void *w
        double grad_scale
        void *grad
        void *loss

    ctypedef struct fo_sce_args:
        const void *x
        fo_index nrows, ncols
        const int64_t *index
        int64_t ignore_index
        const void *q
        const void *w
        double w_sum, smooth, grad_scale
        void *grad
        void *loss

    double fo_bce(int dtype, const fo_bce_args *a, fo_index n, int n_threads)
    double fo_reg(int dtype, const fo_reg_args *a, fo_index n, int n_threads)
    double fo_sce(int dtype, const fo_sce_args *a, int n_threads)


cdef int reduction_code(object reduction) except -1:
    if reduction == "mean":
        return 0
    if reduction == "sum":
        return 1
    if reduction == "none":
        return 2
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


cdef object as_labels(object labels, object logits_dtype):
    """Labels as an ndarray the kernel reads: logits' dtype, or uint8/bool as they are."""
    if not isinstance(labels, _ndarray):
        raise TypeError(f"labels must be a numpy.ndarray, got {type(labels).__name__}")
    k = labels.dtype.kind
    if k == "b" or labels.dtype == np.uint8:
        return np.asarray(labels, order="C")
    if k in "iuf":
        return np.asarray(labels, dtype=logits_dtype, order="C")
    raise TypeError(f"labels must be bool, integer or float, got dtype {labels.dtype}")


cdef object as_param_array(object w, object shape, object dtype, str name, int *mode,
                           fo_index *ncols, bint allow_col):
    """weight / pos_weight broadcast to logits' shape: scalar, last-axis vector or full."""
    if isinstance(w, _ndarray):
        arr = w
    elif isinstance(w, (int, float)) and not isinstance(w, bool):
        arr = np.asarray(w)
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or a number, got {type(w).__name__}")
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    try:
        np.broadcast_shapes(arr.shape, shape)
        full = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {arr.shape} does not broadcast to logits' shape "
                         f"{shape}") from None
    if full != tuple(shape):
        raise ValueError(f"{name} of shape {arr.shape} would broadcast logits' shape {shape} "
                         f"to {full}; it must broadcast to the logits")
    if arr.size == 1:
        mode[0] = FO_BC_SCALAR
        return float(arr.reshape(-1)[0])
    # (no negative indices in this module: it is compiled with wraparound off)
    last = shape[len(shape) - 1] if len(shape) else 1
    if allow_col and arr.size == last and arr.ndim and arr.shape[arr.ndim - 1] == last:
        mode[0] = FO_BC_COL
        ncols[0] = last
        return np.asarray(arr.reshape(-1), dtype=dtype, order="C")
    mode[0] = FO_BC_FULL
    return np.asarray(np.broadcast_to(arr, shape), dtype=dtype, order="C")


cdef class Buffers:
    """The buffers one loss call holds (released together); index 0 is the reference
    input whose shape and dtype the outputs take."""
    cdef view views[8]
    cdef list names
    cdef int count

    def __cinit__(self):
        self.names = []
        self.count = 0

    cdef int get(self, object obj, str name, bint writable, bint allow_u8=False) except -1:
        if self.count >= 8:
            raise RuntimeError("internal: too many buffers")
        cdef int code = acquire(&self.views[self.count], obj, name, writable, allow_u8)
        self.names.append(name)
        self.count += 1
        return code

    cdef void *buf(self, int i) noexcept:
        return self.views[i].buf

    cdef object outputs(self, int dtype, object ref, object out, bint want_grad, int red,
                        void **grad_buf, void **loss_buf):
        """Gradient (``out`` or a new array like the reference input) and, for
        reduction "none", the elementwise loss array; validated against every input."""
        cdef int i, code, ninputs = self.count
        grad = None
        if want_grad:
            grad = np.empty(ref.shape, dtype=ref.dtype) if out is None else out
            code = self.get(grad, "out", True)
            check_like(&self.views[0], &self.views[self.count - 1], dtype, code,
                       self.names[0], "out")
            for i in range(ninputs):
                check_no_alias(&self.views[self.count - 1], &self.views[i], "out",
                               self.names[i])
            grad_buf[0] = self.buf(self.count - 1)
        elif out is not None:
            raise ValueError("out is only used by the _and_grad functions")
        lossarr = None
        if red == 2:
            lossarr = np.empty(ref.shape, dtype=ref.dtype)
            self.get(lossarr, "loss", True)
            loss_buf[0] = self.buf(self.count - 1)
        return grad, lossarr

    cdef void release(self) noexcept:
        cdef int i
        for i in range(self.count):
            release(&self.views[i])
        self.count = 0

    def __dealloc__(self):
        self.release()


cdef object reduced(int red, double total, double den, object lossarr):
    """The loss of a reduction: the elementwise array, the sum, or the sum over den
    ("mean": the element count, or torch's summed class weights; NaN when it is 0)."""
    if red == 2:
        return lossarr
    if red == 0:
        return total / den if den != 0.0 else float("nan")
    return total


def sigmoid_ce(logits, labels, weight, pos_weight, label_smoothing, reduction, out,
               bint want_grad, n_threads):
    """Fused sigmoid cross-entropy (+ gradient). Returns (loss, grad or None)."""
    cdef int red = reduction_code(reduction)
    cdef double ls = real(label_smoothing, "label_smoothing", 0.0, False, 1.0)
    cdef int nt = nthreads_arg(n_threads)
    cdef Buffers b = Buffers()
    cdef fo_bce_args a
    cdef int dtype, wmode = FO_BC_SCALAR, pwmode = FO_BC_SCALAR
    cdef fo_index ncols = 1, ncols2 = 1, n
    cdef double total
    memset(&a, 0, sizeof(fo_bce_args))
    try:
        dtype = b.get(logits, "logits", False)
        shape = logits.shape
        yarr = as_labels(labels, logits.dtype)
        if yarr.shape != shape:
            raise ValueError(f"labels must have the shape of logits {shape}, got {yarr.shape} "
                             "(no broadcasting)")
        a.y_dtype = b.get(yarr, "labels", False, True)
        a.x, a.y = b.buf(0), b.buf(1)
        n = nitems(&b.views[0])
        a.w_scalar = a.pw_scalar = 1.0
        if weight is not None:
            w = as_param_array(weight, shape, logits.dtype, "weight", &wmode, &ncols, True)
            a.w_mode = wmode
            if wmode == FO_BC_SCALAR:
                a.w_scalar = w
            else:
                b.get(w, "weight", False)
                a.w = b.buf(b.count - 1)
        if pos_weight is not None:
            pw = as_param_array(pos_weight, shape, logits.dtype, "pos_weight", &pwmode,
                                &ncols2, True)
            if pwmode == FO_BC_FULL:
                raise ValueError("pos_weight must be a scalar or a vector along the last "
                                 f"axis (length {shape[len(shape) - 1] if len(shape) else 1}), "
                                 f"got shape {np.shape(pos_weight)}")
            a.pw_mode = pwmode
            if pwmode == FO_BC_SCALAR:
                a.pw_scalar = pw
            else:
                b.get(pw, "pos_weight", False)
                a.pw = b.buf(b.count - 1)
                ncols = ncols2
        a.ncols = ncols if ncols > 0 else 1
        a.smooth_a = 1.0 - ls
        a.smooth_b = 0.5 * ls
        a.grad_scale = (1.0 / n if n > 0 else 1.0) if red == 0 else 1.0
        if dtype == FO_F32:
            a.smooth_a = f32(a.smooth_a)
            a.smooth_b = f32(a.smooth_b)
        grad, lossarr = b.outputs(dtype, logits, out, want_grad, red, &a.grad, &a.loss)
        with nogil:
            total = fo_bce(dtype, &a, n, nt)
    finally:
        b.release()
    return reduced(red, total, n, lossarr), grad


cdef object class_indices(object labels, fo_index nrows, fo_index ncols, object ignore_index):
    """Integer labels as int64 class indices, each in [0, ncols) or ignore_index."""
    if labels.shape != (nrows,):
        raise ValueError(f"labels of class indices must have shape ({nrows},) (one per row "
                         f"of logits), got {labels.shape}")
    if labels.dtype.kind == "u" and labels.size and int(labels.max()) >= ncols:
        at = int(np.argmax(labels >= ncols))
        raise ValueError(f"labels[{at}] = {int(labels[at])} is out of range for {ncols} "
                         f"classes (class indices are in [0, {ncols}))")
    idx = np.ascontiguousarray(labels, dtype=np.int64)
    bad = ((idx < 0) | (idx >= ncols)) & (idx != ignore_index)
    if bad.any():
        at = int(np.argmax(bad))
        raise ValueError(f"labels[{at}] = {int(idx[at])} is out of range for {ncols} classes "
                         f"(class indices are in [0, {ncols}); ignore_index={ignore_index})")
    return idx


def softmax_ce(logits, labels, weight, ignore_index, label_smoothing, reduction, out,
               bint want_grad, n_threads):
    """Fused softmax cross-entropy (+ gradient). Returns (loss, grad or None)."""
    cdef int red = reduction_code(reduction)
    cdef double ls = real(label_smoothing, "label_smoothing", 0.0, False, 1.0)
    cdef int nt = nthreads_arg(n_threads)
    cdef Buffers b = Buffers()
    cdef fo_sce_args a
    cdef int dtype
    cdef double total, den
    cdef cnp.int64_t[::1] idx_view
    memset(&a, 0, sizeof(fo_sce_args))
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    ignore = int(ignore_index)
    try:
        dtype = b.get(logits, "logits", False)
        if logits.ndim != 2:
            raise ValueError(
                f"logits must have shape (N, C): one row of class scores per sample, got "
                f"shape {logits.shape}" + (
                    "; for (N, C, d1, ...) move the class axis last and flatten: "
                    "np.moveaxis(logits, 1, -1).reshape(-1, C)" if logits.ndim > 2 else
                    "; for one sample use logits[None, :]"))
        a.nrows, a.ncols = logits.shape[0], logits.shape[1]
        if a.ncols == 0:
            raise ValueError(f"logits must have at least one class, got shape {logits.shape}")
        a.x = b.buf(0)
        if not isinstance(labels, _ndarray):
            raise TypeError(f"labels must be a numpy.ndarray, got {type(labels).__name__}")
        k = labels.dtype.kind
        if k in "iu":
            idx = class_indices(labels, a.nrows, a.ncols, ignore)
            idx_view = idx
            a.index = <const int64_t *>&idx_view[0] if a.nrows else NULL
            a.ignore_index = ignore
            keep = idx != ignore
        elif k == "f":
            if labels.shape != logits.shape:
                raise ValueError(f"float labels are probabilities and must have the shape of "
                                 f"logits {logits.shape}, got {labels.shape} (class indices "
                                 "must be integers)")
            if ignore != -100:
                raise ValueError("ignore_index is only used with class-index labels, not "
                                 "with probabilities")
            q = np.asarray(labels, dtype=logits.dtype, order="C")
            b.get(q, "labels", False)
            a.q = b.buf(b.count - 1)
        else:
            raise TypeError(f"labels must be integer class indices or float probabilities, "
                            f"got dtype {labels.dtype}")
        w = None
        if weight is not None:
            if not isinstance(weight, _ndarray):
                raise TypeError(f"weight must be a numpy.ndarray of shape ({a.ncols},), got "
                                f"{type(weight).__name__}")
            if weight.dtype.kind not in "iuf":
                raise TypeError(f"weight must be real, got dtype {weight.dtype}")
            if weight.shape != (a.ncols,):
                raise ValueError(f"weight must have shape ({a.ncols},) (one per class), got "
                                 f"{weight.shape}")
            w = np.asarray(weight, dtype=logits.dtype, order="C")
            b.get(w, "weight", False)
            a.w = b.buf(b.count - 1)
            a.w_sum = float(w.sum(dtype=np.float64))
        else:
            a.w_sum = <double>a.ncols
        if a.q != NULL:
            den = <double>a.nrows
        elif w is not None:
            den = float(w[idx[keep]].sum(dtype=np.float64))
        else:
            den = float(np.count_nonzero(keep))
        a.smooth = ls
        a.grad_scale = 1.0
        if red == 0:
            a.grad_scale = 1.0 / den if den != 0.0 else float("inf")
        grad, _ = b.outputs(dtype, logits, out, want_grad, 0, &a.grad, &a.loss)
        lossarr = None
        if red == 2:
            lossarr = np.empty(a.nrows, dtype=logits.dtype)
            b.get(lossarr, "loss", True)
            a.loss = b.buf(b.count - 1)
        with nogil:
            total = fo_sce(dtype, &a, nt)
    finally:
        b.release()
    return reduced(red, total, den, lossarr), grad


def regression(int kind, pred, target, weight, reduction, out, bint want_grad, n_threads):
    """L1 (kind 0) or squared error (kind 1) loss (+ gradient). Returns (loss, grad or None)."""
    cdef int red = reduction_code(reduction)
    cdef int nt = nthreads_arg(n_threads)
    cdef Buffers b = Buffers()
    cdef fo_reg_args a
    cdef int dtype, wmode = FO_BC_SCALAR
    cdef fo_index n, ncols = 1
    cdef double total
    memset(&a, 0, sizeof(fo_reg_args))
    a.kind = FO_REG_L1 if kind == 0 else FO_REG_L2
    try:
        dtype = b.get(pred, "pred", False)
        check_like(&b.views[0], &b.views[1], dtype, b.get(target, "target", False), "pred",
                   "target")
        n = nitems(&b.views[0])
        a.pred, a.target = b.buf(0), b.buf(1)
        if weight is not None:
            w = as_param_array(weight, pred.shape, pred.dtype, "weight", &wmode, &ncols, False)
            if wmode == FO_BC_SCALAR:
                w = np.full(pred.shape, w, dtype=pred.dtype)
            b.get(w, "weight", False)
            a.w = b.buf(2)
        scale = 1.0 if kind == 0 else 2.0
        a.grad_scale = scale / n if (red == 0 and n > 0) else scale
        grad, lossarr = b.outputs(dtype, pred, out, want_grad, red, &a.grad, &a.loss)
        with nogil:
            total = fo_reg(dtype, &a, n, nt)
    finally:
        b.release()
    return reduced(red, total, n, lossarr), grad


# ----------------------------------------------------------------------------- math, runtime

def _elementwise(int which, x):
    """exp(-x) (which 0) or log1p(x) for x in [0, 1] (which 1), on the active CPU path."""
    cdef view vx, vo
    vx.obj = vo.obj = NULL
    cdef int dtype
    cdef fo_index n
    try:
        dtype = acquire(&vx, x, "x", False)
        out = np.empty(x.shape, dtype=x.dtype)
        acquire(&vo, out, "out", True)
        n = nitems(&vx)
        with nogil:
            if which == 0:
                fo_exp_neg(dtype, vx.buf, vo.buf, n)
            else:
                fo_log1p_unit(dtype, vx.buf, vo.buf, n)
    finally:
        release(&vx)
        release(&vo)
    return out


STREAM_PATTERNS = {"copy": (FO_STREAM_COPY, 1, 1), "triad": (FO_STREAM_TRIAD, 2, 1),
                   "adam": (FO_STREAM_ADAM, 4, 3), "sgd": (FO_STREAM_SGD, 3, 2),
                   "loss": (FO_STREAM_LOSS, 2, 1),
                   # clip_grad_norm_: a pass reading b, then a pass scaling a in place
                   "clip": ((FO_STREAM_READ, FO_STREAM_SCALE), 2, 1),
                   # factored Adafactor: a pass reading b (the statistics), one reading a
                   # and b (the norms), one updating a in place from b
                   "adafactor2d": ((FO_STREAM_READ, FO_STREAM_READ2, FO_STREAM_AXPY), 5, 1),
                   # vector Adafactor: a pass updating c from b (a's norm), then one
                   # updating a from b and c
                   "adafactor": ((FO_STREAM_ACC, FO_STREAM_APPLY), 6, 2),
                   # LAMB: a pass updating c and d from b (a's norm), then one updating a
                   # from c and d
                   "lamb": ((FO_STREAM_MOMENTS, FO_STREAM_APPLY_CD), 7, 3)}


def stream(str pattern, a, b, c, d, n_threads=None):
    """Bandwidth probe: runs the access pattern of a kernel ("adam": 4 reads + 3 writes,
    "sgd": 3 + 2, "loss": 2 + 1, "clip": a read pass then an in-place scaling pass,
    "adafactor2d": 3 passes, 5 reads + 1 write, "adafactor": 2 passes, 6 reads + 2
    writes, "lamb": 2 passes, 7 reads + 3 writes, "copy", "triad") over same-shaped
    float arrays a, b, c, d (a, c, d written; "clip" writes its block sums in d[0]).
    Returns (reads, writes) per element, for GB/s accounting."""
    if pattern not in STREAM_PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(STREAM_PATTERNS)}, got {pattern!r}")
    code, reads, writes = STREAM_PATTERNS[pattern]
    cdef tuple passes = code if isinstance(code, tuple) else (code,)
    cdef int nt = nthreads_arg(n_threads), pat, dtype = -1, k, got = 0
    cdef view v[4]
    cdef fo_index n = 0
    try:
        for k, (arr, name) in enumerate(((a, "a"), (b, "b"), (c, "c"), (d, "d"))):
            code = acquire(&v[k], arr, name, k != 1)
            got += 1
            if k == 0:
                dtype, n = code, nitems(&v[0])
            else:
                check_like(&v[0], &v[k], dtype, code, "a", name)
        for pat in passes:
            with nogil:
                fo_stream(dtype, pat, v[0].buf, v[1].buf, v[2].buf, v[3].buf, n, nt)
    finally:
        for k in range(got):
            release(&v[k])
    return reads, writes


# the paths by their fo_isa number (kernels/fusedopt.h)
ISA_NAMES = ("baseline", "avx2", "avx512", "sve")


def select_isa(int cap):
    return ISA_NAMES[fo_select_isa(cap)]


def runtime_info():
    return {
        "isa": ISA_NAMES[fo_current_isa()],
        "detected": ISA_NAMES[fo_detected_isa()],
        "built": tuple(ISA_NAMES[i] for i in range(len(ISA_NAMES)) if fo_isa_built(i)),
        "paths": tuple(ISA_NAMES[i] for i in range(len(ISA_NAMES)) if fo_isa_available(i)),
        "openmp": bool(fo_openmp()),
        "max_threads": fo_max_threads(),
        "default_threads": fo_default_threads(),
        "parallel_threshold": fo_parallel_threshold(),
        "forked_single_threaded": bool(fo_forked_single_threaded()),
        "adaptive_threads": bool(fo_adaptive_threads()),
        "block": FO_BLOCK,
        "compiler": fo_compiler.decode(),
        "build_flags": fo_build_flags.decode(),
    }


def set_default_threads(int n):
    fo_set_default_threads(n)


def set_parallel_threshold(Py_ssize_t n):
    fo_set_parallel_threshold(n)


def set_adaptive_threads(bint on):
    fo_set_adaptive_threads(on)


def clock():
    return fo_now()


def threaded_regions():
    return fo_threaded_regions()


def _adapt_reset():
    fo_adapt_reset()


def _adapt_note(double now, double wall, double own, int used):
    fo_adapt_note(now, wall, own, used)


def _adapt_serial(double now):
    return bool(fo_adapt_serial(now))


def _adapt_state(double now):
    cdef double serial_for, backoff, credit
    fo_adapt_state(now, &serial_for, &backoff, &credit)
    return {"serial_for": serial_for, "backoff": backoff, "credit": credit}
