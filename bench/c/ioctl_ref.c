/*
 * Reference C loops for bench/bench_ioctl.py: the same ioctls gpuhil issues, without Python.
 *
 *   ioctl_ref getparam ITERATIONS NODE [PARAM]    GETPARAM in a tight loop
 *   ioctl_ref blob ITERATIONS NODE [SIZE]         GUEST blob create + MAP + mmap + touch
 *                                                 + munmap + GEM_CLOSE
 *
 * Prints "ns_per_op=<float>" on success.  Built with -I _ext/include (gpuhil_uapi.h).
 */
#include "gpuhil_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* untimed iterations first, as the Python side has a warm-up round */
#define WARMUP 2

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Restart on EINTR/EAGAIN, as drmIoctl and gpuhil do. */
static int xioctl(int fd, unsigned long request, void *arg)
{
    int r;
    do {
        r = ioctl(fd, request, arg);
    } while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r;
}

static int bench_getparam(int fd, long iterations, int param)
{
    volatile long sink = 0;
    long long start = 0;
    for (long i = -WARMUP; i < iterations; i++) {
        if (i == 0)
            start = now_ns();
        int value = 0;
        struct drm_virtgpu_getparam gp = { .param = (uint64_t)param, .value = (uintptr_t)&value };
        if (xioctl(fd, DRM_IOCTL_VIRTGPU_GETPARAM, &gp)) {
            perror("GETPARAM");
            return 1;
        }
        sink += value;
    }
    printf("ns_per_op=%.1f\n", (double)(now_ns() - start) / (double)iterations);
    return 0;
}

static int bench_blob(int fd, long iterations, uint64_t size)
{
    long long start = 0;
    for (long i = -WARMUP; i < iterations; i++) {
        if (i == 0)
            start = now_ns();
        gpuhil_virtgpu_resource_create_blob_t blob;
        memset(&blob, 0, sizeof(blob));
        blob.blob_mem = VIRTGPU_BLOB_MEM_GUEST;
        blob.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
        blob.size = size;
        if (xioctl(fd, GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &blob)) {
            perror("RESOURCE_CREATE_BLOB");
            return 1;
        }
        struct drm_virtgpu_map map = { .handle = blob.bo_handle };
        if (xioctl(fd, DRM_IOCTL_VIRTGPU_MAP, &map)) {
            perror("MAP");
            return 1;
        }
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)map.offset);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        ((volatile unsigned char *)p)[0] = 1;
        munmap(p, size);
        struct drm_gem_close close_arg = { .handle = blob.bo_handle };
        if (xioctl(fd, DRM_IOCTL_GEM_CLOSE, &close_arg)) {
            perror("GEM_CLOSE");
            return 1;
        }
    }
    printf("ns_per_op=%.1f\n", (double)(now_ns() - start) / (double)iterations);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s getparam|blob ITERATIONS NODE [PARAM|SIZE]\n", argv[0]);
        return 2;
    }
    long iterations = atol(argv[2]);
    int fd = open(argv[3], O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror(argv[3]);
        return 1;
    }
    int rc;
    if (strcmp(argv[1], "getparam") == 0)
        rc = bench_getparam(fd, iterations, argc > 4 ? atoi(argv[4]) : VIRTGPU_PARAM_3D_FEATURES);
    else if (strcmp(argv[1], "blob") == 0)
        rc = bench_blob(fd, iterations, argc > 4 ? strtoull(argv[4], NULL, 0) : 65536);
    else {
        fprintf(stderr, "unknown benchmark %s\n", argv[1]);
        rc = 2;
    }
    close(fd);
    return rc;
}
