"""The boot lane: a qemu compute node boots through sbps (boot parameters, DNS SRV, iSCSI,
WWID, root), with the initramfs built from contrib/dracut/90sbps."""
