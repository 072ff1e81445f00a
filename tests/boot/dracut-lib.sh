#!/bin/sh
# The few dracut-lib functions the sbps module's scripts call, for the boot lane's minimal
# initramfs (dracut's own are used in a dracut-built one). die is the emergency path.
getarg() {
    for _a in $(cat /proc/cmdline); do
        case "$_a" in "$1"*) echo "${_a#"$1"}" ;; esac
    done | tail -n 1
}
info() { echo "$*"; }
warn() { echo "warning: $*"; }
die() {
    echo "$*"
    echo "sbps-emergency"
    poweroff -f
    sleep 60
}
