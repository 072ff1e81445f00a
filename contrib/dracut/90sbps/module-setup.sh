#!/bin/bash
# dracut module "sbps": boot a diskless node from root=sbps-s3:... (docs/bootclient.md).
# Install: copy this directory to /usr/lib/dracut/modules.d/90sbps, then
#   dracut --add sbps --add-drivers "iscsi_tcp sd_mod squashfs overlay" -f
# The hooks parse root= (cmdline), and the netroot handler /sbin/sbps-s3root logs in
# and mounts the root once the network is up.

check() {
    require_binaries iscsiadm iscsistart sha224sum grep sed awk || return 1
    return 255 # only when asked for (--add sbps)
}

depends() {
    echo network rootfs-block
}

installkernel() {
    instmods crc32c crc32c_generic iscsi_tcp sd_mod squashfs overlay loop
}

install() {
    inst_multiple iscsiadm iscsid iscsistart sha224sum grep sed awk sort tr head cut readlink dd
    inst_multiple -o nslookup dig iscsi-iname
    inst_simple "$moddir/sbps-lib.sh" /lib/sbps-lib.sh
    inst_simple "$moddir/sbps-root.sh" /lib/sbps-root.sh
    inst_script "$moddir/sbps-s3root.sh" /sbin/sbps-s3root
    inst_hook cmdline 90 "$moddir/parse-sbps.sh"
    inst_hook pre-pivot 10 "$moddir/sbps-wwid-check.sh"
    [ -e /etc/iscsi/initiatorname.iscsi ] || true
    dracut_need_initqueue
}
