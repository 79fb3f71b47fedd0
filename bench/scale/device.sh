#!/usr/bin/env bash
# bench/scale on the lent GPU machine's 16 CPU cores (issue 19's Shown-by), in two calls of
# one lease, because the two site folders together exceed the 64 MiB a call may carry:
#   call 1, carry .device/site.tar.xz:       bash bench/scale/device.sh local  [runs...]
#   call 2, carry .device/scale-site.tar.xz: bash bench/scale/device.sh ray    [runs...]
# A run is <executor>-w<workers>[-warm][-<repeat>], e.g. local-w8, ray-w8-warm, ray-w8-warm-2.
# The 5M corpus is written once to /tmp/b5 (call 1) and must survive until call 2.
set -euo pipefail
phase=$1; shift
out=${OUT:-/tmp/out}/r
mkdir -p "$out"
unset PYTHONDONTWRITEBYTECODE
export PYTHONUNBUFFERED=1 RAY_raylet_start_wait_time_s=120
if [ "$phase" = local ]; then
    mkdir -p /root && tar -xJf .device/site.tar.xz -C /root
else
    test -d /root/gpusite || { echo "/root/gpusite missing: call 1 ran on another machine" >&2; exit 3; }
    mkdir -p /root/scalesite && tar -xJf .device/scale-site.tar.xz -C /root/scalesite
fi
export PYTHONPATH=/root/gpusite:/root/scalesite/site:$PWD
nproc; python3 -c 'import polars, sys; print(sys.version.split()[0], "polars", polars.__version__)'
test -d /tmp/b5/corpus || timeout 120 python3 bench/scale/run.py --chunks 5000000 --corpus-only --out /tmp/b5
for run in "$@"; do
    executor=${run%%-*}; rest=${run#*-w}; workers=${rest%%-*}
    flags=(); case $run in *-warm*) flags+=(--warm-cluster);; esac
    echo "== $run $(date -u +%H:%M:%S)"
    timeout 330 python3 bench/scale/run.py --chunks 5000000 --workers "$workers" --executor "$executor" \
        --stages-only "${flags[@]}" --out /tmp/b5 --results "$out/5M-$run.json" 2>&1 | tail -4 \
        || echo "$run failed: $?"
done
