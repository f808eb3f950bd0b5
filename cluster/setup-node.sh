#!/usr/bin/env bash
# Sets up one cluster node; `ray up` runs it on every node (setup_commands in cluster/*.yaml)
# after syncing the project to ~/gpo-study. Idempotent: `ray up` reruns it on each update.
#
#   bash ~/gpo-study/cluster/setup-node.sh [aws|gcp]   # the cloud's SDK, for Ray's autoscaler on the head
#
# - A virtual environment (~/gpo-venv): current Debian/Ubuntu refuse pip installs into the
#   system Python (PEP 668). Its Python is the system python3 when that is 3.10 or newer (with
#   Debian's python3-venv package if missing); otherwise uv installs a CPython 3.11 for it.
# - torch at the project's pin, installed first so that the project's install keeps it: the
#   CPU build on a node without an NVIDIA driver (the CUDA build alone is 1.6 GB of nvidia
#   packages a CPU node never uses); on a GPU node the CUDA build of the newest CUDA release
#   the driver supports (`nvidia-smi` shows it), from PyTorch's index for that release.
# - The project installed editable with the MiniLM weights and Ray's cluster parts (dashboard,
#   job server), plus boto3 (aws) or Google's API client (gcp), which Ray's autoscaler needs.
# - ~/.bashrc activates the venv: Ray runs every command on a node (start commands, `ray
#   submit`'s `python`, `ray down`'s `ray stop`) in a shell that sources it.
# Sourced (`source cluster/setup-node.sh`), it only defines its functions (tests use them).
set -euo pipefail

# PyTorch's CUDA wheel indexes, newest first; a torch release is on some of them
CUDA_RELEASES="13.0 12.9 12.8 12.6 12.4 12.1 11.8"

python_ok() {  # $1 is a Python 3.10 or newer
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

make_venv() {  # $1: the venv's folder
    local venv=$1
    if command -v python3 >/dev/null && python_ok python3; then
        python3 -m venv "$venv" && return
        rm -rf "$venv"  # Debian/Ubuntu ship venv as its own package
        sudo -n apt-get update -qq
        sudo -n apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv  # cloud images run apt at first boot
        python3 -m venv "$venv"
        return
    fi
    echo "setup-node: no python3 >= 3.10 here; uv installs CPython 3.11 for the venv" >&2
    if ! command -v uv >/dev/null; then
        curl -LsSf https://astral.sh/uv/install.sh | sh
        export PATH="$HOME/.local/bin:$PATH"
    fi
    uv venv --seed --python 3.11 "$venv"  # --seed: with pip, which the rest of this script uses
}

driver_cuda() {  # the newest CUDA release the NVIDIA driver supports ("12.8"); empty without one
    local smi
    smi=$(nvidia-smi 2>/dev/null) || return 0
    printf '%s\n' "$smi" | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1
}

torch_indexes() {  # PyTorch's wheel indexes for CUDA releases up to $1, newest first
    local release
    for release in $CUDA_RELEASES; do
        if [ "$(printf '%s\n%s\n' "$release" "$1" | sort -V | head -n 1)" = "$release" ]; then
            echo "https://download.pytorch.org/whl/cu${release/./}"
        fi
    done
}

install_torch() {  # $1: the venv's python, $2: the pin (torch==X.Y.Z)
    local python=$1 pin=$2 cuda index
    cuda=$(driver_cuda)
    if [ -z "$cuda" ]; then  # its dependencies come with the project, from the usual index
        "$python" -m pip install -q --no-deps "$pin" --index-url https://download.pytorch.org/whl/cpu
        return
    fi
    for index in $(torch_indexes "$cuda"); do
        if "$python" -m pip install -q "$pin" --index-url "$index"; then
            echo "setup-node: $pin from $index (the driver supports CUDA $cuda)"
            return
        fi
    done
    echo "setup-node: no CUDA build of $pin for CUDA $cuda or older on PyTorch's indexes; update the NVIDIA driver" >&2
    return 1
}

main() {
    local project venv cloud torch_pin activate
    project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    venv=${GPO_VENV:-$HOME/gpo-venv}
    cloud=${1:-}
    [ -x "$venv/bin/python" ] || make_venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    torch_pin=$(grep -o 'torch==[0-9.]*' "$project/pyproject.toml" | head -n 1)
    install_torch "$venv/bin/python" "$torch_pin"
    "$venv/bin/python" -m pip install -q -e "$project[minilm,cluster]"
    case "$cloud" in
        aws) "$venv/bin/python" -m pip install -q boto3 ;;
        gcp) "$venv/bin/python" -m pip install -q google-api-python-client ;;
        "") ;;
        *) echo "setup-node: unknown cloud '$cloud' (aws or gcp)" >&2; return 2 ;;
    esac
    activate="source $venv/bin/activate  # gpo-study (cluster/setup-node.sh)"
    grep -qxF "$activate" ~/.bashrc 2>/dev/null || echo "$activate" >> ~/.bashrc
    "$venv/bin/python" -c "import sys, torch, ray, gpo.tune.sweep; print('node ready: python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
