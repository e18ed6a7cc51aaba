"""A seccomp filter that answers chosen ioctl requests with an errno instead of the kernel: how
the nested tier gives an inner QEMU the kernel it would meet before a feature existed.

``deny_ioctls({VFIO_DEVICE_FEATURE: errno.ENOTTY})`` returns a ``preexec_fn`` for
:class:`subprocess.Popen`: in the child, after fork and before exec, it sets no_new_privs and
installs a classic BPF program (x86-64 only) that fails ``ioctl(fd, request, ...)`` with the
errno for each listed request and lets every other system call through.  The filter is
inherited across exec, so the program under test never sees the kernel's answer to those
requests.  ENOTTY is what a kernel gives for a VFIO device feature it does not know
(``vfio_pci_core_ioctl_feature``'s default case), which is every feature before its release.
"""
from __future__ import annotations

import ctypes
import os
import struct
from typing import Callable, Mapping

__all__ = ["deny_ioctls"]

# linux/filter.h, linux/seccomp.h, linux/audit.h, asm/unistd_64.h, linux/prctl.h
_LD_W_ABS = 0x20      # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06         # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_AUDIT_ARCH_X86_64 = 0xC000003E
_NR_IOCTL = 16
_OFF_NR, _OFF_ARCH, _OFF_ARG1_LOW = 0, 4, 24  # struct seccomp_data (args[1]'s low word)
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _program(denied: Mapping[int, int]) -> bytes:
    """The filter: arch check, nr == ioctl, then one compare per denied request."""
    ops: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, _RET_ALLOW),  # another ABI: nothing to withhold
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JEQ_K, 1, 0, _NR_IOCTL),
        (_RET_K, 0, 0, _RET_ALLOW),
        (_LD_W_ABS, 0, 0, _OFF_ARG1_LOW),
    ]
    for request, err in denied.items():
        ops += [(_JEQ_K, 0, 1, request & 0xFFFFFFFF), (_RET_K, 0, 0, _RET_ERRNO | (err & 0xFFFF))]
    ops.append((_RET_K, 0, 0, _RET_ALLOW))
    return b"".join(struct.pack("=HBBI", *op) for op in ops)


def deny_ioctls(denied: Mapping[int, int]) -> Callable[[], None]:
    """A ``preexec_fn`` installing the filter (request -> errno); OSError from prctl names the
    step that failed (the child then does not exec)."""
    if os.uname().machine != "x86_64":
        raise OSError(f"gpuhil's seccomp filter is written for x86-64, not {os.uname().machine}")
    code = _program(denied)
    count = len(code) // 8
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("=H6xQ", count, ctypes.addressof(buffer))
    fprog_buffer = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    libc.prctl.restype = ctypes.c_int

    def install() -> None:
        _ = buffer  # the program must live until the child's prctl copied it
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                      ctypes.addressof(fprog_buffer), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)")

    return install
