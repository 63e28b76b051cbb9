#!/usr/bin/env bash
# The GPU check of the CUDA backend, as one script for a lent GPU machine
# (it must finish in under 8 minutes). It
#   1. runs every kernel against the CPU reference on random shapes
#      (|gpu - cpu| <= atol + rtol |cpu|, worst element printed),
#   2. trains a tiny network on both backends with the same seed and data
#      order and compares the first 20 losses,
#   3. times one training step of the dataset's default network (batch 256,
#      the README's Inception-like cell) and the same step in PyTorch with
#      cuDNN (TF32, channels-last), and prints both and their ratio,
# writing everything to $OUT (default ./gpu-check-out).
#
# On a machine with cargo it builds the check itself (`--features cuda`).
# GPU machines without a Rust toolchain get a prepared folder instead:
#   scripts/gpu-check.sh --prepare gpu-carry    # here: builds, strips, precompiles PTX
#   GPU_CARRY=gpu-carry scripts/gpu-check.sh    # there
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    dir=${2:?usage: scripts/gpu-check.sh --prepare DIR}
    mkdir -p "$dir"
    . .ci/env.sh
    bin=$(cargo bench --features cuda --bench gpu --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])' | tail -1)
    [ -x "$bin" ] || { echo "building the GPU check failed" >&2; exit 1; }
    strip -o "$dir/nasbench-gpu-check" "$bin"
    # PTX for sm_80 and sm_90, so the GPU machine needs no NVRTC.
    NASBENCH_CACHE="$dir" NASBENCH_REQUIRE_NVRTC=1 cargo test --features cuda --test integration kernels:: -q >/dev/null
    cp scripts/torch_step.py "$dir/"
    ls -la "$dir" "$dir/ptx"
    exit 0
fi

OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

if [ -n "${GPU_CARRY:-}" ]; then
    check="$GPU_CARRY/nasbench-gpu-check"
    export NASBENCH_CACHE="$GPU_CARRY"
    torch_script="$GPU_CARRY/torch_step.py"
else
    . .ci/env.sh
    cargo bench --features cuda --bench gpu --no-run -q || exit 1
    check="cargo bench --features cuda --bench gpu --"
    torch_script=scripts/torch_step.py
fi

status=0
timeout 360 $check batch=256 steps=20 2>&1 | tee "$OUT/gpu-check.txt" || status=1
timeout 120 python3 "$torch_script" --batch 256 --steps 20 2>&1 | tee "$OUT/torch.txt" || status=1

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import re, sys
out = sys.argv[1]
def ips(path, prefix):
    for line in open(path, errors="replace"):
        if line.startswith(prefix):
            m = re.search(r"([0-9.]+) images/s, ([0-9.]+) ms/step", line)
            if m:
                return float(m.group(1)), float(m.group(2))
    return None, None
ours, ours_ms = ips(f"{out}/gpu-check.txt", "train step")
torch, torch_ms = ips(f"{out}/torch.txt", "torch step")
checks = open(f"{out}/gpu-check.txt", errors="replace").read()
print("checks:", len(re.findall(r"^ok ", checks, re.M)), "passed,", len(re.findall(r"^FAIL", checks, re.M)), "failed")
if ours and torch:
    print(f"nasbench-db: {ours:.1f} images/s; PyTorch+cuDNN: {torch:.1f} images/s; ratio {ours / torch:.3f}")
if ours_ms:
    # 108 epochs: 16875 steps, plus 3 evaluations of 3 x 39 batches (forward only, ~1/3 of a step).
    est = 16875 * ours_ms / 1e3 + 3 * 3 * 39 * ours_ms / 3 / 1e3
    print(f"estimated full 108-epoch run of the README cell: {est:.0f} s (dataset's TPU v2: 1155 s; target 300 s)")
PY
echo "gpu-check took $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
exit $status
