#!/usr/bin/env bash
# The GPU benchmark, one prepared script for a machine with an NVIDIA GPU:
#   ./scripts/bench_gpu.sh [OUT_DIR]
# 1. sets up .venv-gpu with vidcam and TensorFlow's CUDA wheels (pip install -e ".[gpu]"), unless it is there;
# 2. checks that TensorFlow sees the GPU (stops with one line if not: the numbers would be the CPU's);
# 3. runs scripts/bench.py at 720p and at 1080p, batch 32, without the book's way (minutes at batch 1), and
#    prints frames/s of the engine alone and of `vidcam video` end to end, with the stage that bounds the rate.
# Targets on a data-centre GPU: engine >= 1,000 frames/s at batch 32; end to end >= 300 frames/s at 720p, then
# bound by decoding or encoding (which run on the CPU: the table says which).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-gpu}"
mkdir -p "$OUT"
VENV="${VIDCAM_GPU_VENV:-.venv-gpu}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[gpu]"
fi
PY="$VENV/bin/python"
export TF_CPP_MIN_LOG_LEVEL=2
if ! "$PY" - <<'EOF'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("bench_gpu: TensorFlow sees no GPU (check nvidia-smi and the CUDA wheels of tensorflow[and-cuda])")
print(f"TensorFlow {tf.__version__} sees {len(gpus)} GPU: {', '.join(g.name for g in gpus)}")
EOF
then
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
for size in 1280x720 1920x1080; do
  echo "== $size =="
  "$PY" scripts/bench.py --batch 32 --size "$size" --skip-book --json "$OUT/bench-$size.json" | tee "$OUT/bench-$size.txt"
done
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
print()
print(f"{'size':<10} {'engine alone':>14} {'end to end':>12} {'whole command':>14}  slowest stage alone")
for size in ("1280x720", "1920x1080"):
    r = json.loads(Path(sys.argv[1], f"bench-{size}.json").read_text())
    print(f"{size:<10} {r['stages']['engine']:>10.0f} f/s {r['vidcam_fps']:>8.0f} f/s {r['vidcam_command_fps']:>10.0f} f/s"
          f"  {min(r['stages'], key=r['stages'].get)} ({min(r['stages'].values()):.0f} f/s)")
EOF
