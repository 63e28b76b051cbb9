#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests: munge plus
# slurmctld and slurmd with a generated slurm.conf, state and logs in DIR.
# Needs root and Debian's slurm-wlm and munge (.ci/run installs them).
#
#   scripts/slurm/local-cluster.sh start DIR   # prints SLURM_CONF=DIR/slurm.conf
#   SLURM_CONF=DIR/slurm.conf sbatch ...
#   scripts/slurm/local-cluster.sh stop DIR
set -euo pipefail
cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=${2:?usage: local-cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/slurm.conf"

stop() {
    for d in slurmd slurmctld; do
        if [ -f "$dir/$d.pid" ]; then
            kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
        fi
    done
    if [ -f "$dir/munged.pid" ]; then
        kill "$(cat "$dir/munged.pid")" 2>/dev/null || true
    fi
    rm -f "$dir"/*.pid
}

case "$cmd" in
stop)
    stop
    exit 0
    ;;
start) ;;
*)
    echo "usage: local-cluster.sh start|stop DIR" >&2
    exit 2
    ;;
esac

[ "$(id -u)" = 0 ] || { echo "local-cluster.sh: needs root" >&2; exit 1; }
for t in munged slurmctld slurmd sbatch; do
    command -v "$t" >/dev/null || { echo "local-cluster.sh: $t not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
# Ports of our own, so that a system Slurm (if any) is left alone.
ctl_port=${SLURM_TEST_CTLD_PORT:-16817}
d_port=${SLURM_TEST_SLURMD_PORT:-16818}
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"

# munge: its own socket and key in DIR (a copy of the package's key, or a
# fresh one).
key="$dir/munge/munge.key"
if [ ! -f "$key" ]; then
    if [ -r /etc/munge/munge.key ]; then cp /etc/munge/munge.key "$key"; else dd if=/dev/urandom of="$key" bs=1 count=128 2>/dev/null; fi
    chmod 600 "$key"
fi
munged --force --key-file="$key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"

cat > "$conf" <<CONF
ClusterName=nasbench-test
SlurmctldHost=$host
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdTimeout=30
MinJobAge=2
KillWait=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$conf"
slurmctld -f "$conf" -i
slurmd -f "$conf"
# Wait for the node to be idle.
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
        echo "SLURM_CONF=$conf"
        exit 0
    fi
    sleep 0.5
done
echo "local-cluster.sh: the node did not come up; logs in $dir" >&2
sinfo >&2 || true
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
stop
exit 1
