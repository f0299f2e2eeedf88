#!/usr/bin/env bash
# What issue #5 needs a GPU for, in calls of under ten minutes each on an H200 (most needed first):
#
#   bash bench/gpu_session.sh OUTDIR quick         # one call, where device time is short: the GPU tests of
#                                                  # chunks of 8 and the bundled models, then both run
#                                                  # (no warm-up: a smoke check, not figures)
#   bash bench/gpu_session.sh OUTDIR correctness   # bench/kernel_errors.py, then the GPU tests
#   bash bench/gpu_session.sh OUTDIR bundled torch    # the bundled models' score and ingest, torch form
#   bash bench/gpu_session.sh OUTDIR bundled triton   # the same with the kernel forced
#   bash bench/gpu_session.sh OUTDIR bundled layers   # their memory layers alone, torch form against kernel
#   bash bench/gpu_session.sh OUTDIR speed         # bench/kernels.py (layer, model, peers), graphed stream
#
# The bundled models use chunks of 8, which the kernel has run only under the interpreter
# (UNVERIFIED_CHUNK_SIZES in kernels/memory_triton.py): `correctness` tests them, `bundled triton` times
# them forced with TITANS_KERNEL=triton, `bundled torch` the torch form the dispatcher picks until they are
# verified. Each first runs once untimed, so Triton's compiles (cached on disk) are not timed; CUDA-graph
# captures happen in every process, as they do for a user.
#
# Run from the repository root after `pip install -e .` (titans_cli.kernels lives in kernels/ through the
# package-dir mapping, so the tree alone does not import). Each step has its own time limit and writes
# OUTDIR/<step>.txt as it goes, so a step that runs long costs only itself. The tests need pytest-xdist;
# the peer runs under PEER_PYTHON (default python3), which must import titans_pytorch 0.5.5 and its
# dependencies (bench/peer_env.sh makes such an environment where pip reaches PyPI; on a machine without
# network, install them from wheels first).
set -u
out=${1:?usage: gpu_session.sh OUTDIR quick|correctness|bundled torch|triton|layers|speed}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: one step runs from bench/
PEER_PYTHON=${PEER_PYTHON:-python3}

step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name, limit ${limit}s, $(date -u +%T) UTC"
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    echo "   exit $?"
    tail -n 20 "$out/$name.txt" | cut -c1-300
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, triton, titans_cli.kernels; print('torch', torch.__version__, 'triton', triton.__version__)" ||
    { echo "install the project first: pip install -e ." >&2; exit 2; }
case ${2:-} in
quick)
    step gpu_tests_quick 300 python3 -m pytest -q -p no:cacheprovider -n 16 -m "slow or not slow" \
        tests/test_kernel_triton.py \
        -k "smoke or bundled or unverified or clipped or (every_supported_shape and -8-)"
    for kernel in torch triton; do
        step "bundled_$kernel" 130 env TITANS_KERNEL="$kernel" python3 bench/bundled_cli.py --repeats 1 \
            --text-kb 32 --threads 16
    done
    ;;
correctness)
    step kernel_errors 250 python3 bench/kernel_errors.py --jobs 14
    step gpu_tests 320 python3 -m pytest -q -p no:cacheprovider -n 16 -m "slow or not slow" tests/test_kernel_triton.py \
        tests/test_graphed_stream.py
    ;;
bundled)
    kernel=${3:?usage: gpu_session.sh OUTDIR bundled torch|triton|layers}
    if [ "$kernel" = layers ]; then
        for model in dna-tiny text-tiny; do
            step "bundled_layers_$model" 270 python3 bench/kernels.py --device cuda --bundled "$model" \
                --tokens 65536 --batch 1 64 --levels recurrence layer --repeats 2
        done
        exit 0
    fi
    step "bundled_${kernel}_warmup" 300 env TITANS_KERNEL="$kernel" python3 bench/bundled_cli.py --repeats 1 \
        --text-kb 16 --threads 16
    step "bundled_$kernel" 270 env TITANS_KERNEL="$kernel" python3 bench/bundled_cli.py --repeats 1 \
        --text-kb 256 --threads 16
    ;;
speed)
    step bench_layers 180 python3 bench/kernels.py --device cuda --tokens 1048576 --batch 1 64 \
        --levels recurrence layer --repeats 2 --no-peer
    step bench_model 270 python3 bench/kernels.py --device cuda --tokens 65536 \
        --batch 1 64 --levels model --repeats 2 --peer-python "$PEER_PYTHON" --peer-tokens 16384
    (cd bench && step graphed_stream 120 python3 graphed_stream.py --batch 1 64 --tokens 32768 --repeats 2)
    ;;
*)
    echo "usage: gpu_session.sh OUTDIR quick|correctness|bundled torch|triton|layers|speed" >&2
    exit 2
    ;;
esac
