#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for tests/test_slurm.py:
# munged, slurmctld and slurmd, with tests/slurm/slurm.conf. Run as root after
# install.sh (this script installs nothing). Waits until `sinfo` shows the node
# idle (at most $SLURM_START_TIMEOUT seconds, default 60), then runs one srun.
# Records what it started in /run/cbma-slurm/started; stop.sh stops only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=/run/cbma-slurm
timeout=${SLURM_START_TIMEOUT:-60}

die() { echo "start.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd and munged need it)"
for bin in munged munge unmunge slurmctld slurmd sinfo srun; do
  command -v "$bin" >/dev/null || die "$bin not found; run tests/slurm/install.sh first"
done

# A daemon counts as running when its pid file names a live process of that name.
running() {  # $1 pid file, $2 process name
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$2" ]
}
install -d -m 0755 "$state"
touch "$state/started"
record() {  # $1 name, $2 pid file: remember that this script started it
  grep -qx "$1 $2" "$state/started" || echo "$1 $2" >> "$state/started"
}

# The config: ours, or nothing. Never overwrite a real cluster's slurm.conf.
conf=/etc/slurm/slurm.conf
if [ -e "$conf" ] && ! head -1 "$conf" | grep -q '^# cbma tests/slurm/slurm.conf'; then
  die "$conf exists and is not the cbma test config; not touching it"
fi
install -d -m 0755 /etc/slurm
install -m 0644 "$here/slurm.conf" "$conf"

# munge: key owned by munge with mode 0400, runtime dir /run/munge, runs as munge.
munge_pid=/run/munge/munged.pid
[ -s /etc/munge/munge.key ] || \
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! running "$munge_pid" munged; then
  runuser -u munge -- /usr/sbin/munged --pid-file="$munge_pid"
  record munged "$munge_pid"
fi
munge -n | unmunge >/dev/null || die "munge does not work"

# slurmctld drops to SlurmUser=slurm itself; slurmd stays root. -c: start with
# no saved jobs. -N localhost: the node's name in slurm.conf, whatever the hostname.
install -d -o slurm -g slurm -m 0755 /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd
if ! running /run/slurm/slurmctld.pid slurmctld; then
  /usr/sbin/slurmctld -c
  record slurmctld /run/slurm/slurmctld.pid
fi
if ! running /run/slurm/slurmd.pid slurmd; then
  /usr/sbin/slurmd -N localhost
  record slurmd /run/slurm/slurmd.pid
fi

for _ in $(seq 1 "$timeout"); do
  [ "$(sinfo -h -n localhost -o %T 2>/dev/null || true)" = idle ] && break
  sleep 1
done
node=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
[ "$node" = idle ] || die "node localhost is '${node:-not answering}' after ${timeout}s; see /var/log/slurm/"
sinfo
timeout 60 srun -t 1 -n 1 --mem 10 true || die "srun smoke test failed"
echo "start.sh: SLURM is up (node localhost idle; srun works)"
