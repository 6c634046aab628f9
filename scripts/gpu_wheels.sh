#!/usr/bin/env bash
# Downloads, on a machine with PyPI, the wheels that scripts/gpu_check.sh installs on a GPU
# machine that has torch, tensorboard and pytest but no network and no Meta-World: metaworld,
# mujoco, gymnasium and their requirements that such an image lacks. They go to .whl/ (ignored
# by git through .git/info/exclude), for Python 3.12 on x86-64 Linux unless told otherwise.
#
#   scripts/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-3.12}"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# versions as pyproject.toml pins them (metaworld, mujoco) or as this machine resolved them
gym="$(python3 -c 'import gymnasium; print(gymnasium.__version__)' 2>/dev/null || echo 1.2.0)"
for pkg in metaworld==3.1.1 mujoco==3.3.0 "gymnasium==$gym" farama-notifications glfw pyopengl; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$pkg"
done
ls -1 .whl
