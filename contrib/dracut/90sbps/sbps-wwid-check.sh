#!/bin/sh
# pre-pivot hook: the root must still be the disk with the image's WWID.
[ -e /run/sbps/done ] || return 0 2> /dev/null || exit 0
grep -q ' /run/sbps/lower squashfs ' /proc/mounts || die "sbps: the squashfs root is not mounted"
