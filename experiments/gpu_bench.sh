#!/bin/bash
# Every GPU timing of issue #18 in one command of under 10 minutes, for a short loan of one
# GPU (e.g. the device tool's H100/H200): the paper preset's bench in bfloat16 at batch 64
# (stages, modules, latency, the projected wall time of a full JTSO paper run) and 128
# (stages), then the 2D and 3D convolutions' per-layer and per-part times.
#
#   bash experiments/gpu_bench.sh [OUT_DIR]          # default $OUT, else /tmp/gpu_bench
#
# Run from the repository root. Packages the GPU's image lacks travel as py3.12 wheels in
# .whl/ (git-ignored), made here with `bash experiments/gpu_bench.sh --wheels`; they are
# installed into /tmp/site first. Each step has its own time limit (`timeout`), so one slow
# compile costs its step, not the rest; each step's output is a file in OUT_DIR.
set -u -o pipefail
if [ "${1:-}" = "--wheels" ]; then
  # refine3d_jax's dependencies that the device image (KINDS.md) does not hold.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    ml-collections==1.1.0 tensorflow-datasets==4.9.10 array-record==0.8.6 grain==0.2.18 \
    importlib_resources==7.1.0 tensorboardX==2.6.5 trimesh==5.2.0 dm-tree immutabledict \
    simple_parsing docstring-parser tensorflow-metadata googleapis-common-protos termcolor \
    toml portpicker || exit 1
  python3 -m pip wheel -q --no-deps -w .whl promise  # pure Python, published as source only
  exit
fi
out=${1:-${OUT:-/tmp/gpu_bench}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G '.whl/*.whl' > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
step() {  # step NAME SECONDS COMMAND...: COMMAND's output to OUT/NAME.txt, killed at SECONDS
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T), limit ${limit}s): $*"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "   rc=$? $(tail -c 300 "$out/$name.txt" | tr '\n' ' ')"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -c 'import jax; print(jax.__version__, jax.devices())' >> "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
bf16=(--config=configs/jtso.py:paper --config.model.dtype=bfloat16 --views=1,3 --json)
step bench_paper_bf16_b64 240 python3 -m refine3d_jax.bench "${bf16[@]}" --batch=64
step bench_paper_bf16_b128 150 python3 -m refine3d_jax.bench "${bf16[@]}" --batch=128 --train_only
step conv2d_paper_b64 60 python3 -m refine3d_jax.layer_bench conv2d paper 64
step conv3d_paper_bf16_b64_parts 90 python3 -m refine3d_jax.layer_bench conv3d paper 64 bfloat16 parts
echo "done $(date +%T)"
