#!/usr/bin/env bash
# The balancers' K x K solver tests under each OpenBLAS kernel family this CPU can run, with 1
# and 2 BLAS threads: the certificates' tolerances come from rounding-error bounds that hold
# whatever the kernel (mtrl/balancers/simplex_solvers.py), and these runs check that they do. Each run
# first prints the kernel numpy's and scipy's OpenBLAS actually use (OPENBLAS_CORETYPE forces it;
# in OpenBLAS's builds for x86_64, Zen runs the Haswell kernels). .ci/run calls this.
#
#   scripts/test_solver_kernels.sh [pytest args ...]
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
cores=()
[[ " $flags " == *" avx2 "* ]] && cores+=(Haswell Zen)
[[ " $flags " == *" avx512f "* ]] && cores+=(SkylakeX)
if [[ ${#cores[@]} -eq 0 ]]; then
    echo "test_solver_kernels.sh: this CPU has neither AVX2 nor AVX-512; running with its default kernels only"
    cores=(default)
fi
files=(tests/balancers/test_solver_exactness.py tests/balancers/test_against_independent_solvers.py)
status=0
for core in "${cores[@]}"; do
    for threads in 1 2; do
        env_core=()
        [[ $core != default ]] && env_core=(OPENBLAS_CORETYPE="$core")
        kernels=$(env "${env_core[@]}" OPENBLAS_NUM_THREADS="$threads" "$py" -c '
import numpy, scipy.linalg.lapack  # noqa: F401  (load both OpenBLAS copies)
from threadpoolctl import threadpool_info
found = {(i.get("architecture"), i["num_threads"]) for i in threadpool_info() if i["internal_api"] == "openblas"}
print(", ".join(f"{arch} kernels x{n}" for arch, n in sorted(found)))')
        echo "== OPENBLAS_CORETYPE=$core, $threads thread(s): OpenBLAS runs $kernels"
        env "${env_core[@]}" OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
            "$py" -m pytest -q -p no:cacheprovider "${files[@]}" "$@" | grep -E "^(FAILED|ERROR)| passed| failed" || status=1
    done
done
exit $status
