#!/usr/bin/env bash
# A single-node SLURM on loopback for the test suite (tests/test_slurm.py and friends).
# Debian/Ubuntu, run as root, no systemd needed (daemons are started directly), no cgroups,
# no accounting.  Every command is idempotent.
#
#   .ci/slurm.sh install   # apt-get install slurm-wlm munge (skipped if already installed)
#   .ci/slurm.sh start     # write slurm.conf, start munged, slurmctld, slurmd; wait until idle
#   .ci/slurm.sh status
#   .ci/slurm.sh stop      # stop the daemons (by their pid files only)
#
# Knobs: NODES=1 (N>1: emulated nodes node[1-N], one slurmd each), CPUS_PER_NODE=4 (may exceed
# the real cores: several 1-CPU jobs then fit on a 2-core machine).
set -euo pipefail

NODES="${NODES:-1}"
CPUS_PER_NODE="${CPUS_PER_NODE:-4}"
CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd

say() { echo "[.ci/slurm.sh] $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # TERM the process of a pid file, KILL it after 5 s, remove the file
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}

node_names() {
  if [ "$NODES" -eq 1 ]; then echo localhost; else seq -f 'node%g' 1 "$NODES"; fi
}

install() {
  if dpkg -s slurm-wlm munge >/dev/null 2>&1; then
    say "slurm-wlm and munge are installed"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # "policy-rc.d denied execution of start" is expected: `start` runs the daemons itself
  apt-get install -y -qq slurm-wlm munge
}

write_conf() {  # to stdout
  local nodes partition
  if [ "$NODES" -eq 1 ]; then
    nodes="NodeName=localhost NodeAddr=127.0.0.1 CPUs=${CPUS_PER_NODE} RealMemory=4000 State=UNKNOWN"
    partition=localhost
  else
    nodes="NodeName=node[1-${NODES}] NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=${CPUS_PER_NODE} RealMemory=4000 State=UNKNOWN"
    partition="node[1-${NODES}]"
  fi
  cat <<EOF
# written by .ci/slurm.sh
# (the name of /work/shared/slurm_single_node.sh: slurmctld refuses a state directory
# written for another cluster name)
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${STATE}
SlurmdSpoolDir=${SPOOL}/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# more CPUs than the machine has must not drain the node
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${LOGS}/jobcomp.log
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
# start jobs as soon as they are submitted (the default waits ~3 s between starts)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
${nodes}
PartitionName=debug Nodes=${partition} Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then  # the package's postinst normally made one
    if command -v mungekey >/dev/null; then
      mungekey --create --force
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  say "munged did not come up"
  return 1
}

settings() { grep -v -e '^#' -e '^$' | sort; }  # a config's settings, order aside

stop_slurm() {
  local f
  for f in /run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  stop_pidfile /run/slurmctld.pid
}

start() {
  command -v slurmctld >/dev/null || { say "SLURM is not installed: run '$0 install' first"; exit 1; }
  mkdir -p "$LOGS" "$STATE" "$SPOOL" /etc/slurm
  local new
  new="$(write_conf)"
  if [ ! -f "$CONF" ] || [ "$(settings <<<"$new")" != "$(settings <"$CONF")" ]; then
    stop_slurm  # daemons running with another config: restart them with this one
    printf '%s\n' "$new" >"$CONF"
  fi
  start_munge
  alive /run/slurmctld.pid || slurmctld
  local n
  for n in $(node_names); do
    mkdir -p "$SPOOL/$n"
    alive "/run/slurmd-$n.pid" || slurmd -N "$n"  # -N: which NodeName this slurmd is
  done
  local states
  for _ in $(seq 150); do  # every node up: idle, or busy with jobs already (mix, alloc, comp)
    states="$(sinfo -h -o '%t' 2>/dev/null || true)"
    if [ -n "$states" ] && ! grep -qvxE 'idle|mix|alloc|comp' <<<"$states"; then
      sinfo
      return 0
    fi
    sleep 0.2
  done
  sinfo || true
  say "the nodes did not come up within 30 s (see $LOGS)"
  return 1
}

stop() {
  stop_slurm
  stop_pidfile /run/munge/munged.pid
  say "stopped"
}

status() {
  local f
  for f in /run/munge/munged.pid /run/slurmctld.pid /run/slurmd-*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "up    $f (pid $(cat "$f"))"; else echo "down  $f (stale)"; fi
  done
  sinfo 2>/dev/null || echo "sinfo: no controller answers"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {install|start|status|stop}  (env: NODES, CPUS_PER_NODE)" >&2; exit 2 ;;
esac
