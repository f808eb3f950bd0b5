#!/usr/bin/env bash
# The `ray up` route end to end on this machine, as a new user would take it: cluster/local.yaml
# with the README's edits (head_ip, worker_ips, ssh_user, ssh_private_key) launched on 127.0.0.1
# through an sshd of its own, the smoke study run by `ray submit` from the node's home folder,
# `ray down`, and a check that no process of the cluster is left. Not part of CI (root, minutes).
#
#   sudo bash bench/cluster_launch.sh [--keep-node]      # from the project root, with .venv built
#
# The node is an unprivileged user made for this (never root or your own user: `ray up` and
# `ray down` run `ray stop` on the node, which stops every Ray process of that user). Its sshd
# listens on 127.0.0.1:$GPO_SSH_PORT, which the generated YAML reaches through ssh_proxy_command
# (a real node's sshd is on port 22 and needs no such line). --keep-node keeps the user and its
# venv, so a rerun skips most of the setup's installs.
set -euo pipefail

node_user=${GPO_NODE_USER:-gpo-node}
ssh_port=${GPO_SSH_PORT:-2222}
project=$(pwd)
ray=$project/.venv/bin/ray
keep=${1:-}
[ -x "$ray" ] && [ -f cluster/local.yaml ] || { echo "run from the project root after make .venv/bin/gpo" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (a user and an sshd of its own)" >&2; exit 2; }
work=$(mktemp -d /tmp/gpo-launch-XXXX)
config=$work/local.yaml
mkdir -p runs/cluster-launch
log=$project/runs/cluster-launch/$(date +%Y%m%d-%H%M%S).log
stamp() { echo "[$(date +%T)] $*"; }

cleanup() {
    if [ -f "$work/sshd.pid" ]; then kill "$(cat "$work/sshd.pid")" 2>/dev/null || true; fi
    if [ "$keep" != "--keep-node" ] && id "$node_user" >/dev/null 2>&1; then
        for pid in $(pgrep -u "$node_user" || true); do kill "$pid" 2>/dev/null || true; done
        sleep 1
        userdel -r "$node_user" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

stamp "packages: openssh-server, rsync (ray up syncs with it), netcat (the proxy command), python3-venv"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server rsync netcat-openbsd python3-venv >/dev/null

stamp "node user $node_user, key login, sshd on 127.0.0.1:$ssh_port"
id "$node_user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$node_user"
usermod -p '*' "$node_user"  # no password, but not locked: sshd without PAM refuses locked accounts
home=$(getent passwd "$node_user" | cut -d: -f6)
# This machine reaches PyPI but not download.pytorch.org; /opt/wheels holds the CPU torch wheel
# that index would serve. The node's pip looks there and gives up on the unreachable index at once.
install -d -o "$node_user" "$home/.config/pip"
printf '[global]\nretries = 0\nfind-links = /opt/wheels\n' > "$home/.config/pip/pip.conf"
ssh-keygen -q -t ed25519 -N '' -f "$work/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
install -d -m 700 -o "$node_user" "$home/.ssh"
install -m 600 -o "$node_user" "$work/id_ed25519.pub" "$home/.ssh/authorized_keys"
mkdir -p /run/sshd
cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $node_user
EOF
/usr/sbin/sshd -f "$work/sshd_config"

stamp "cluster YAML: the README's edits, and the proxy command for this sshd's port"
sed -e "s|head_ip: 10.0.0.1|head_ip: 127.0.0.1|" \
    -e "s|worker_ips: \[10.0.0.2, 10.0.0.3\]|worker_ips: []|" \
    -e "s|ssh_user: ubuntu|ssh_user: $node_user|" \
    -e "s|ssh_private_key: ~/.ssh/id_rsa|ssh_private_key: $work/id_ed25519\n  ssh_proxy_command: nc 127.0.0.1 $ssh_port|" \
    cluster/local.yaml > "$config"
diff -u cluster/local.yaml "$config" | sed -n '3,$p' || true

export RAY_USAGE_STATS_ENABLED=0
start=$SECONDS
stamp "ray up"
"$ray" up -y --no-config-cache "$config" > "$log.up" 2>&1 || { tail -n 40 "$log.up"; exit 1; }
grep -E "node ready|Ray runtime started|Useful commands|ray start" "$log.up" | head -n 8 || true
stamp "ray up took $((SECONDS - start)) s"

start=$SECONDS
stamp "ray submit cluster/local.yaml tune/sweep.py -- tune/studies/opinionqa.yaml --smoke-test"
"$ray" submit "$config" tune/sweep.py -- tune/studies/opinionqa.yaml --smoke-test > "$log.submit" 2>&1 || true
grep -E "embedding [0-9]|minilm k=|^study |gpo sweep|Traceback|Error" "$log.submit" | cut -c1-220 || true
stamp "ray submit took $((SECONDS - start)) s (its whole output: $log.submit)"
check='import pandas as pd; t = pd.read_parquet("gpo-study/runs/sweeps/opinionqa-arch-smoke/study.parquet"); '\
'print("study.parquet on the node:", (t.kind == "trial").sum(), "trial rows,", (t.kind == "test").sum(), "test rows")'
"$ray" exec "$config" "python -c '$check'" 2>&1 | grep "^study.parquet on the node" || true

stamp "ray down"
"$ray" down -y "$config" 2>&1 | tail -n 3
sleep 5
left=$(pgrep -u "$node_user" -a -f "ray|gcs_server|raylet" || true)
if [ -n "$left" ]; then
    stamp "LEFT RUNNING after ray down:"; echo "$left"; exit 1
fi
stamp "no Ray process of $node_user left after ray down"
