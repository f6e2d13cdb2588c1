#!/usr/bin/env bash
# The GPU check, run once on a machine with an NVIDIA GPU (the `device` tool): the CUDA
# tests, then `bench --device cuda` (stock coqui-tts vs ours, full-size random weights).
# Results land in $OUT (or ./gpu-results): pytest output, bench JSON, table and plot.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export XTTS_DESKTOP_CACHE_DIR="${XTTS_DESKTOP_CACHE_DIR:-$HOME/.cache/xtts-desktop-tests}"
export TRANSFORMERS_VERBOSITY=error
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" >> "$OUT/gpu.txt" 2>&1
QT_QPA_PLATFORM=offscreen $PY -m pytest -q -m cuda -p no:cacheprovider tests/engine > "$OUT/cuda-tests.txt" 2>&1
echo "cuda tests exit $?" >> "$OUT/cuda-tests.txt"
$PY -m xtts_desktop bench --random-weights full --device cuda --precision auto --runs 5 \
    --json --curves --plot "$OUT/bench-cuda.png" > "$OUT/bench-cuda.json" 2> "$OUT/bench-cuda.err"
echo "bench exit $?" >> "$OUT/bench-cuda.err"
$PY -m xtts_desktop bench --random-weights full --device cuda --precision fp32 --runs 3 \
    --json > "$OUT/bench-cuda-fp32.json" 2> "$OUT/bench-cuda-fp32.err"
echo "bench fp32 exit $?" >> "$OUT/bench-cuda-fp32.err"
XTTS_DESKTOP_CUDA_GRAPHS=0 $PY -m xtts_desktop bench --random-weights full --device cuda --precision auto \
    --runs 3 --json > "$OUT/bench-cuda-nographs.json" 2> "$OUT/bench-cuda-nographs.err"
echo "bench no-graphs exit $?" >> "$OUT/bench-cuda-nographs.err"
tail -n 3 "$OUT"/*.txt "$OUT"/*.err
