#!/bin/sh
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and
# runs each one for FUZZ_SECONDS (default 60) on a working copy of its
# seed corpus (tests/fuzz/corpus-work/, not committed). Crashes are saved
# under tests/fuzz/corpus-work/crashes-TARGET/ and make the script fail.
#
# usage: scripts/fuzz.sh [target...]      targets: the NAME of each
#        tests/fuzz/fuzz-NAME.c (default: every one the build has; some
#        exist only when their dependency was found, e.g. the gfarm ones)
# env:   FUZZ_SECONDS, FUZZ_JOBS (parallel fuzzing jobs, default 1),
#        BUILD_DIR (default build-fuzz)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
build=${BUILD_DIR:-build-fuzz}
targets=$*

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 77
fi

if [ ! -f "$build/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$build" -Dfuzzing=true \
        -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
fi
if [ $# -eq 0 ]; then
    # build.ninja may predate new targets: regenerate it first.
    ninja -C "$build" build.ninja >/dev/null
    targets=$(sed -n 's|^build tests/fuzz/fuzz-\([a-z0-9-]*\): .*|\1|p' "$build/build.ninja" |
        sort -u | tr '\n' ' ')
    if [ -z "$targets" ]; then
        echo "fuzz.sh: no fuzz targets in $build" >&2
        exit 1
    fi
fi
case "$build" in
    /*) bindir=$build/tests/fuzz ;;
    *) bindir=$top/$build/tests/fuzz ;;
esac
ninja -C "$build" -j2 $(for t in $targets; do printf 'tests/fuzz/fuzz-%s ' "$t"; done)

status=0
for t in $targets; do
    work=tests/fuzz/corpus-work/$t
    crashes=tests/fuzz/corpus-work/crashes-$t
    logs=tests/fuzz/corpus-work/logs-$t
    mkdir -p "$work" "$crashes" "$logs"
    echo "== fuzz-$t: ${seconds}s"
    # Halt on the first UBSan report too; keep going would hide it.
    # With -jobs, libFuzzer writes fuzz-N.log into the current directory:
    # run from an (ignored) log directory next to the working corpus.
    par=
    [ "$jobs" -gt 1 ] && par="-jobs=$jobs -workers=$jobs"
    # shellcheck disable=SC2086
    if ! (cd "$logs" &&
          UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
          ASAN_OPTIONS=detect_leaks=1 \
          "$bindir/fuzz-$t" -max_total_time="$seconds" $par \
              -max_len=70000 -timeout=10 -print_final_stats=1 \
              -artifact_prefix="$top/$crashes/" "$top/$work" "$top/tests/fuzz/corpus-$t"); then
        echo "fuzz.sh: fuzz-$t found a problem: see $crashes/" >&2
        status=1
    fi
done
exit "$status"
