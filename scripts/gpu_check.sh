#!/usr/bin/env bash
# The one command to run when a GPU is lent: CUDA tests (compile-vs-eager under CUDA graphs
# included), `mtrl bench` (EW and the four required balancers, sync and async envs, compile on
# and off) and a short MT10 training run with CAGrad on CUDA (compile=auto: CUDA graphs), all
# written into one folder. Under 8 minutes on an H200. How to run it: docs/benchmarks.md, "GPU check".
#
#   scripts/gpu_check.sh [OUT_DIR]     # default: $OUT (the device tool's folder), else gpu_check_out
#
# The GPU machine has torch, tensorboard and pytest but no Meta-World and no network: wheels
# made by scripts/gpu_wheels.sh in .whl/ are installed from there, if present.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl
mtrl() { python3 -m mtrl.cli "$@"; }
step() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/summary.txt"; }

step "device"
{ nvidia-smi; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } \
    >"$out/device.txt" 2>&1
tail -n 1 "$out/device.txt" | tee -a "$out/summary.txt"

step "CUDA tests (the cases that skip without CUDA, the compile ones too), 150 s at most"
timeout 150 python3 -m pytest -q -rs -p no:cacheprovider -m "not slow" -k "cuda" tests >"$out/tests.txt" 2>&1
echo "pytest exit $?; $(tail -n 1 "$out/tests.txt")" | tee -a "$out/summary.txt"

step "mtrl bench --quick (MT10 protocol sizes, compile on and off), 210 s at most"
timeout 210 python3 -m mtrl.cli bench --quick --balancers ew,imgrad,cagrad,nash_mtl,db_mtl --json "$out/bench.json" \
    device=cuda >"$out/bench.txt" 2>&1
echo "bench exit $?" | tee -a "$out/summary.txt"

step "MT10 training with cagrad on CUDA for 120 s, compiling first (SIGTERM then: checkpoint and exit 0)"
timeout -s TERM -k 20 120 python3 -m mtrl.cli train --config configs/mt10.yaml --balancer cagrad --run-dir "$out/run" \
    device=cuda warmup_env_steps=10000 eval_every=100000000 checkpoint_every=100000000 log_every=2000 >"$out/train.txt" 2>&1
echo "train exit $? (0: stopped by the signal after a checkpoint)" | tee -a "$out/summary.txt"
grep -o "compiled .* in [0-9.]* s" "$out/train.txt" | tee -a "$out/summary.txt"
grep -o "env/s=[0-9]*[^,]*upd/s=[0-9.]*" "$out/train.txt" | tail -n 1 | tee -a "$out/summary.txt"
rm -rf "$out/run"  # checkpoints hold the replay buffer; the figures are in train.txt
step "done: $out"
