#!/bin/sh
# PID 1 of the boot lane's minimal initramfs: what dracut does for root=sbps-s3, in order,
# with the module's own scripts (contrib/dracut/90sbps): the cmdline hook parses root=,
# the network comes up (qemu user networking: 10.0.2.15, the host is 10.0.2.2), the
# netroot handler logs in and mounts the root at /sysroot, then switch_root. The
# emergency path prints "sbps-emergency" and powers off (a test reads the console).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /run /tmp /etc/cmdline.d /sysroot
echo "sbps-mark: init t=$(cut -d' ' -f1 /proc/uptime)"
hookdir=/tmp/hooks; mkdir -p $hookdir/initqueue/finished
. /lib/dracut-lib.sh
NEWROOT=/sysroot
. /lib/sbps-lib.sh
. /lib/parse-sbps.sh
for m in e1000 virtio_net; do modprobe -q $m; done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo "sbps-mark: network t=$(cut -d' ' -f1 /proc/uptime)"
/sbin/sbps-s3root eth0 "$netroot" "$NEWROOT" || die "sbps: the handler failed"
echo "sbps-mark: switch_root t=$(cut -d' ' -f1 /proc/uptime)"
exec switch_root /sysroot /sbin/init
