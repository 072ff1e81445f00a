#!/bin/sh
# cmdline hook: root=sbps-s3:... -> netroot for the sbps-s3 handler; a bad parameter is
# fatal here, naming the field, before any network is brought up.
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/sbps-lib.sh

case "$(getarg root=)" in
    sbps-s3:*) ;;
    *) return 0 2> /dev/null || exit 0 ;;
esac
if ! sbps_parse "$(cat /proc/cmdline)"; then
    die "sbps: cannot boot: $SBPS_ERROR"
fi
[ -n "$SBPS_WARNING" ] && warn "sbps: $SBPS_WARNING"
info "sbps: root $SBPS_PATH (WWID $SBPS_WWID) via $SBPS_SRV"
# shellcheck disable=SC2034 # read by dracut
{
    netroot="sbps-s3:$(getarg root=)"
    rootok=1
    root=sbps
    neednet=1
}
echo "rd.neednet=1" > /etc/cmdline.d/sbps-neednet.conf
echo '[ -e /run/sbps/done ]' > "$hookdir/initqueue/finished/sbps.sh"
