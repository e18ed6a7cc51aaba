"""The blob suite: blob resource lifecycles, errors and stress through the guest kernel."""

#: what mappable HOST3D blobs need: a VIRGL2 context for the inline create command, blob
#: resources, and a hostmem window to map them into
HOST3D_NEEDS = "capset.virgl2 and param.resource_blob and param.host_visible"
