#!/usr/bin/env bash
# The GPU check, run once on a machine with an NVIDIA GPU: the CUDA tests, then
# `bench --device cuda` (stock coqui-tts vs ours, full-size random weights) in three settings.
# Results land in $OUT (or ./gpu-results): pytest output, bench JSON, table and plot.
#
# With the project's venv (.venv) it runs as is. On a machine whose python3 already holds
# torch but not coqui-tts (the lent GPU machines here), carry the missing packages as wheels
# in .whl/ (scripts/gpu_wheels.sh downloads them): they are installed into /tmp/site first.
# SKIP_TESTS=1 and SKIP_FP32=1 leave those steps out. Each step has its own time limit, so the whole check ends in about 9 minutes at most.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export XTTS_DESKTOP_CACHE_DIR="${XTTS_DESKTOP_CACHE_DIR:-$HOME/.cache/xtts-desktop-tests}"
export XTTS_DESKTOP_TEST_CACHE="$XTTS_DESKTOP_CACHE_DIR"
export TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    PY=python3
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl >> "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
    fi
    export PYTHONPATH="/tmp/site:$PWD"
fi
start=$SECONDS
stamp() { echo "[$((SECONDS - start)) s] $*" | tee -a "$OUT/log.txt"; }

stamp "machine"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import sys, torch, transformers, TTS; print(sys.version.split()[0], 'torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), 'transformers', transformers.__version__, 'coqui-tts', TTS.__version__)"
    nproc
} 2>&1 | tee -a "$OUT/log.txt"
$PY -c "import TTS, xtts_desktop.bench" || { stamp "cannot import coqui-tts and the app"; exit 1; }

if [ -z "${SKIP_TESTS:-}" ]; then
stamp "CUDA tests"
timeout 150 $PY -m pytest -q -rs -s -m cuda -p no:cacheprovider \
    tests/engine/test_cuda.py tests/engine/test_stream.py \
    > "$OUT/cuda-tests.txt" 2>&1
echo "cuda tests exit $?" >> "$OUT/cuda-tests.txt"
tail -n 15 "$OUT/cuda-tests.txt"
fi

stamp "bench auto (fp16 GPT, CUDA graphs)"
timeout 220 $PY -m xtts_desktop bench --random-weights full --device cuda --precision auto \
    --runs 5 --json --curves --plot "$OUT/bench-cuda.png" \
    > "$OUT/bench-cuda.json" 2>> "$OUT/log.txt"
stamp "bench exit $?"

if [ -z "${SKIP_FP32:-}" ]; then
stamp "bench fp32"
timeout 100 $PY -m xtts_desktop bench --random-weights full --device cuda --precision fp32 \
    --runs 2 --json --quiet > "$OUT/bench-cuda-fp32.json" 2>> "$OUT/log.txt"
stamp "bench fp32 exit $?"
fi

stamp "bench auto without CUDA graphs"
XTTS_DESKTOP_CUDA_GRAPHS=0 timeout 90 $PY -m xtts_desktop bench --random-weights full \
    --device cuda --precision auto --runs 3 --json --quiet \
    > "$OUT/bench-cuda-nographs.json" 2>> "$OUT/log.txt"
stamp "bench no-graphs exit $?"
stamp "done"
