#!/usr/bin/env bash
# make demo-cluster: three vswitch hosts sharing one desired state in etcd.
#
# In network namespaces on this machine: an underlay (a bridge, 10.77.0.0/24)
# with a real etcd on 10.77.0.1 (Debian's etcd-server, installed when
# missing), and three hosts h1, h2, h3 (10.77.0.11-13), each running its own
# vswitchd with --etcd, --host-name and --vtep. With vswitchctl, through any
# host:
#   lan0   a private switch spanning every host over VXLAN
#   lan1   another spanning switch (a second VNI: isolated from lan0)
#   web1 on h1, web2 on h2, web3 on h3 (lan0, untagged)
#   db2 on h2 and db3 on h3 (lan0, access 10)   app1 on h1 (lan1)
# then prints the hosts, the cluster topology and a cross-host ping matrix,
# and removes everything it made. STAY=1 keeps it running until Ctrl-C and
# prints h1's web console URL (on 127.0.0.1:${WEB_PORT:-8470} of this host).
set -euo pipefail
cd "$(dirname "$0")/.."
. demo/lib.sh
[ "$(id -u)" = 0 ] || { echo "make demo-cluster: run as root (it creates namespaces, veths and VXLAN devices)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
command -v ping >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null; }
bash lab/etcd.sh

T=$(mktemp -d /tmp/vswitch-cluster.XXXXXX)
ID=$$
U=vcu$ID
HOSTS="h1 h2 h3"
VMS="web1 web2 web3 db2 db3 app1"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for n in $U $(for h in $HOSTS $VMS; do echo "$h-$ID"; done); do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$T" ./cmd/vswitchd ./cmd/vswitchctl
ns() { echo "$1-$ID"; }
ctl() { local h=$1; shift; "$T/vswitchctl" --socket "$T/$h.sock" "$@"; }

for n in $U $(for h in $HOSTS $VMS; do ns $h; done); do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $U link add br0 type bridge; ip -n $U link set br0 up; ip -n $U addr add 10.77.0.1/24 dev br0
ip netns exec $U etcd --name demo --data-dir "$T/etcd" --listen-client-urls http://10.77.0.1:2379 \
  --advertise-client-urls http://10.77.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster demo=http://127.0.0.1:2380 >"$T/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do ip netns exec $U bash -c 'exec 3<>/dev/tcp/10.77.0.1/2379' 2>/dev/null && break; sleep 0.1; done
i=11
for h in $HOSTS; do
  ip link add "vc$ID$h" type veth peer name "vu$ID$h"
  ip link set "vc$ID$h" netns "$(ns $h)"; ip -n "$(ns $h)" link set "vc$ID$h" name ul0 up
  ip link set "vu$ID$h" netns $U; ip -n $U link set "vu$ID$h" master br0 up
  ip -n "$(ns $h)" addr add 10.77.0.$i/24 dev ul0
  ip netns exec "$(ns $h)" "$T/vswitchd" --store "$T/$h.db" --socket "$T/$h.sock" --bpf-dir "" \
    --etcd http://10.77.0.1:2379 --host-name $h --vtep 10.77.0.$i --web 127.0.0.1:8470 2>"$T/$h.log" &
  PIDS+=($!)
  i=$((i + 1))
done
for h in $HOSTS; do for _ in $(seq 100); do ctl $h switch ls >/dev/null 2>&1 && break; sleep 0.1; done; done

echo "== three hosts joined one etcd"
ctl h2 host ls
echo; echo "== building the network with vswitchctl, through any host"
run() { local h=$1; shift; echo "[$h]\$ vswitchctl $*"; ctl $h "$@" | sed 's/^/  /'; }
run h1 switch add lan0 --type private --span
run h3 switch add lan1 --type private --span
declare -A HOST=([web1]=h1 [web2]=h2 [web3]=h3 [db2]=h2 [db3]=h3 [app1]=h1)
declare -A SW=([web1]=lan0 [web2]=lan0 [web3]=lan0 [db2]=lan0 [db3]=lan0 [app1]=lan1)
declare -A IP=([web1]=10.78.0.1 [web2]=10.78.0.2 [web3]=10.78.0.3 [db2]=10.78.0.4 [db3]=10.78.0.5 [app1]=10.78.0.6)
for v in $VMS; do
  ctl h1 vm add $v --host ${HOST[$v]} >/dev/null
  run h2 adapter add $v/eth0 --switch ${SW[$v]} --netns "$(ns $v)"
done
run h3 adapter vlan db2/eth0 --access 10
run h1 adapter vlan db3/eth0 --access 10
for v in $VMS; do
  for _ in $(seq 100); do ip -n "$(ns $v)" link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$(ns $v)" addr add ${IP[$v]}/24 dev eth0
done

echo; echo "== vswitchctl topology (asked of h3)"
ctl h3 topology
echo; echo "== cross-host ping matrix (rows ping columns)"
for _ in $(seq 3); do ip netns exec "$(ns web1)" ping -c 1 -W 1 -q 10.78.0.3 >/dev/null 2>&1 && break; done
vm_ns() { ns "$1"; }
vm_ip() { echo "${IP[$1]}"; }
vm_label() { echo "$1(${HOST[$1]})"; }
ping_matrix 11 $VMS
cat <<'TXT'

web1, web2 and web3 (untagged on lan0) reach each other across the three hosts in VXLAN;
db2 and db3 (access 10 on lan0) share VLAN 10 across h2 and h3 and nothing else; app1 is
alone on lan1, the other spanning switch. The same subnet everywhere: only the switch and
the VLAN separate them, on every host.
TXT
echo; echo "== h2's counters, read through h1 (vswitchctl stats lan0 --host h2)"
ctl h1 stats lan0 --host h2
if [ "${STAY:-0}" = 1 ]; then
  serve_console "$(ns h1)" "$T/h1.sock"
  PIDS=("$CONSOLE_PID" "${PIDS[@]}")
  echo; echo "the cluster is up: sockets $T/h1.sock, h2.sock, h3.sock (vswitchctl --socket ...); Ctrl-C to stop and clean up"
  wait "${PIDS[0]}"
fi
