#!/usr/bin/env bash
# The GPU check (issue 21): install without network on the machine's own CuPy, run the
# CPU/GPU parity tests, the GPU benchmark beside PyTorch, a short training run of the
# full U-Net at 572 on the GPU, the per-layer times with the Winograd engine forced and those
# of the 3-d EM net. Every step runs even when one before it fails; each writes
# its log into OUTDIR, and summary.txt holds one line per step: name, exit status, seconds.
#
# Usage:  bench/gpu_check.sh OUTDIR
# Environment: PYTHON (default python3), GPU (default 0; empty = a CPU dry run of the whole
# script), TRAIN_ITER (default 200), TORCH_UNET (folder of torch_unet.py, default
# ../shared/bench, else .carry/ in the checkout), BENCH_REPEATS (default 20). On a lent device
# machine ../shared does not travel: copy ../shared/bench/*.py into .carry/ (if git ignores
# that folder, name it in the run's carry), or the PyTorch columns stay empty.
set -uo pipefail
out=$(realpath -m "${1:?usage: bench/gpu_check.sh OUTDIR}")
mkdir -p "$out"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
GPU=${GPU-0}
gpu_flag=${GPU:+--gpu $GPU}
torch_unet=$(realpath -m ../shared/bench)
[ -f "$torch_unet/torch_unet.py" ] || torch_unet=$(realpath -m .carry)
export PYTHONUNBUFFERED=1 PYTHONPATH=${TORCH_UNET:-$torch_unet}
: >"$out/summary.txt"

step() {   # step NAME COMMAND...: run it, log to OUTDIR/NAME.log, record status and time
    local name=$1 start=$SECONDS rc
    shift
    echo "== $name: $*"
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    tail -n 25 "$out/$name.log"
}

environment() {
    date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi 2>&1 | head -15
    "$PYTHON" - <<'PY'
import platform, numpy, scipy
print("python", platform.python_version(), "numpy", numpy.__version__, "scipy", scipy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as err:
    print("cupy unavailable:", err)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except Exception as err:
    print("torch unavailable:", err)
PY
}

install() {   # no network: the project alone, on the packages already there
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . &&
        "$PYTHON" -c "import unetcore, cupy; print('unetcore from', unetcore.__file__)"
}

train() {     # the full 2015 U-Net at 572 on synthetic data, then segment and score its test slices
    local work iters=${TRAIN_ITER:-200}
    work=$(mktemp -d)
    "$PYTHON" -m unetcore synth -o "$work/data" --size 512 &&
        sed "s#\"data/#\"$work/data/#" prototxt/unet-train.prototxt >"$work/net.prototxt" &&
        "$PYTHON" -m unetcore train "$work/net.prototxt" $gpu_flag --max-iter "$iters" \
            --base-lr 0.001 --momentum 0.99 --weight-decay 0.0005 --display 20 --random-seed 0 \
            --snapshot-prefix "$work/unet" --log "$work/train.log" &&
        "$PYTHON" -m unetcore test "$work/data/test-volume.tif" "$work/data/test-labels.tif" \
            --model prototxt/unet-deploy.prototxt --weights "$work/unet_iter_$iters.caffemodel.h5" \
            $gpu_flag &&
        "$PYTHON" -m unetcore time prototxt/unet-train-inputs.prototxt $gpu_flag --iterations 5
}

step environment environment
step install install
step pytest "$PYTHON" -m pytest -q -rs --durations=8 tests/gpu/test_gpu.py tests/gpu/test_gpu_parity.py
step bench "$PYTHON" bench/gpu.py ${GPU:+--gpu $GPU} --repeats "${BENCH_REPEATS:-20}" \
    --json "$out/bench.json"
step train train
# the Winograd engine forced on every 3x3 layer ("auto" picks it on the CPU only): its time
# per layer on this device, beside the train step's in train.log
step winograd "$PYTHON" -m unetcore time prototxt/unet-train-inputs.prototxt $gpu_flag \
    --iterations 5 --engine winograd
# the 3-d EM net (snemi_v6's shape, 44 x 268 x 268): per-layer times on this device, the
# N-d layers' strided CuPy paths beside the 2-d kernels' (issue 20)
step unet3d "$PYTHON" -m unetcore time prototxt/unet3d-em-deploy.prototxt $gpu_flag \
    --iterations 3
cat "$out/summary.txt"
