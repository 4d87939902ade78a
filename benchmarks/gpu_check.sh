#!/usr/bin/env bash
# The GPU check: on a machine with one NVIDIA GPU, in about 8 minutes, everything brainvq
# claims for GPUs, into one log (default gpu_check.log, or $GPU_CHECK_LOG):
#   1. install (a venv that reuses the machine's torch when it has a CUDA build; wheels in
#      .whl/ are installed offline first, for machines that cannot reach a package index),
#   2. the test suite, CUDA-only tests included,
#   3. bench_vqvae and bench_sample on cuda (bf16-mixed, channels_last),
#   4. a short configs/oasis.yaml VQ-VAE run on OASIS ($OASIS_DIR, else ../shared/oasis,
#      shared/oasis or .oasis), which prints its validate SSIM and images/s.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root; no arguments)
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${GPU_CHECK_LOG:-gpu_check.log}
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
step() { echo; echo "=== [$(($(date +%s) - START)) s] $*"; }
status=0

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || { echo "no NVIDIA GPU: nothing to check"; exit 2; }
PY=python3
for candidate in python3 /opt/torch/.venv/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PY=$candidate; break
  fi
done
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" || status=1

step "install"
VENV=${GPU_CHECK_VENV:-/tmp/brainvq-gpu-venv}
"$PY" -m venv --system-site-packages "$VENV" && VPY=$VENV/bin/python || exit 2
if compgen -G ".whl/*.whl" >/dev/null; then
  "$VPY" -m pip install -q --no-index --no-deps .whl/*.whl || status=1
fi
# The machine's torch satisfies torch>=2.2; --no-build-isolation keeps pip off the network.
"$VPY" -m pip install -q --no-build-isolation -e ".[dev]" 2>&1 | tail -3 \
  || "$VPY" -m pip install -q --no-build-isolation --no-deps -e . || status=1
"$VPY" -c "import brainvq, torch; from brainvq.hardware import machine; print(machine().describe())" || exit 2

step "test suite (CUDA tests included)"
XDIST=""
"$VPY" -c "import xdist" 2>/dev/null && XDIST="-n 8"  # pytest-xdist, where the machine has it
timeout 300 "$VPY" -m pytest -q -p no:cacheprovider $XDIST tests || status=1

step "bench_vqvae on cuda (bf16-mixed, channels_last)"
timeout 90 "$VPY" benchmarks/bench_vqvae.py --device cuda --precision bf16-mixed \
  --memory-format channels_last --batch-size 64 || status=1

step "bench_sample on cuda"
timeout 90 "$VPY" benchmarks/bench_sample.py --device cuda --n-levels 32 || status=1

step "configs/oasis.yaml, a short VQ-VAE run"
OASIS=${OASIS_DIR:-}
for candidate in ../shared/oasis shared/oasis .oasis; do
  [ -z "$OASIS" ] && [ -d "$candidate" ] && OASIS=$candidate
done
if [ -n "$OASIS" ]; then
  RUN=$(mktemp -d /tmp/brainvq-gpu-run.XXXXXX)
  timeout 200 "$VENV/bin/brainvq" train vqvae --data "$OASIS" --config configs/oasis.yaml \
    --out "$RUN" --max-minutes 2 --epochs 60 || status=1
  "$VPY" - "$RUN" <<'EOF' || status=1
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["vqvae"]
meta = json.loads((run / "vqvae" / "VQVAE_Model" / "config.json").read_text(encoding="utf-8"))["meta"]
print(f"oasis.yaml, 2 minutes: {meta['epochs_trained']} epochs, {meta['train_items_per_s']:.0f} "
      f"training images/s, {m['split']} SSIM {m['ssim']:.4f}, PSNR {m['psnr']:.2f} dB, "
      f"codes used {m['codes_used']}, precision {meta['precision']}")
EOF
else
  echo "no OASIS data found (set OASIS_DIR): skipped"
fi

step "done, status $status, log $LOG"
exit $status
