# Build environment shared by .ci/run and developers (`. .ci/env.sh`): the
# cargo target directory and ccache live outside the checkout, so a fresh
# clone reuses them. Keep these identical between runs: a change of CC/CXX
# reruns the bundled DuckDB build script, which recompiles all of DuckDB.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nasbench-db/target}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="$HOME"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
if command -v ccache >/dev/null; then
    export CC="ccache gcc" CXX="ccache g++"
fi
# NVRTC from the project's .venv on LD_LIBRARY_PATH.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/nvrtc-env.sh"
