#!/usr/bin/env bash
# Stop the daemons that start.sh started (and only those), by their pid files:
# SIGTERM, up to 10 s of grace, then SIGKILL of that pid. Safe to run twice,
# and from a `trap ... EXIT` when start.sh or the tests failed.
set -u
state=/run/cbma-slurm/started
[ -s "$state" ] || { echo "stop.sh: nothing recorded in $state"; exit 0; }

stop() {  # $1 name, $2 pid file
  local pid
  pid=$(cat "$2" 2>/dev/null) || { echo "stop.sh: $1: no pid file $2"; return 0; }
  if [ -z "$pid" ] || [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != "$1" ]; then
    echo "stop.sh: $1: pid ${pid:-?} is not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    echo "stop.sh: $1: killed pid $pid"
  else
    echo "stop.sh: $1: stopped pid $pid"
  fi
}

# compute node first, munge last (the SLURM daemons need it to shut down cleanly)
for name in slurmd slurmctld munged; do
  line=$(grep "^$name " "$state" | tail -1) || continue
  stop "$name" "${line#* }"
done
rm -f "$state"
