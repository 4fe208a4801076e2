#!/bin/sh
# Refuses to install modules into a MaxScale of another release than the one they were built
# for (MaxScale's own loader would only log "version mismatch" after a restart).
#   check_install.sh LIBDIR BUILT_VERSION [MAXSCALE_BIN]
# The installed release is read from LIBDIR's libmaxscale-common.so (the library the modules
# link against at run time), else from `MAXSCALE_BIN --version`.
set -eu
libdir=$1 built=$2 bin=${3:-}

version_of_lib() {
    # The release is compiled into the library as a string of its own, e.g. "24.02.3".
    tr -c '[:print:]' '\n' < "$1" | grep -xE '[0-9]{2}\.[0-9]{2}\.[0-9]{1,3}' | sort | uniq -c | sort -rn |
        awk 'NR == 1 { print $2 }'
}

[ -n "$built" ] || { echo "error: the modules were not built for MaxScale (no modules-maxscale-version): build with MAXSCALE_SRC set" >&2; exit 1; }
[ -d "$libdir" ] || { echo "error: $libdir is not a directory (set MAXSCALE_LIBDIR to MaxScale's module directory)" >&2; exit 1; }
installed= from=
for lib in "$libdir"/libmaxscale-common.so "$libdir"/libmaxscale-common.so.*; do
    if [ -f "$lib" ]; then installed=$(version_of_lib "$lib"); from=$lib; break; fi
done
if [ -z "$installed" ] && [ -n "$bin" ]; then
    installed=$("$bin" --version 2>/dev/null | sed -n 's/^MaxScale \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    from="$bin --version"
fi
if [ -z "$installed" ]; then
    echo "error: cannot tell which MaxScale $libdir belongs to: no libmaxscale-common.so there${bin:+, and $bin --version names no release}" >&2
    exit 1
fi
if [ "$installed" != "$built" ]; then
    echo "error: the modules were built for MaxScale $built, but $libdir belongs to MaxScale $installed ($from)." >&2
    echo "MaxScale loads only modules built against its own release: build against the source tag maxscale-$installed" >&2
    echo "  (git clone --depth 1 --branch maxscale-$installed https://github.com/mariadb-corporation/MaxScale, then make install MAXSCALE_SRC=<that tree>)." >&2
    exit 1
fi
echo "MaxScale $installed in $libdir: matches the modules"
