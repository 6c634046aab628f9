"""Compile on against off at the protocol sizes: ``mtrl.bench.compile_rates`` alone, with more
rounds than ``mtrl bench --quick`` (6 rounds of 5 timed updates per balancer and mode).

    python scripts/bench_compile.py [key=value ...]     # e.g. device=cpu sac.multi_head=true

Prints one line per balancer and the figures as JSON (the ``compile`` key of ``mtrl bench``).
Set TORCHINDUCTOR_CACHE_DIR to an empty folder for a first run's compile times."""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mtrl.bench import COMPILED, BenchPlan, bench_trainer, compile_rates
from mtrl.config import Config, apply_overrides, parse_override_args, validate

cfg = apply_overrides(Config(), parse_override_args(sys.argv[1:]))
validate(cfg)
trainer = bench_trainer(cfg, "sync", Path(tempfile.mkdtemp(prefix="mtrl-bench-compile-")))
trainer.cfg.updates_per_vector_step = 0
obs, done = trainer.envs.reset()[0], np.zeros(trainer.num_tasks, dtype=bool)
for _ in range(60):  # replay data from the policy, no updates
    obs, _, terminated, truncated, _ = trainer.vector_step(obs, done)
    done = terminated | truncated
plan = BenchPlan(vector_steps=0, train_steps=0, warmup_updates=3, rounds=6, updates=5, grad_repeats=0, eval_episodes=1)
figures = compile_rates(trainer, list(COMPILED), plan, lambda line: print(line, flush=True))
trainer.close()
print(json.dumps(figures, indent=2))
