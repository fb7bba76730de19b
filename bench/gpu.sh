#!/usr/bin/env bash
# The accelerator rows of Tbl. 3: JAX and PyTorch on the GPU.
#
#   bench/gpu.sh STAGE OUTDIR
#
# Runs from the source checkout without installing it (PYTHONPATH=python), under whatever
# CUDA builds of jax and torch the machine's python3 has (PYTHON=... to pick another), so it
# works on a machine that cannot reach a package index.  Native backends are not built: the
# GPU rows need none.  Stages, each a separate `adjointbench bench` run (its own JSON in OUTDIR):
#   full     jax and torch on gpu, float64 and float32, full timing policy
#   nojit    JAX without JIT on the GPU, quick policy, float64 (seconds per call: the
#            workload is timed over its first iterations and scaled, as the table says)
#   compile  torch-compile (Inductor) on gpu, float64, quick policy (opt-in backend)
#   scale    the scaling study on gpu for jax, enzyme-jax and torch, with the accelerator cases
#            (N up to 4e7, B up to 1e6; caps skip what does not fit), then jax-sharded's shard axis
#            over every visible GPU (one row per device count the machine has)
#   info     the card, the driver, the versions and what adjointbench sees
set -u
stage=${1:?usage: bench/gpu.sh full|nojit|compile|scale|info OUTDIR}
out=${2:?usage: bench/gpu.sh full|nojit|compile|scale|info OUTDIR}
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX and torch share the card inside one process: don't let XLA take 75% of it up front
export XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
ab() { "$py" -m adjointbench "$@"; }
case $stage in
  info)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$py" -c 'import sys, jax, torch; print(sys.version.split()[0], "jax", jax.__version__, jax.devices(), "torch", torch.__version__, torch.cuda.is_available())'
    ab backends ;;
  full) ab bench --backend jax --backend torch --device gpu --out "$out" ;;
  nojit) ab bench --quick --backend jax-nojit --device gpu --out "$out" ;;
  compile) ADJOINTBENCH_TORCH_COMPILE=1 ab bench --quick --backend torch-compile --device gpu --out "$out" ;;
  scale)
    ab bench --scale --large --backend jax --backend enzyme-jax --backend torch --device gpu --dtype float64 --out "$out"
    ab bench --scale --backend jax-sharded --device gpu -k shard-lorenz96 --out "$out" ;;
  *) echo "bench/gpu.sh: unknown stage $stage (full, nojit, compile, scale, info)" >&2; exit 2 ;;
esac
