"""The virtio-gpu render node (``/dev/dri/renderD*``) and the objects it creates.

:class:`RenderNode` (``node``) issues every virtgpu and DRM-core ioctl; buffer objects come
back as :class:`Resource` / :class:`Blob`, syncobjs as :class:`SyncObj` (``objects``);
:func:`virgl_pipe_resource_create` (``virgl``) builds the inline command of a HOST3D blob.
"""
from __future__ import annotations

from gpuhil._virtgpu import (ABI, BlobFlag, BlobHint, BlobMem, Capset, ContextParam, ExecFlag,
                             ExecSyncobjFlag, Param, PrimeFlag, SyncobjWaitFlag)
from gpuhil.devices.virtgpu.node import DRI, VIRTIO_GPU_DRIVER, DrmVersion, RenderNode, find_render_nodes
from gpuhil.devices.virtgpu.objects import Blob, ExecSyncobj, Resource, ResourceInfo, SyncObj
from gpuhil.devices.virtgpu.virgl import virgl_pipe_resource_create

__all__ = [
    "ABI", "Blob", "BlobFlag", "BlobHint", "BlobMem", "Capset", "ContextParam", "DRI",
    "DrmVersion", "ExecFlag", "ExecSyncobj", "ExecSyncobjFlag", "Param", "PrimeFlag",
    "RenderNode", "Resource", "ResourceInfo", "SyncObj", "SyncobjWaitFlag", "VIRTIO_GPU_DRIVER",
    "find_render_nodes", "virgl_pipe_resource_create",
]
