# Helpers every gpuhil extension uses to talk to the kernel (C side: include/gpuhil_kernel.h).
# Only extern declarations and inline functions: cimporting this needs no module at run time.

cdef extern from "gpuhil_kernel.h":
    int gpuhil_ioctl(int fd, unsigned long request, void *arg) nogil
    ctypedef struct gpuhil_abi_entry:
        const char *name
        unsigned long long value


cdef inline dict abi_table(const gpuhil_abi_entry *rows):
    """The ``ABI`` dict of a {NULL, 0}-terminated table: C expression -> compiled value."""
    cdef dict table = {}
    cdef size_t i = 0
    while rows[i].name != NULL:
        table[rows[i].name.decode()] = rows[i].value
        i += 1
    return table
