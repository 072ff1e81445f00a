#!/bin/sh
# sbps-root.sh: find and mount the root the parsed root=sbps-s3 parameters name.
#
# Sourced after sbps-lib.sh (sbps_parse has set SBPS_*). sbps_boot NEWROOT: resolve the SRV
# name, for each target in SRV order (lowest priority first) discover its targets whose
# IQN starts with the IQN prefix (case-insensitive), log in with the kernel initiator at
# the SRV host's address (never at an address discovery reports), and take the disk whose
# WWID is 36001405 + serial[:25]; any other disk is refused with both WWIDs printed. The
# squashfs is mounted read-only under a tmpfs overlay at NEWROOT (ramroot: copied to RAM
# first). A target that does not answer is skipped; when none gives the disk within the
# timeout, sbps_boot prints why and returns 1 (the caller takes the emergency path).
# Needs: iscsistart, iscsiadm (discovery), nslookup (busybox) or dig, mount, modprobe. Must not write to
# the disk.

sbps_log() { echo "sbps: $*" >&2; [ -w /dev/kmsg ] && echo "sbps: $*" > /dev/kmsg 2>/dev/null; return 0; }
sbps_mark() { # a console timestamp for the figures (perf/boot_bench.py)
    _up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)
    echo "sbps-mark: $1 t=$_up" >&2
}

# The DNS server: rd.sbps.dns=<ip>[:<port>] on the command line, else resolv.conf's.
sbps_dns_server() {
    for _w in $(cat /proc/cmdline); do
        case "$_w" in rd.sbps.dns=*) echo "${_w#rd.sbps.dns=}"; return 0 ;; esac
    done
    sed -n 's/^nameserver[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/resolv.conf 2>/dev/null | head -n 1
}

# "<priority> <weight> <port> <host>" lines, lowest priority first (RFC 2782), then the
# heaviest, then by host name (deterministic where a site gives all the same weight).
sbps_srv() { # name server
    if command -v dig > /dev/null 2>&1; then
        _srv_at=${2%%:*} _srv_port=53
        case "$2" in *:*) _srv_port=${2##*:} ;; esac
        dig +short +time=2 +tries=2 -p "$_srv_port" "@$_srv_at" SRV "$1"
    else
        nslookup -type=srv "$1" ${2:+"$2"} 2>/dev/null |
            sed -n 's/.*service = \([0-9]*\) \([0-9]*\) \([0-9]*\) \(.*\)$/\1 \2 \3 \4/p'
    fi | sort -k1,1n -k2,2nr -k4,4  # equal priority and weight: by host name
}

sbps_a() { # host server -> first IPv4 address
    if command -v dig > /dev/null 2>&1; then
        _srv_at=${2%%:*} _srv_port=53
        case "$2" in *:*) _srv_port=${2##*:} ;; esac
        dig +short +time=2 +tries=2 -p "$_srv_port" "@$_srv_at" A "$1" | head -n 1
    else
        # busybox prints the server first ("Address: <server>#53"), then the answers.
        nslookup -type=a "$1" ${2:+"$2"} 2>/dev/null | sed -n '/^Name:/,$ s/^Address:[[:space:]]*\([0-9.]*\)$/\1/p' | head -n 1
    fi
}

sbps_lower() { printf '%s' "$1" | tr 'A-Z' 'a-z'; }

# WWID of a SCSI disk as multipath sees it: 3 + the NAA designator (sysfs wwid naa.<hex>).
sbps_disk_wwid() {
    _w=$(cat "/sys/block/$1/device/wwid" 2>/dev/null) || return 1
    case "$_w" in naa.*) echo "3${_w#naa.}" ;; *) echo "$_w" ;; esac
}

sbps_sessions_disks() { # the sd disks of iSCSI sessions
    for _d in /sys/block/sd*; do
        [ -e "$_d" ] || continue
        case "$(readlink -f "$_d/device")" in */session*) echo "${_d##*/}" ;; esac
    done
}

# Look for our disk among the logged-in sessions' disks for up to $1 seconds.
sbps_find_disk() {
    _until=$(( $(cut -d. -f1 /proc/uptime) + $1 ))
    while :; do
        _refused=""
        for _d in $(sbps_sessions_disks); do
            _got=$(sbps_disk_wwid "$_d") || continue
            if [ "$_got" = "$SBPS_WWID" ]; then
                SBPS_DISK=/dev/$_d
                return 0
            fi
            _refused="$_refused $_d=$_got"
        done
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$_until" ] && break
        sleep 1
    done
    for _r in $_refused; do
        sbps_log "refusing disk ${_r%%=*}: WWID ${_r#*=} is not the image's WWID $SBPS_WWID"
    done
    return 1
}

sbps_login() { # address port -> 0 when logged in to at least one matching target
    _prefix=$(sbps_lower "$SBPS_IQN_PREFIX"):
    _names=$(iscsiadm -m discovery -t st -p "$1:$2" -o nonpersistent 2>/dev/null |
        awk '{print $2}')
    [ -n "$_names" ] || { sbps_log "no answer from $1:$2 (discovery)"; return 1; }
    _ok=1
    for _t in $_names; do
        case "$(sbps_lower "$_t")" in "$_prefix"*) ;; *) continue ;; esac
        # The portal is the SRV host's address: never one discovery reported. iscsistart
        # logs in by itself (no iscsid), as dracut's iscsi module does for firmware boot.
        _tpgt=$(iscsiadm -m discovery -t st -p "$1:$2" -o nonpersistent 2>/dev/null |
            awk -v t="$_t" '$2 == t { sub(/.*,/, "", $1); print $1; exit }')
        _iname=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)
        if _out=$(iscsistart -i "$_iname" -t "$_t" -g "${_tpgt:-1}" -a "$1" -p "$2" 2>&1); then
            sbps_log "logged in to $_t at $1:$2"
            _ok=0
        else
            sbps_log "login to $_t at $1:$2 failed: $(echo "$_out" | tr '\n' ' ')"
        fi
    done
    [ "$_ok" = 0 ] || sbps_log "no target named $SBPS_IQN_PREFIX:* at $1:$2"
    return $_ok
}

sbps_logout() { # address port
    iscsiadm -m session -u > /dev/null 2>&1
    return 0
}

sbps_mount() { # newroot
    mkdir -p /run/sbps/lower /run/sbps/rw
    _src=$SBPS_DISK
    if [ "$SBPS_RAMROOT" = 1 ]; then
        sbps_log "ramroot: copying $SBPS_DISK to RAM"
        mount -t tmpfs -o mode=0700 sbps-ram /run/sbps/rw || return 1
        dd if="$SBPS_DISK" of=/run/sbps/rw/rootfs.squashfs bs=1M 2>/dev/null || return 1
        _src=/run/sbps/rw/rootfs.squashfs
        mount -t squashfs -o ro,loop "$_src" /run/sbps/lower || return 1
    else
        mount -t squashfs -o ro "$_src" /run/sbps/lower || return 1
        mount -t tmpfs -o mode=0755 sbps-rw /run/sbps/rw || return 1
    fi
    mkdir -p /run/sbps/rw/upper /run/sbps/rw/work
    mount -t overlay -o "lowerdir=/run/sbps/lower,upperdir=/run/sbps/rw/upper,workdir=/run/sbps/rw/work" \
        sbps-root "$1"
}

sbps_boot() { # newroot
    _newroot=$1
    _dns=$(sbps_dns_server)
    _deadline=$(( $(cut -d. -f1 /proc/uptime) + SBPS_TIMEOUT ))
    sbps_log "root ${SBPS_PATH} etag ${SBPS_ETAG}: WWID $SBPS_WWID via $SBPS_SRV (DNS ${_dns:-default}, timeout ${SBPS_TIMEOUT}s)"
    while [ "$(cut -d. -f1 /proc/uptime)" -lt "$_deadline" ]; do
        _targets=$(sbps_srv "$SBPS_SRV" "$_dns")
        sbps_mark dns
        if [ -z "$_targets" ]; then
            sbps_log "no SRV records for $SBPS_SRV yet"
            sleep 2
            continue
        fi
        _old_ifs=$IFS
        IFS='
'
        for _line in $_targets; do
            IFS=$_old_ifs
            set -- $_line
            _port=$3 _host=${4%.}
            _addr=$(sbps_a "$_host" "$_dns")
            if [ -z "$_addr" ]; then
                sbps_log "no A record for $_host"
                continue
            fi
            sbps_login "$_addr" "$_port" || continue
            sbps_mark login
            if sbps_find_disk 10; then
                sbps_mark device
                sbps_log "root disk $SBPS_DISK has WWID $SBPS_WWID (target $_host:$_port)"
                sbps_mount "$_newroot" || { sbps_log "mounting $SBPS_DISK failed"; return 1; }
                sbps_mark mounted
                return 0
            fi
            sbps_logout "$_addr" "$_port"
        done
        IFS=$_old_ifs
        sleep 2
    done
    sbps_log "FATAL: no SBPS target gave the root $SBPS_PATH (WWID $SBPS_WWID) within ${SBPS_TIMEOUT}s; see the lines above"
    return 1
}
