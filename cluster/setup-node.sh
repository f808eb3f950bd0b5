#!/usr/bin/env bash
# Sets up one cluster node; `ray up` runs it on every node (setup_commands in cluster/*.yaml)
# after syncing the project to ~/gpo-study. Idempotent: `ray up` reruns it on each update.
#
# - A virtual environment (~/gpo-venv): current Debian/Ubuntu refuse pip installs into the
#   system Python (PEP 668).
# - torch: the CUDA build on a node with an NVIDIA GPU, the CPU build otherwise (the CUDA
#   build alone is 1.6 GB of nvidia packages a CPU node never uses), at the project's pin,
#   installed first so that the project's install keeps it.
# - The project installed editable with the MiniLM weights and Ray's cluster parts (dashboard,
#   job server).
# - ~/.bashrc activates the venv: Ray runs every command on a node (start commands, `ray
#   submit`'s `python`, `ray down`'s `ray stop`) in a shell that sources it.
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
venv=${GPO_VENV:-$HOME/gpo-venv}

if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv"; then  # Debian/Ubuntu ship venv as its own package
        rm -rf "$venv"
        sudo -n apt-get install -y python3-venv
        python3 -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip
if ! nvidia-smi -L >/dev/null 2>&1; then  # no GPU: torch from PyTorch's CPU index, at the project's pin
    torch_pin=$(grep -o 'torch==[0-9.]*' "$project/pyproject.toml" | head -n 1)
    # its dependencies come with the project, from the usual index
    "$venv/bin/python" -m pip install -q --no-deps "$torch_pin" --index-url https://download.pytorch.org/whl/cpu
fi
"$venv/bin/python" -m pip install -q -e "$project[minilm,cluster]"

activate="source $venv/bin/activate  # gpo-study (cluster/setup-node.sh)"
grep -qxF "$activate" ~/.bashrc 2>/dev/null || echo "$activate" >> ~/.bashrc
"$venv/bin/python" -c "import torch, ray, gpo.tune.sweep; print('node ready: torch', torch.__version__, 'ray', ray.__version__)"
