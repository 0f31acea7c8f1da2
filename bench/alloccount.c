/* Counts the allocations the Python interpreter makes (bench/profile.py only).

   start() wraps the PYMEM_DOMAIN_OBJ and PYMEM_DOMAIN_MEM allocators with
   counting ones that delegate everything to the originals (so blocks may be
   freed after stop() by the original allocator); counts() returns the number
   of new blocks (malloc, calloc, realloc of NULL) in each domain since start().
   Objects served from CPython's free lists (small tuples, floats, dicts,
   lists, frames) never reach the allocator and are not counted. The GIL
   guards the counters: both domains require it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyMemAllocatorEx orig[2];
static unsigned long long count[2];
static int active;

#define WRAP(I)                                                                      \
    static void *m##I(void *ctx, size_t n) { count[I]++; return orig[I].malloc(orig[I].ctx, n); } \
    static void *c##I(void *ctx, size_t e, size_t n) { count[I]++; return orig[I].calloc(orig[I].ctx, e, n); } \
    static void *r##I(void *ctx, void *p, size_t n) { if (p == NULL) count[I]++; return orig[I].realloc(orig[I].ctx, p, n); } \
    static void f##I(void *ctx, void *p) { orig[I].free(orig[I].ctx, p); }
WRAP(0)
WRAP(1)

static PyObject *start(PyObject *self, PyObject *args) {
    if (!active) {
        PyMemAllocatorEx a0 = {NULL, m0, c0, r0, f0}, a1 = {NULL, m1, c1, r1, f1};
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &orig[0]);
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &orig[1]);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &a0);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &a1);
        active = 1;
    }
    count[0] = count[1] = 0;
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *args) {
    if (active) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &orig[0]);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &orig[1]);
        active = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *counts(PyObject *self, PyObject *args) {
    return Py_BuildValue("(KK)", count[0], count[1]);
}

static PyMethodDef methods[] = {
    {"start", start, METH_NOARGS, "Start (or restart) counting allocations."},
    {"stop", stop, METH_NOARGS, "Stop counting; the counts stay readable."},
    {"counts", counts, METH_NOARGS, "(object-domain blocks, mem-domain blocks) since start()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "alloccount", NULL, -1, methods};

PyMODINIT_FUNC PyInit_alloccount(void) { return PyModule_Create(&module); }
