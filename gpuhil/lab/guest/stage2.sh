#!/bin/sh
# gpuhil guest stage 2 (PID 1 after the initramfs's switch_root; /dev, /proc and /sys are already
# mounted).  Mounts the rest, loads virtio_console and runs the gpuhil agent on the virtio-serial
# port; the guest powers off when the agent exits.  With gpuhil.shell=1 on the kernel command
# line the agent runs in the background and a shell owns the serial console instead.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONPATH=/gpuhil/src
export PYTHONDONTWRITEBYTECODE=
export HOME=/root LANG=C.UTF-8

poweroff_now() {
    sync
    echo o > /proc/sysrq-trigger
    sleep 5
}

[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
[ -d /sys/class/virtio-ports ] || modprobe virtio_console

case " $(cat /proc/cmdline) " in
*" gpuhil.shell=1 "*)
    python3 -m gpuhil.agent &
    echo "gpuhil lab guest: shell on the serial console; exit to power off"
    setsid -c /bin/sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
    ;;
*)
    python3 -m gpuhil.agent
    rc=$?
    [ "$rc" = 0 ] || echo "GPUHIL-AGENT-EXIT: rc=$rc"
    ;;
esac
poweroff_now
