#!/bin/sh
# dracut netroot handler for root=sbps-s3: (called as "sbps-s3root <netif> <netroot>
# <NEWROOT>" once the network is up). On failure: the emergency path (die).
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/sbps-lib.sh
. /lib/sbps-root.sh

[ -e /run/sbps/done ] && exit 0
sbps_parse "$(cat /proc/cmdline)" || die "sbps: cannot boot: $SBPS_ERROR"
modprobe -q crc32c; modprobe -q crc32c_generic; modprobe -q iscsi_tcp; modprobe -q sd_mod; modprobe -q squashfs; modprobe -q overlay
[ -s /etc/iscsi/initiatorname.iscsi ] || {
    mkdir -p /etc/iscsi
    echo "InitiatorName=$(iscsi-iname 2>/dev/null || echo iqn.2023-06.csm.node:$(hostname))" \
        > /etc/iscsi/initiatorname.iscsi
}
mkdir -p /run/lock/iscsi /var/lock/iscsi
# iscsiadm needs iscsid for SendTargets discovery; the login itself is iscsistart's.
pidof iscsid > /dev/null 2>&1 || iscsid || warn "sbps: iscsid did not start"
if sbps_boot "${NEWROOT:-/sysroot}"; then
    mkdir -p /run/sbps && : > /run/sbps/done
    exit 0
fi
die "sbps: cannot boot: no target gave the root within ${SBPS_TIMEOUT}s (emergency shell)"
