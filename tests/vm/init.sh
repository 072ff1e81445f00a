#!/bin/sh
# PID 1 of the sbps test guest: mount the pseudo filesystems, load the LIO modules, mount
# configfs, configure lo and eth0 (qemu's user network, no DHCP client in the guest), mount
# the host's shares (9p) and run the command agent forever. Never exits: the host stops the
# guest by killing qemu.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
exec </dev/null >/dev/console 2>&1

# As on a worker: the kernel takes /etc/target as its dbroot when it exists at module load,
# and Debian's rtslib refuses to create storage objects without its own dbroot folder.
mkdir -p /etc/target /etc/rtslib-fb-target /var/lib/sbps
echo "sbps-vm: loading modules"
for m in $(cat /etc/sbps-vm/modules); do
    modprobe "$m" || echo "sbps-vm: modprobe $m failed"
done
mount -t configfs configfs /sys/kernel/config

ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
hostname sbps-vm

mkdir -p /src /out
grep -q 'sbps.src=1' /proc/cmdline && mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose src /src
grep -q 'sbps.out=1' /proc/cmdline && mount -t 9p -o trans=virtio,version=9p2000.L out /out

echo "sbps-vm: ready for the agent"
while true; do
    python3 /src/tests/vm/agent.py --port 7000 || echo "sbps-vm: agent exited with $?"
    sleep 1
done
