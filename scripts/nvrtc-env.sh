# Sourced by .ci/env.sh and scripts/test.sh: puts NVRTC from PyPI
# (nvidia-cuda-nvrtc-cu12 in .venv) on LD_LIBRARY_PATH, so that the CUDA
# backend compiles its kernels on machines with no CUDA toolkit too.
for d in "${NASBENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib; do
    if [ -d "$d" ]; then
        case ":${LD_LIBRARY_PATH:-}:" in
            *":$d:"*) ;;
            *) export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
        esac
    fi
done
