#!/usr/bin/env bash
# Bring up a throw-away one-node SLURM cluster on localhost (Debian 12, as root, no systemd).
# Used by tests/test_slurm.py; from the team recipe (shared/slurm-ci), proven on our CI machines.
# Added here: AccountingStoreFlags=job_comment, so `sacct` shows the rule name the executor plugin
# puts in each job's --comment (rule_<name>[_wildcards_...]).
#   WITH_DBD=1 (default): slurmdbd + MariaDB accounting, so `sacct` works (plugin default)
#   WITH_DBD=0          : no accounting; use `slurm-status-command: squeue` in the profile
#   FAKE_GPUS=N         : number of fake GPUs (gres gpu, type "fake") on the node (default 1)
set -euo pipefail
BASE=${SLURM_CI_BASE:?set SLURM_CI_BASE to a scratch folder for the cluster state}
WITH_DBD=${WITH_DBD:-1}
FAKE_GPUS=${FAKE_GPUS:-1}
DB_PORT=${DB_PORT:-3306}
NCPU=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

t0=$(date +%s.%N)
ts() { awk -v a="$(date +%s.%N)" -v b="$t0" -v m="$*" 'BEGIN{printf "  slurm-up [%5.1fs] %s\n", a-b, m}' >&2; }
wait_for() { # wait_for <seconds> <cmd...>
  local t=$1; shift; local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

# 0. stop a previous instance, start from a clean state
bash "$here/slurm-down.sh" || true
rm -rf "$BASE"; mkdir -p "$BASE"/{etc,state/ctld,state/d,log,run,dev}

ts "old instance stopped"
# 1. packages (skipped when already installed)
pkgs="munge slurmctld slurmd slurm-client"
[ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

ts "packages ok"
# 2. config files (rendered into $BASE/etc, linked into /etc/slurm because
#    snakemake's slurm-jobstep strips SLURM_CONF before its inner srun)
for i in $(seq 0 $((FAKE_GPUS - 1))); do ln -sf /dev/null "$BASE/dev/nvidia$i"; done
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_LINE="GresTypes=gpu"
  NODE_GRES="Gres=gpu:fake:$FAKE_GPUS"
  echo "NodeName=localhost Name=gpu Type=fake File=$BASE/dev/nvidia[0-$((FAKE_GPUS - 1))]" > "$BASE/etc/gres.conf"
else
  GRES_LINE=""; NODE_GRES=""; : > "$BASE/etc/gres.conf"
fi
if [ "$WITH_DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
cat > "$BASE/etc/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
$ACCT
$GRES_LINE
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU Sockets=1 CoresPerSocket=$NCPU ThreadsPerCore=1 RealMemory=$MEM_MB $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /etc/slurm
ln -sfn "$BASE/etc/slurm.conf" /etc/slurm/slurm.conf
ln -sfn "$BASE/etc/gres.conf" /etc/slurm/gres.conf

# 3. munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$BASE/run/munged.pid"
fi

ts "munged up"
# 4. MariaDB + slurmdbd
if [ "$WITH_DBD" = 1 ]; then
  install -d -o mysql -g mysql "$BASE/mysql" "$BASE/mysql-run"
  cat > "$BASE/etc/my.cnf" <<CONF
[mysqld]
user=mysql
datadir=$BASE/mysql
socket=$BASE/mysql-run/mysqld.sock
pid-file=$BASE/mysql-run/mysqld.pid
log-error=$BASE/mysql-run/mysqld.log
bind-address=127.0.0.1
port=$DB_PORT
skip-name-resolve
innodb_buffer_pool_size=128M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
[client]
socket=$BASE/mysql-run/mysqld.sock
CONF
  mariadb-install-db --defaults-file="$BASE/etc/my.cnf" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket > "$BASE/log/mariadb-install-db.log" 2>&1
  nohup setsid mariadbd --defaults-file="$BASE/etc/my.cnf" > "$BASE/log/mariadbd.out" 2>&1 < /dev/null &
  wait_for 60 mariadb-admin --defaults-file="$BASE/etc/my.cnf" -uroot ping
  cp "$BASE/mysql-run/mysqld.pid" "$BASE/run/mariadbd.pid"
  mariadb --defaults-file="$BASE/etc/my.cnf" -uroot -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  cat > "$BASE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$BASE/etc/slurmdbd.conf"
  ln -sfn "$BASE/etc/slurmdbd.conf" /etc/slurm/slurmdbd.conf
  ts "mariadbd up"
  /usr/sbin/slurmdbd
  wait_for 60 sacctmgr -n list cluster
  ts "slurmdbd up"
fi

# 5. slurmctld + slurmd (absolute config path: slurmd daemonizes and chdirs)
/usr/sbin/slurmctld -f /etc/slurm/slurm.conf
wait_for 30 sh -c 'scontrol ping | grep -q UP'
ts "slurmctld up"
/usr/sbin/slurmd -f /etc/slurm/slurm.conf -N localhost
wait_for 30 sh -c '[ "$(sinfo -h -n localhost -o %t)" = idle ]'
ts "slurmd up, node idle"
if [ "$WITH_DBD" = 1 ]; then
  wait_for 30 sh -c 'sacctmgr -n -P list cluster format=cluster,controlport | grep -q "^ci|6817"'
fi
ts "cluster registered"
sinfo -N -o '%N %t %c %m %G'
