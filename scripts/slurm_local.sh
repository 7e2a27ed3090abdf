#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing `launcher=slurm` for real.
#
#   bash scripts/slurm_local.sh start    # install slurm-wlm + munge if missing, write config, start, wait for idle
#   bash scripts/slurm_local.sh status   # sinfo / squeue
#   bash scripts/slurm_local.sh stop     # stop the daemons this script started
#
# Needs root (apt-get, daemons). No systemd is assumed: the daemons are started directly and their
# pids kept in $STATE_DIR. The node is this host (`hostname -s`) with its CPUs and memory; one
# partition "debug"; CPU-only scheduling (CR_CPU) so jobs that ask for no memory still run side by
# side; no accounting, no cgroups (proctrack/linuxproc, task/none), so it also works in containers.
set -euo pipefail

STATE_DIR=${SLURM_LOCAL_STATE:-/var/lib/sweet-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

log() { echo "slurm_local: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
  local cpus mem_mb
  cpus=$(nproc)
  # leave 1 GiB to the OS; slurmd refuses to register a node that claims more than it has
  mem_mb=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
  mkdir -p /etc/slurm "$STATE_DIR"/{ctld,slurmd,log}
  # the hostname must resolve for slurmctld/slurmd to find each other
  getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >>/etc/hosts
  cat >"$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node test cluster
ClusterName=sweet-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return  # a munged is already answering
  fi
  [[ -f /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  touch "$STATE_DIR/started-munged"  # so that stop ends the munged this script started, and no other
  for _ in $(seq 20); do munge -n | unmunge >/dev/null 2>&1 && return; sleep 0.5; done
  log "munged did not come up"; return 1
}

start() {
  install
  write_config
  start_munge
  alive "$STATE_DIR/slurmctld.pid" || slurmctld
  alive "$STATE_DIR/slurmd.pid" || slurmd
  log "waiting for node $NODE to be idle"
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
      idle | mixed | allocated) log "node $NODE is $state"; sinfo; return 0 ;;
      down* | drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  log "node did not become idle; see $STATE_DIR/log/"
  tail -5 "$STATE_DIR"/log/*.log >&2 || true
  return 1
}

stop() {
  for name in slurmd slurmctld; do
    pidfile="$STATE_DIR/$name.pid"
    if alive "$pidfile"; then
      kill "$(cat "$pidfile")" && log "stopped $name"
    fi
  done
  if [[ -f "$STATE_DIR/started-munged" ]] && alive /run/munge/munged.pid; then
    kill "$(cat /run/munge/munged.pid)" && log "stopped munged"
  fi
  rm -f "$STATE_DIR/started-munged"
}

status() {
  sinfo && squeue
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
