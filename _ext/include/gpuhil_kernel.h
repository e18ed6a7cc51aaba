/* Shared by gpuhil's extensions (declared for Cython in _ext/kernel.pxd). */
#ifndef GPUHIL_KERNEL_H
#define GPUHIL_KERNEL_H

#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>

/* ioctl() restarted on EINTR/EAGAIN (as libdrm's drmIoctl does); returns the result or -errno. */
static inline int gpuhil_ioctl(int fd, unsigned long request, void *arg) {
    int r;
    do {
        r = ioctl(fd, request, arg);
    } while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r == -1 ? -errno : r;
}

/* One row of a module's ABI table: a C expression written with the canonical Linux uapi names
 * and the value the module was compiled with.  A table ends with {NULL, 0}. */
typedef struct { const char *name; unsigned long long value; } gpuhil_abi_entry;

/* Rows naming the type/field/constant as written. */
#define GPUHIL_S(T) {"sizeof(" #T ")", sizeof(T)}
#define GPUHIL_O(T, f) {"offsetof(" #T ", " #f ")", offsetof(T, f)}
#define GPUHIL_C(x) {#x, (unsigned long long)(x)}
/* A row for a value computed from our own definition of a canonical name. */
#define GPUHIL_N(name, expr) {name, (unsigned long long)(expr)}

#endif
