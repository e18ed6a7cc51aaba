/*
 * C reference for bench/bench_protocol.py: encode and decode the benchmark's mix of
 * virtio-gpu commands with the linux/virtio_gpu.h structs, as a hand-written C driver would.
 * Input is the same rows/payload gpuhil's batch API takes (24 uint64 per command:
 * type, flags, fence_id, ctx_id, ring_idx, tail_off, tail_len, fields...).
 *
 * usage: protocol_ref ROWS PAYLOAD N REPEATS OUTSIZE OUT
 * prints: "<encode ns/command> <decode ns/command> <checksum>" and writes the last encoded
 * buffer to OUT (the bench compares it with gpuhil's bytes).
 */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuhil_uapi.h"

#define ROW 24
#define F(i) (r[7 + (i)])
#define CAST(T) T *c = (T *)out; size = sizeof *c; memset(c, 0, size)

static size_t encode_one(uint8_t *out, const uint64_t *r, const uint8_t *payload)
{
    uint32_t t = (uint32_t)r[0];
    size_t size;
    switch (t) {
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D: {
        CAST(struct virtio_gpu_resource_create_2d);
        c->resource_id = htole32(F(0)); c->format = htole32(F(1));
        c->width = htole32(F(2)); c->height = htole32(F(3));
        break;
    }
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D: {
        CAST(struct virtio_gpu_transfer_to_host_2d);
        c->r.x = htole32(F(0)); c->r.y = htole32(F(1));
        c->r.width = htole32(F(2)); c->r.height = htole32(F(3));
        c->offset = htole64(F(4)); c->resource_id = htole32(F(5));
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_FLUSH: {
        CAST(struct virtio_gpu_resource_flush);
        c->r.x = htole32(F(0)); c->r.y = htole32(F(1));
        c->r.width = htole32(F(2)); c->r.height = htole32(F(3));
        c->resource_id = htole32(F(4));
        break;
    }
    case VIRTIO_GPU_CMD_SET_SCANOUT: {
        CAST(struct virtio_gpu_set_scanout);
        c->r.x = htole32(F(0)); c->r.y = htole32(F(1));
        c->r.width = htole32(F(2)); c->r.height = htole32(F(3));
        c->scanout_id = htole32(F(4)); c->resource_id = htole32(F(5));
        break;
    }
    case VIRTIO_GPU_CMD_SUBMIT_3D: {
        CAST(struct virtio_gpu_cmd_submit);
        c->size = htole32(F(0));
        memcpy(out + size, payload + r[5], r[6]);
        size += r[6];
        break;
    }
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D: {
        CAST(struct virtio_gpu_transfer_host_3d);
        c->box.x = htole32(F(0)); c->box.y = htole32(F(1)); c->box.z = htole32(F(2));
        c->box.w = htole32(F(3)); c->box.h = htole32(F(4)); c->box.d = htole32(F(5));
        c->offset = htole64(F(6)); c->resource_id = htole32(F(7)); c->level = htole32(F(8));
        c->stride = htole32(F(9)); c->layer_stride = htole32(F(10));
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING: {
        CAST(struct virtio_gpu_resource_attach_backing);
        c->resource_id = htole32(F(0)); c->nr_entries = htole32(F(1));
        memcpy(out + size, payload + r[5], r[6]);
        size += r[6];
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB: {
        CAST(struct virtio_gpu_resource_create_blob);
        c->resource_id = htole32(F(0)); c->blob_mem = htole32(F(1));
        c->blob_flags = htole32(F(2)); c->nr_entries = htole32(F(3));
        c->blob_id = htole64(F(4)); c->size = htole64(F(5));
        break;
    }
    case VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE: {
        CAST(struct virtio_gpu_ctx_resource);
        c->resource_id = htole32(F(0));
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB: {
        CAST(struct virtio_gpu_resource_map_blob);
        c->resource_id = htole32(F(0)); c->offset = htole64(F(1));
        break;
    }
    case VIRTIO_GPU_CMD_UPDATE_CURSOR: {
        CAST(struct virtio_gpu_update_cursor);
        c->pos.scanout_id = htole32(F(0)); c->pos.x = htole32(F(1)); c->pos.y = htole32(F(2));
        c->resource_id = htole32(F(3)); c->hot_x = htole32(F(4)); c->hot_y = htole32(F(5));
        break;
    }
    case VIRTIO_GPU_CMD_CTX_CREATE: {
        CAST(struct virtio_gpu_ctx_create);
        c->nlen = htole32(F(0)); c->context_init = htole32(F(1));
        memcpy(c->debug_name, payload + r[5], r[6]);
        break;
    }
    default:
        return 0;
    }
    struct virtio_gpu_ctrl_hdr *h = (struct virtio_gpu_ctrl_hdr *)out;
    h->type = htole32(t);
    h->flags = htole32((uint32_t)r[1]);
    h->fence_id = htole64(r[2]);
    h->ctx_id = htole32((uint32_t)r[3]);
    h->ring_idx = (uint8_t)r[4];
    return size;
}

#define G(n) (uint64_t)le32toh(c->n)
#define G64(n) le64toh(c->n)
#define VIEW(T) const T *c = (const T *)in; size = sizeof *c

static int decode_one(const uint8_t *in, size_t base, size_t len, uint64_t *r)
{
    const struct virtio_gpu_ctrl_hdr *h = (const struct virtio_gpu_ctrl_hdr *)in;
    uint64_t *f = r + 7;
    size_t size;
    if (len < sizeof *h)
        return -1;
    r[0] = le32toh(h->type);
    r[1] = le32toh(h->flags);
    r[2] = le64toh(h->fence_id);
    r[3] = le32toh(h->ctx_id);
    r[4] = h->ring_idx;
    r[5] = r[6] = 0;
    switch (r[0]) {
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D: {
        VIEW(struct virtio_gpu_resource_create_2d);
        f[0] = G(resource_id); f[1] = G(format); f[2] = G(width); f[3] = G(height);
        break;
    }
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D: {
        VIEW(struct virtio_gpu_transfer_to_host_2d);
        f[0] = G(r.x); f[1] = G(r.y); f[2] = G(r.width); f[3] = G(r.height);
        f[4] = G64(offset); f[5] = G(resource_id);
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_FLUSH: {
        VIEW(struct virtio_gpu_resource_flush);
        f[0] = G(r.x); f[1] = G(r.y); f[2] = G(r.width); f[3] = G(r.height);
        f[4] = G(resource_id);
        break;
    }
    case VIRTIO_GPU_CMD_SET_SCANOUT: {
        VIEW(struct virtio_gpu_set_scanout);
        f[0] = G(r.x); f[1] = G(r.y); f[2] = G(r.width); f[3] = G(r.height);
        f[4] = G(scanout_id); f[5] = G(resource_id);
        break;
    }
    case VIRTIO_GPU_CMD_SUBMIT_3D: {
        VIEW(struct virtio_gpu_cmd_submit);
        f[0] = G(size);
        if (len != size + f[0])
            return -1;
        r[5] = base + size; r[6] = f[0];
        return 0;
    }
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D: {
        VIEW(struct virtio_gpu_transfer_host_3d);
        f[0] = G(box.x); f[1] = G(box.y); f[2] = G(box.z);
        f[3] = G(box.w); f[4] = G(box.h); f[5] = G(box.d);
        f[6] = G64(offset); f[7] = G(resource_id); f[8] = G(level);
        f[9] = G(stride); f[10] = G(layer_stride);
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING: {
        VIEW(struct virtio_gpu_resource_attach_backing);
        f[0] = G(resource_id); f[1] = G(nr_entries);
        if (len != size + f[1] * sizeof(struct virtio_gpu_mem_entry))
            return -1;
        r[5] = base + size; r[6] = len - size;
        return 0;
    }
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB: {
        VIEW(struct virtio_gpu_resource_create_blob);
        f[0] = G(resource_id); f[1] = G(blob_mem); f[2] = G(blob_flags);
        f[3] = G(nr_entries); f[4] = G64(blob_id); f[5] = G64(size);
        break;
    }
    case VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE: {
        VIEW(struct virtio_gpu_ctx_resource);
        f[0] = G(resource_id);
        break;
    }
    case VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB: {
        VIEW(struct virtio_gpu_resource_map_blob);
        f[0] = G(resource_id); f[1] = G64(offset);
        break;
    }
    case VIRTIO_GPU_CMD_UPDATE_CURSOR: {
        VIEW(struct virtio_gpu_update_cursor);
        f[0] = G(pos.scanout_id); f[1] = G(pos.x); f[2] = G(pos.y);
        f[3] = G(resource_id); f[4] = G(hot_x); f[5] = G(hot_y);
        break;
    }
    case VIRTIO_GPU_CMD_CTX_CREATE: {
        VIEW(struct virtio_gpu_ctx_create);
        f[0] = G(nlen); f[1] = G(context_init);
        r[5] = base + offsetof(struct virtio_gpu_ctx_create, debug_name);
        r[6] = sizeof c->debug_name;
        break;
    }
    default:
        return -1;
    }
    return len == size ? 0 : -1;
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*len ? *len : 1);
    if (*len && fread(p, 1, *len, f) != *len) { perror(path); exit(1); }
    fclose(f);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s ROWS PAYLOAD N REPEATS OUTSIZE OUT\n", argv[0]);
        return 2;
    }
    size_t rows_len, payload_len;
    const uint64_t *rows = slurp(argv[1], &rows_len);
    const uint8_t *payload = slurp(argv[2], &payload_len);
    size_t n = strtoul(argv[3], NULL, 0), repeats = strtoul(argv[4], NULL, 0);
    size_t outsize = strtoul(argv[5], NULL, 0);
    uint8_t *out = aligned_alloc(64, (outsize + 63) & ~(size_t)63);
    memset(out, 0, outsize);
    uint32_t *offsets = malloc(n * sizeof *offsets), *lengths = malloc(n * sizeof *lengths);
    uint64_t *decoded = malloc(n * ROW * sizeof *decoded);
    double best_enc = 1e9, best_dec = 1e9;
    uint64_t checksum = 0;

    for (int run = 0; run < 3; run++) {
        double t0 = now();
        for (size_t k = 0; k < repeats; k++) {
            size_t pos = 0;
            for (size_t i = 0; i < n; i++) {
                size_t len = encode_one(out + pos, rows + i * ROW, payload);
                if (!len) { fprintf(stderr, "row %zu: type not in the mix\n", i); return 1; }
                offsets[i] = (uint32_t)pos;
                lengths[i] = (uint32_t)len;
                pos = (pos + len + 7) & ~(size_t)7;
            }
        }
        double t1 = now();
        for (size_t k = 0; k < repeats; k++) {
            for (size_t i = 0; i < n; i++) {
                if (decode_one(out + offsets[i], offsets[i], lengths[i], decoded + i * ROW)) {
                    fprintf(stderr, "message %zu does not decode\n", i);
                    return 1;
                }
            }
            checksum += decoded[(k % n) * ROW + 2];
        }
        double t2 = now();
        if (t1 - t0 < best_enc) best_enc = t1 - t0;
        if (t2 - t1 < best_dec) best_dec = t2 - t1;
    }
    FILE *f = fopen(argv[6], "wb");
    if (!f || fwrite(out, 1, outsize, f) != outsize) { perror(argv[6]); return 1; }
    fclose(f);
    printf("%.3f %.3f %llu\n", best_enc * 1e9 / (n * repeats), best_dec * 1e9 / (n * repeats),
           (unsigned long long)checksum);
    return 0;
}
