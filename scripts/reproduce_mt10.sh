#!/usr/bin/env bash
# The MT10 table a researcher with one GPU box would run: MTSAC and MTMHSAC (configs/mt10.yaml,
# configs/mt10_mh.yaml, the Meta-World+ protocol and reference settings), each with EW and the
# four required balancers (imgrad, cagrad, nash_mtl, db_mtl), 5 seeds each: 50 runs of 20M
# transitions. Then one report over both grids.
#
#   scripts/reproduce_mt10.sh [--out DIR] [--jobs N] [--seeds N] [--address HOST:PORT] [--dry-run]
#
# Before training it prints how long `mtrl bench --quick` projects the grid to take on this
# machine (one bench per preset, cached as DIR/bench_<preset>.json; delete those to re-measure).
# --dry-run prints the grid and the projection and stops. Re-running resumes: `mtrl compare`
# skips finished runs and resumes interrupted ones. --address runs the grid on a Ray cluster
# (`mtrl compare --backend ray --address ...`); without it the runs are local processes.
# MTRL_BENCH_OVERRIDES (key=value ...) is passed to the bench only: the tests use it to bench a
# tiny network on a cheap task set; the projection is then for that, not for MT10.
# The mtrl commands run this checkout's code, as ${PYTHON:-python} -m mtrl.cli.
set -euo pipefail
cd "$(dirname "$0")/.."
# python -m imports from the working directory first: the `mtrl` on PATH may be another checkout's
mtrl() { "${PYTHON:-python}" -m mtrl.cli "$@"; }

out=runs/reproduce_mt10 jobs=1 seeds=5 address="" dry_run=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --address) address="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '/^set -euo/q; 2,$ s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "reproduce_mt10.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ && "$seeds" =~ ^[1-9][0-9]*$ ]] || { echo "reproduce_mt10.sh: --jobs and --seeds take positive integers" >&2; exit 2; }

balancers=ew,imgrad,cagrad,nash_mtl,db_mtl
presets=(mt10 mt10_mh)  # MTSAC, MTMHSAC
backend=(--backend local)
[[ -n "$address" ]] && backend=(--backend ray --address "$address")
mkdir -p "$out"

echo "grid: ${#presets[@]} presets x 5 balancers x $seeds seeds = $(( ${#presets[@]} * 5 * seeds )) runs, into $out/"
for preset in "${presets[@]}"; do
    for b in ${balancers//,/ }; do
        echo "  configs/$preset.yaml  $b  seeds 1..$seeds  -> $out/$preset/$b/seed<s>/"
    done
done

for preset in "${presets[@]}"; do
    json="$out/bench_$preset.json"
    if [[ ! -f "$json" ]]; then
        echo "benchmarking configs/$preset.yaml (mtrl bench --quick, a few minutes) ..."
        # shellcheck disable=SC2086  # the overrides are words on purpose
        mtrl bench --quick --config "configs/$preset.yaml" --balancers "$balancers" --json "$json" \
            ${MTRL_BENCH_OVERRIDES:-} > "$out/bench_$preset.txt" 2>&1 \
            || { echo "mtrl bench failed; see $out/bench_$preset.txt" >&2; exit 1; }
    fi
done

"${PYTHON:-python}" - "$out" "$seeds" "$jobs" "$balancers" "${presets[@]}" <<'PY'
import json, sys
from pathlib import Path
out, seeds, jobs, balancers, presets = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5:]
total = left = 0.0
print(f"projected by mtrl bench on this machine (hours per run; collection + updates, evaluation not included):")
for preset in presets:
    f = json.loads((out / f"bench_{preset}.json").read_text())
    hours = f["projected_full_run_hours"]
    print(f"  {preset} ({f['device']}, {f['taskset']}, hidden {f['hidden_sizes']}, batch {f['batch_size']}): "
          + ", ".join(f"{b} {hours[b]:.1f}" for b in balancers))
    for b in balancers:
        done = sum((out / preset / b / f"seed{s}" / "summary.json").is_file() for s in range(1, seeds + 1))
        total += hours[b] * seeds
        left += hours[b] * (seeds - done)
print(f"projected: {total:.1f} h for the whole grid one run at a time, {left:.1f} h for the runs not finished yet; "
      f"--jobs {jobs} divides that by at most {jobs} (runs then share the device)")
PY

[[ $dry_run == 1 ]] && { echo "dry run: nothing trained"; exit 0; }

status=0
for preset in "${presets[@]}"; do
    mtrl compare --config "configs/$preset.yaml" --balancers "$balancers" --seeds "$seeds" --jobs "$jobs" \
        "${backend[@]}" --out "$out/$preset" || status=$?
done
mtrl report "$out/mt10" "$out/mt10_mh" --out "$out/report"
exit $status
