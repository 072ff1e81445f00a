#!/usr/bin/env bash
# Builds the sbps RPM with rpmbuild (SUSE's, Fedora's or Debian's `rpm` package).
#
#   contrib/rpm/build.sh [--python PYTHON] [--topdir DIR] [--wheelhouse DIR] [--release N]
#
# 1. Wheels of sbps and of every runtime dependency, pinned by constraints.txt, go into the
#    source tarball. This is the only step that may fetch anything (from the package index
#    pip is configured for, or from nothing but --wheelhouse DIR with --no-index).
# 2. rpmbuild installs them into a virtual environment under /usr/lib/sbps with
#    `pip --no-index`: building and installing the RPM need no network.
# PYTHON (default python3.11) must be the Python minor version the workers run (3.11+;
# SLES 15 SP6: python311), because some wheels are compiled for it; the package requires
# that interpreter's path. Prints the path of the built RPM last.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=python3.11
topdir="$here/_build"
wheelhouse=""
release=1
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=$2; shift 2 ;;
        --topdir) topdir=$2; shift 2 ;;
        --wheelhouse) wheelhouse=$2; shift 2 ;;
        --release) release=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

pybin=$("$python" -c 'import sys; print(sys.executable)')
"$pybin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "build.sh: $pybin is older than Python 3.11" >&2; exit 2; }
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/sbps/__init__.py")
name="sbps-$version"
mkdir -p "$topdir"/{BUILD,BUILDROOT,RPMS,SOURCES,SPECS,SRPMS}
topdir=$(cd "$topdir" && pwd)
stage="$topdir/stage"
rm -rf "$stage"
mkdir -p "$stage/src" "$stage/$name/wheels"

# A copy of the sources, so building the wheel leaves nothing in the checkout.
(cd "$repo" && tar -cf - --exclude=__pycache__ setup.py README.md sbps configfs) \
    | tar -xf - -C "$stage/src"
pip=("$pybin" -m pip --disable-pip-version-check)
index=()
if [ -n "$wheelhouse" ]; then index=(--no-index --find-links "$wheelhouse"); fi
"${pip[@]}" wheel --quiet --no-deps "${index[@]}" -w "$stage/$name/wheels" "$stage/src"
"${pip[@]}" wheel --quiet -c "$repo/constraints.txt" "${index[@]}" \
    --find-links "$stage/$name/wheels" -w "$stage/$name/wheels" "sbps==$version"

# What the spec installs besides the wheels.
mkdir -p "$stage/$name/systemd" "$stage/$name/docs" "$stage/$name/contrib/grafana" \
    "$stage/$name/contrib/prometheus"
cp "$repo"/systemd/sbps-marshal.service "$repo"/systemd/tgtd-sbps.conf \
    "$repo"/systemd/sbps-marshal-tgt.conf "$stage/$name/systemd/"
cp "$repo/contrib/marshal.example.toml" "$here/marshal.toml" "$here/sbps-marshal.sysconfig" \
    "$repo/README.md" "$stage/$name/"
cp "$repo"/docs/*.md "$stage/$name/docs/"
cp "$repo/contrib/grafana/sbps.json" "$stage/$name/contrib/grafana/"
cp "$repo/contrib/prometheus/sbps-alerts.yml" "$stage/$name/contrib/prometheus/"
tar -czf "$topdir/SOURCES/$name.tar.gz" -C "$stage" "$name"
cp "$here/sbps.spec" "$topdir/SPECS/"

rpmbuild -bb --quiet --clean \
    --define "_topdir $topdir" \
    --define "sbps_version $version" \
    --define "sbps_release $release" \
    --define "python3_bin $pybin" \
    "$topdir/SPECS/sbps.spec" >&2
rm -rf "$stage"
find "$topdir/RPMS" -name "$name-$release.*.rpm" -print
