#!/bin/sh
# sbps-lib.sh: the root=sbps-s3:... grammar and the identity it implies, in POSIX sh.
#
# The same grammar as sbps.publish.boot.params (docs/bootparams.md); both pass
# tests/vectors/bootparams.json. Sourced by the dracut hooks of this module; run
# directly (`sh sbps-lib.sh parse TEXT`) it prints the fields as name=value lines, or
# "root=: <field>: <reason>" on stderr and exits 1. Needs: sh, grep -E, sha224sum.
# Must not: touch the network or a disk.

SBPS_DEFAULT_TIMEOUT=300
SBPS_MAX_TIMEOUT=86400
SBPS_ETAG_RE='^[0-9a-fA-F]{32}(-([1-9][0-9]{0,3}|10000))?$'

sbps_bad() { # field reason
    SBPS_FIELD=$1
    SBPS_ERROR="root=: $1: $2"
    return 1
}

sbps_match() { # text extended-regex
    printf '%s\n' "$1" | grep -Eq -- "$2"
}

# Split a command line on white space outside double quotes, as the kernel does; one
# word per line on stdout.
sbps_tokens() {
    _s=$1 _w="" _q=0 _have=0
    while [ -n "$_s" ]; do
        _c=${_s%"${_s#?}"}
        _s=${_s#?}
        [ "$_c" = '"' ] && _q=$((1 - _q))
        case "$_c" in
            " " | "$(printf '\t')" | "$(printf '\n\r')")
                if [ "$_q" = 0 ]; then
                    [ "$_have" = 1 ] && printf '%s\n' "$_w"
                    _w="" _have=0
                    continue
                fi ;;
        esac
        _w="$_w$_c" _have=1
    done
    [ "$_have" = 1 ] && printf '%s\n' "$_w"
    return 0
}

sbps_root_value() { # text -> SBPS_VALUE
    _words=$(sbps_tokens "$1")
    [ -n "$_words" ] || { sbps_bad root "empty input"; return 1; }
    _root="" _n=0 _only="" _found=0
    _nl='
'
    _old_ifs=$IFS; IFS=$_nl
    for _w in $_words; do
        case "$_w" in
            \"*=*\") _w=${_w#\"}; _w=${_w%\"} ;;
        esac
        _n=$((_n + 1)); _only=$_w
        case "$_w" in root=*) _root=${_w#root=}; _found=1 ;; esac
    done
    IFS=$_old_ifs
    if [ "$_found" = 1 ]; then
        SBPS_VALUE=$_root
    elif [ "$_n" = 1 ]; then
        SBPS_VALUE=$_only
    else
        sbps_bad root "the command line has no root= parameter"; return 1
    fi
    case "$SBPS_VALUE" in \"?*\") SBPS_VALUE=${SBPS_VALUE#\"}; SBPS_VALUE=${SBPS_VALUE%\"} ;; esac
    return 0
}

sbps_check_path() { # s3://bucket/key
    _p=$1
    case "$_p" in *[[:space:]]*) sbps_bad path "'$_p' holds white space"; return 1 ;; esac
    _rest=${_p#s3://}
    _bucket=${_rest%%/*}
    case "$_rest" in */*) _key=${_rest#*/} ;; *) _key="" ;; esac
    if ! sbps_match "$_bucket" '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' || [ -z "$_key" ]; then
        sbps_bad path "'$_p' is not an s3://bucket/key URL"; return 1
    fi
    [ ${#_key} -le 1024 ] || { sbps_bad path "object key longer than 1024 characters"; return 1; }
    case "/$_key/" in
        *//* | */./* | */../*) sbps_bad path "object key '$_key' has an empty, '.' or '..' path segment"; return 1 ;;
    esac
    if printf '%s' "$_key" | grep -q '[[:cntrl:]]'; then
        sbps_bad path "object key contains control characters"; return 1
    fi
    return 0
}

sbps_check_label() { # text field
    sbps_match "$1" '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$' && return 0
    sbps_bad "$2" "'$1' is not a DNS label"
}

sbps_check_srv() {
    _srv=$1
    if ! sbps_match "$_srv" '^_sbps-[a-z0-9]+\._tcp\..+$'; then
        sbps_bad srv_name "'$_srv' is not an SBPS SRV name (_sbps-<network>._tcp.<system>.<site-domain>)"
        return 1
    fi
    _net=${_srv#_sbps-}; _net=${_net%%.*}
    case "$_net" in hsn | nmn) ;; *) sbps_bad srv_name "network '$_net' is not one of hsn, nmn"; return 1 ;; esac
    _dom=${_srv#*._tcp.}
    [ ${#_dom} -le 253 ] || { sbps_bad srv_name "'$_dom' is longer than 253 characters"; return 1; }
    case "$_dom" in *.*) ;; *) sbps_bad srv_name "'$_srv': the domain needs the system name and the site domain"; return 1 ;; esac
    _r=$_dom.
    while [ -n "$_r" ]; do
        sbps_check_label "${_r%%.*}" srv_name || return 1
        _r=${_r#*.}
    done
    return 0
}

# sbps_parse TEXT: a root= parameter, its value, or a whole command line. Sets
# SBPS_PATH SBPS_ETAG SBPS_IQN_PREFIX SBPS_SRV SBPS_TIMEOUT SBPS_RAMROOT SBPS_WARNING
# (and SBPS_SERIAL SBPS_WWID: sbps_identity); on error returns 1 with SBPS_FIELD and
# SBPS_ERROR set.
sbps_parse() {
    SBPS_WARNING="" SBPS_FIELD="" SBPS_ERROR=""
    sbps_root_value "$1" || return 1
    _v=$SBPS_VALUE
    _provider=${_v%%:*}
    if [ "$_provider" != "sbps-s3" ]; then
        case "$_v" in
            *:*) sbps_bad provider "'$_provider' is not 'sbps-s3': this root= is for another root file system provider" ;;
            *) sbps_bad provider "'$_v' is not a sbps-s3 root parameter" ;;
        esac
        return 1
    fi
    _rest=${_v#*:}
    # The extra ':' keeps a trailing empty field (sh drops the last one when it is empty).
    _split="$_rest:"
    set -f
    _old_ifs=$IFS; IFS=:
    # shellcheck disable=SC2086 # split on ':' on purpose
    set -- $_split
    IFS=$_old_ifs
    set +f
    if [ "$1" != "s3" ] || [ $# -lt 2 ]; then
        sbps_bad path "'${_rest%%:*}' does not start with s3://"; return 1
    fi
    case "$2" in //*) ;; *) sbps_bad path "'${_rest%%:*}' does not start with s3://"; return 1 ;; esac
    SBPS_PATH="s3:$2"
    sbps_check_path "$SBPS_PATH" || return 1
    shift 2
    [ $# -ge 1 ] || { sbps_bad etag missing; return 1; }
    _first=$1
    _ambiguous=0
    case "$_first" in */*) _ambiguous=1 ;; esac
    if [ "$_ambiguous" = 0 ] && ! sbps_match "$_first" "$SBPS_ETAG_RE"; then
        if { [ $# -ge 2 ] && sbps_match "$2" "$SBPS_ETAG_RE"; } ||
           { [ $# -ge 3 ] && sbps_match "$3" "$SBPS_ETAG_RE"; }; then
            _ambiguous=1
        fi
    fi
    if [ "$_ambiguous" = 1 ]; then
        sbps_bad path "$SBPS_PATH:'$_first' holds a ':' after s3://, which the root= grammar cannot carry"
        return 1
    fi
    [ -n "$_first" ] || { sbps_bad etag "empty: the rootfs identity needs the S3 ETag of the rootfs"; return 1; }
    sbps_match "$_first" "$SBPS_ETAG_RE" || { sbps_bad etag "'$_first' is not an S3 ETag (32 hex digits, with -<parts> for a multipart upload)"; return 1; }
    SBPS_ETAG=$_first
    [ $# -ge 2 ] || { sbps_bad transport missing; return 1; }
    [ "$2" = sbps ] || { sbps_bad transport "'$2': only 'sbps' is served by SBPS"; return 1; }
    [ $# -ge 3 ] || { sbps_bad schema missing; return 1; }
    [ "$3" = v1 ] || { sbps_bad schema "'$3': unknown schema version; only 'v1' exists"; return 1; }
    shift 3
    _iqn="" _seen=0
    while [ $# -gt 0 ]; do
        case "$1" in _*) _seen=1; break ;; esac
        _iqn="${_iqn:+$_iqn:}$1"
        _seen=2
        shift
    done
    if [ "$_seen" != 1 ]; then
        if [ "$_seen" = 2 ]; then sbps_bad srv_name "missing (no _sbps-<network>._tcp.<domain> field)"
        else sbps_bad iqn_prefix missing; fi
        return 1
    fi
    [ -n "$_iqn" ] || { sbps_bad iqn_prefix "missing before the SRV name"; return 1; }
    # IQNs compare case-insensitively (RFC 3720): either case is accepted, kept as given.
    if ! sbps_match "$_iqn" '^[iI][qQ][nN]\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[a-zA-Z0-9.-]+)*$' ||
       [ ${#_iqn} -gt 221 ]; then
        sbps_bad iqn_prefix "'$_iqn' is not an IQN prefix such as 'iqn.2023-06.csm.iscsi'"; return 1
    fi
    case "$_iqn" in *::*) sbps_bad iqn_prefix "'$_iqn' is not an IQN prefix"; return 1 ;; esac
    SBPS_IQN_PREFIX=$_iqn
    sbps_check_srv "$1" || return 1
    SBPS_SRV=$1
    shift
    [ $# -ge 1 ] || { sbps_bad timeout missing; return 1; }
    [ $# -le 2 ] || { shift 2; _x=$*; sbps_bad ramroot "unexpected text after the ramroot field: '$_x'"; return 1; }
    if [ -z "$1" ]; then
        SBPS_TIMEOUT=$SBPS_DEFAULT_TIMEOUT
    else
        sbps_match "$1" '^[0-9]+$' || { sbps_bad timeout "'$1' is not a whole number of seconds"; return 1; }
        _t=$(printf '%s' "$1" | sed 's/^0*//')
        if [ -z "$_t" ] || [ ${#_t} -gt 5 ] || [ "$_t" -gt "$SBPS_MAX_TIMEOUT" ]; then
            sbps_bad timeout "$1 is outside 1..$SBPS_MAX_TIMEOUT seconds"; return 1
        fi
        SBPS_TIMEOUT=$_t
    fi
    SBPS_RAMROOT=0
    if [ $# -eq 2 ] && [ -n "$2" ] && [ "$2" != 0 ]; then
        # The field's client reads any value but "0" (or empty) as true (docs-csm).
        SBPS_RAMROOT=1
        [ "$2" = 1 ] || SBPS_WARNING="ramroot '$2' is read as true (any value but '0' is): the root is copied to RAM"
    fi
    sbps_identity
}

# The identity the target derives from the same path and etag (sbps.core.identity):
# serial = sha224("<path>|<etag>")[:31], WWID = 36001405 + serial[:25].
sbps_identity() {
    _digest=$(printf '%s|%s' "$SBPS_PATH" "$SBPS_ETAG" | sha224sum)
    SBPS_SERIAL=$(printf '%.31s' "$_digest")
    SBPS_WWID=36001405$(printf '%.25s' "$SBPS_SERIAL")
}

sbps_print() {
    printf 'path=%s\netag=%s\niqn_prefix=%s\nsrv_name=%s\ntimeout=%s\nramroot=%s\nwarning=%s\nserial=%s\nwwid=%s\n' \
        "$SBPS_PATH" "$SBPS_ETAG" "$SBPS_IQN_PREFIX" "$SBPS_SRV" "$SBPS_TIMEOUT" \
        "$SBPS_RAMROOT" "$SBPS_WARNING" "$SBPS_SERIAL" "$SBPS_WWID"
}

if [ "${1:-}" = parse ] && [ "${0##*/}" = sbps-lib.sh ]; then
    shift
    if sbps_parse "$*"; then
        sbps_print
        exit 0
    fi
    printf '%s\n' "$SBPS_ERROR" >&2
    exit 1
fi
