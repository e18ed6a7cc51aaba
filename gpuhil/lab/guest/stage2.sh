#!/bin/sh
# gpuhil guest stage 2 (PID 1 after the initramfs's switch_root; /dev, /proc and /sys are already
# mounted).  Starts the gpuhil agent on the virtio-serial port and mounts the rest meanwhile; the
# guest powers off when the agent exits.  With gpuhil.shell=1 on the kernel command line a shell
# owns the serial console and the guest powers off when it exits.
# Kept lean: everything here is on the boot's critical path (busybox is static, so its applets
# start faster than the dynamically linked tools over 9p).  GPUHIL_TRACE=1 on the kernel command
# line prints the guest uptime at each step.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONPATH=/gpuhil/src
export HOME=/root LANG=C.UTF-8
bb=/bin/busybox
trace() { [ -n "$GPUHIL_TRACE" ] && echo "T $1 $(cat /proc/uptime)"; }
trace stage2

# -I -S: no site processing and the project tree last on sys.path, so that stdlib imports do not
# probe the uncached 9p project mount (the agent adds site itself before the first payload).
# The agent answers nothing before /run/gpuhil-mounted exists (see gpuhil.agent.MOUNTED).
python3 -I -S -c 'import sys; sys.path.append("/gpuhil/src"); from gpuhil.agent import main; sys.exit(main())' &
agent=$!
trace agent-started

$bb mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
[ -d /sys/class/virtio-ports ] || modprobe virtio_console
: > /run/gpuhil-mounted
trace mounted

case " $(cat /proc/cmdline) " in
*" gpuhil.shell=1 "*)
    echo "gpuhil lab guest: a shell on the serial console; exit it to power off"
    setsid -c /bin/sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
    ;;
*)
    wait "$agent"
    rc=$?
    [ "$rc" = 0 ] || echo "GPUHIL-AGENT-EXIT: rc=$rc"
    ;;
esac
sync
echo o > /proc/sysrq-trigger
sleep 5
