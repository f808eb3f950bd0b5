#!/usr/bin/env bash
# Sets up one cluster node; `ray up` runs it on every node (setup_commands in cluster/*.yaml)
# after syncing the project to ~/gpo-study. Idempotent: `ray up` reruns it on each update.
#
# - A virtual environment (~/gpo-venv): current Debian/Ubuntu refuse pip installs into the
#   system Python (PEP 668).
# - torch: the CUDA build on a node with an NVIDIA GPU, the CPU build otherwise (the CUDA
#   build alone is 1.6 GB of nvidia packages a CPU node never uses). The version is the
#   project's pin; the CPU index's `+cpu` build ranks above PyPI's build of that version.
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
torch_index=()
if ! nvidia-smi -L >/dev/null 2>&1; then
    torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "${torch_index[@]}" -e "$project[minilm,cluster]"

activate="source $venv/bin/activate  # gpo-study (cluster/setup-node.sh)"
grep -qxF "$activate" ~/.bashrc 2>/dev/null || echo "$activate" >> ~/.bashrc
"$venv/bin/python" -c "import torch, ray, gpo.tune.sweep; print('node ready: torch', torch.__version__, 'ray', ray.__version__)"
