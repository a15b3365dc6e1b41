#!/bin/sh
# The whole test suite, as CI runs it (.ci/run calls exactly this), on a
# fresh Debian 12 machine:
#   1. install what the build and the tests need (scripts/install-deps.sh),
#      build Debian's QEMU 7.2 tools with the vmio driver (scripts/qemu-build.sh)
#   2. build build/ with -Dwerror=true and run every meson test (the 'vm'
#      suite included: a Linux guest under QEMU TCG, tests/vm/README.md)
#   3. build build-asan/ with AddressSanitizer + UBSan, run unit + integration
#      (never the 'vm' suite, nor under valgrind)
#   4. run the unit suite under valgrind (meson test --setup valgrind)
#   5. a short fuzz run (scripts/fuzz.sh, FUZZ_SECONDS=20 per target)
#   6. list what was skipped and print a PASS/FAIL summary
# Exits non-zero if anything failed. Needs root for the package install and
# the network-namespace tests (CI runs as root); run it from anywhere.
#
# Environment: BUILD_DIR (default build), ASAN_DIR (default build-asan),
# FUZZ_DIR (default build-fuzz), SKIP_DEPS=1 to skip the package step,
# FUZZ_SECONDS (default 20), JOBS (default: number of CPUs).
set -u

cd "$(dirname "$0")/.." || exit 1
BUILD_DIR=${BUILD_DIR:-build}
ASAN_DIR=${ASAN_DIR:-build-asan}
FUZZ_DIR=${FUZZ_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
export FUZZ_SECONDS

steps_failed=0
steps_summary=
total_pass=0
total_fail=0
total_skip=0
skipped_list=$(mktemp)
failed_list=$(mktemp)
# One real Gfarm (PostgreSQL + gfmd + two gfsd, scripts/gfarm-local.sh) is
# shared by the gfarm tests of every step; each test works in a Gfarm
# directory of its own (tests that kill daemons start a private one).
VMIO_TEST_GFARM_BASE=${VMIO_TEST_GFARM_BASE:-${TMPDIR:-/tmp}/vmio-gfarm-ci-$$}
export VMIO_TEST_GFARM_BASE
trap 'rm -f "$skipped_list" "$failed_list"; GFARM_BASE=$VMIO_TEST_GFARM_BASE bash scripts/gfarm-local.sh stop purge >/dev/null 2>&1' EXIT

now() { date +%s; }
say() { printf '\n==== %s\n' "$*"; }

# step NAME CMD...: run one step, record PASS/FAIL and its duration.
step() {
    name=$1
    shift
    say "$name"
    t0=$(now)
    if "$@"; then
        res=PASS
    else
        res=FAIL
        steps_failed=$((steps_failed + 1))
    fi
    steps_summary="$steps_summary$(printf '%-5s %-34s %4ss' "$res" "$name" $(( $(now) - t0 )))
"
}

# collect BUILDDIR LABEL: count the results of the last meson test run in
# BUILDDIR (meson-logs/testlog*.json) and remember what was skipped.
collect() {
    log=$1/meson-logs/$3
    [ -f "$log" ] || return 0
    counts=$(python3 - "$log" "$2" "$skipped_list" "$failed_list" <<'PY'
import json, sys
log, label, skipped, failed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
p = f = s = 0
with open(log) as fh, open(skipped, "a") as out, open(failed, "a") as fout:
    for line in fh:
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        r = t.get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
            text = (t.get("stdout") or "") + (t.get("stderr") or "")
            why = [l for l in text.splitlines() if "skip" in l.lower()]
            out.write("%s: %s: %s\n" % (label, t.get("name", "?"),
                                        why[-1].strip() if why else "(no reason printed)"))
        else:
            f += 1
            text = (t.get("stdout") or "") + (t.get("stderr") or "")
            tail = text.splitlines()[-25:]
            fout.write("%s: %s: %s (%.0fs)\n" % (label, t.get("name", "?"), r,
                                              t.get("duration") or 0))
            fout.write("".join("    | %s\n" % l for l in tail))
print(p, f, s)
PY
)
    set -- $counts
    total_pass=$((total_pass + $1))
    total_fail=$((total_fail + $2))
    total_skip=$((total_skip + $3))
}

configure() { # DIR OPTIONS...
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null && return 0
        rm -rf "$dir"
    fi
    meson setup "$dir" "$@"
}

build_main() {
    configure "$BUILD_DIR" -Dwerror=true -Dtests=enabled -Dnbdkit=enabled -Dlibnbd=enabled \
        -Dgfarm=enabled &&
        ninja -C "$BUILD_DIR" -j "$JOBS"
}
test_main() {
    meson test -C "$BUILD_DIR" --print-errorlogs --num-processes "$JOBS"
    rc=$?
    collect "$BUILD_DIR" default testlog.json
    return $rc
}
build_asan() {
    # b_lundef=false: a sanitized shared library leaves the runtime's
    # symbols to the executable.
    configure "$ASAN_DIR" -Db_sanitize=address,undefined -Db_lundef=false \
        -Dtests=enabled -Dnbdkit=enabled -Dgfarm=enabled -Dman=disabled &&
        ninja -C "$ASAN_DIR" -j "$JOBS"
}
test_asan() {
    ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        meson test -C "$ASAN_DIR" --print-errorlogs --num-processes "$JOBS" \
        --suite unit --suite integration --no-suite vm --timeout-multiplier 3
    rc=$?
    collect "$ASAN_DIR" asan testlog.json
    return $rc
}
have_valgrind_setup() {
    grep -rqsE "add_test_setup\\(\\s*'valgrind'" --include=meson.build .
}
test_valgrind() {
    meson test -C "$BUILD_DIR" --setup valgrind --suite unit --no-suite vm --print-errorlogs \
        --num-processes "$JOBS"
    rc=$?
    collect "$BUILD_DIR" valgrind testlog-valgrind.json
    return $rc
}

run_fuzz() {
    env BUILD_DIR="$FUZZ_DIR" FUZZ_SECONDS="$FUZZ_SECONDS" bash scripts/fuzz.sh
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "fuzz: scripts/fuzz.sh skipped (prerequisite missing)" >>"$skipped_list"
        return 0
    fi
    return $rc
}

T0=$(now)
if [ "${SKIP_DEPS:-0}" != 1 ]; then
    step "install dependencies" sh scripts/install-deps.sh
fi
# Debian's QEMU 7.2 tools with the vmio block driver (tests/integration/
# qemu-driver.sh): 1-2 minutes from nothing, cached in build-qemu/ after.
step "QEMU 7.2 tools with the vmio driver (build-qemu/)" bash scripts/qemu-build.sh
step "build ($BUILD_DIR, -Dwerror=true)" build_main &&
    step "meson test (all suites)" test_main
step "build ($ASAN_DIR, ASan+UBSan)" build_asan &&
    step "meson test ASan+UBSan (unit, integration)" test_asan
if have_valgrind_setup && [ -f "$BUILD_DIR/build.ninja" ]; then
    step "meson test --setup valgrind (unit)" test_valgrind
else
    say "valgrind setup not defined: skipped"
    echo "valgrind: the 'valgrind' test setup is not defined" >>"$skipped_list"
fi
if [ -f scripts/fuzz.sh ]; then
    step "fuzz (${FUZZ_SECONDS}s per target)" run_fuzz
else
    say "scripts/fuzz.sh does not exist: skipped"
    echo "fuzz: scripts/fuzz.sh does not exist" >>"$skipped_list"
fi

say "FAILED"
if [ -s "$failed_list" ]; then
    cat "$failed_list"
else
    echo "(nothing)"
fi
say "SKIPPED"
if [ -s "$skipped_list" ]; then
    cat "$skipped_list"
else
    echo "(nothing)"
fi
say "SUMMARY ($(( $(now) - T0 ))s)"
printf '%s' "$steps_summary"
echo
status=0
if [ "$steps_failed" -ne 0 ] || [ "$total_fail" -ne 0 ]; then
    echo "RESULT: FAIL ($steps_failed step(s) failed)"
    status=1
else
    echo "RESULT: PASS"
fi
echo "tests: $total_pass passed, $total_fail failed, $total_skip skipped"
exit $status
