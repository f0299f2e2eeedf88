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
# The device has torch, triton, typer, rich, pyarrow, numpy, safetensors and pytest-xdist but no network
# and no zstandard, which the CLI imports. Prepare once, here: `echo /.whl/ >> .git/info/exclude;
# python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
# --platform manylinux_2_17_x86_64 -d .whl zstandard==0.25.0`; then, in the device call (carry .whl;
# its output folder is "$OUT"):
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   python3 -m pip install -q --no-deps --no-build-isolation -e . && bash bench/gpu_session.sh "$OUT" quick
#
# (titans_cli.kernels lives in kernels/ through the package-dir mapping, so the tree alone does not import.)
# Each step has its own time limit (on reaching it, SIGINT, so pytest still prints its summary) and writes
# OUTDIR/<step>.txt as it goes, so a step that runs long costs only itself. The peer runs under
# PEER_PYTHON (default python3), which must import titans_pytorch 0.5.5 and its dependencies
# (bench/peer_env.sh makes such an environment where pip reaches PyPI; elsewhere, carry them as wheels).
set -u
export PYTHONUNBUFFERED=1
usage="usage: gpu_session.sh OUTDIR quick|correctness|bundled torch|bundled triton|bundled layers|speed"
out=${1:?$usage}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: one step runs from bench/
PEER_PYTHON=${PEER_PYTHON:-python3}

step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name, limit ${limit}s, $(date -u +%T) UTC"
    timeout -s INT -k 20 "$limit" "$@" >"$out/$name.txt" 2>&1
    echo "   exit $?"
    tail -n 20 "$out/$name.txt" | cut -c1-300
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, triton, zstandard, titans_cli.kernels, titans_cli.score_command
print('torch', torch.__version__, 'triton', triton.__version__)" ||
    { echo "install the project and zstandard first (see the top of this script)" >&2; exit 2; }
case ${2:-} in
quick)
    # Float32 only, so about four 3-minute compiles (d=128 depth 2, d=64 depth 3) run side by side; the
    # bundled-memory tests compile the variant the CLI's 4,096-token calls use, so bundled_triton finds it.
    step gpu_tests_quick 240 python3 -m pytest -q -rA -p no:cacheprovider -n 16 -m "slow or not slow" \
        tests/test_kernel_triton.py -k "bundled or unverified or clipped or (-8- and not dtype1 and not dtype2) or (smoke and dtype0)"
    for kernel in torch triton; do
        step "bundled_$kernel" 140 env TITANS_KERNEL="$kernel" python3 bench/bundled_cli.py --repeats 1 \
            --text-kb 32 --threads 16
    done
    ;;
correctness)
    step kernel_errors 250 python3 bench/kernel_errors.py --jobs 14
    step gpu_tests 320 python3 -m pytest -q -rA -p no:cacheprovider -n 16 -m "slow or not slow" \
        tests/test_kernel_triton.py tests/test_graphed_stream.py
    ;;
bundled)
    kernel=${3:-}
    case $kernel in
    torch | triton) ;;
    layers)
        for model in dna-tiny text-tiny; do
            step "bundled_layers_$model" 270 python3 bench/kernels.py --device cuda --bundled "$model" \
                --tokens 32768 --batch 1 64 --levels recurrence layer --repeats 2
        done
        exit 0
        ;;
    *)
        echo "$usage" >&2
        exit 2
        ;;
    esac
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
    echo "$usage" >&2
    exit 2
    ;;
esac
