#!/usr/bin/env bash
# make demo: vswitch on its default settings, with nothing to set up.
#
# Runs vswitchd in a sandbox network namespace with a temporary store and
# builds, with vswitchctl only:
#   ext0   external switch on the sandbox host's NIC nic0 (10.60.0.253), a veth
#          whose peer is a namespace playing the physical LAN (10.60.0.100):
#          the host adapter ext0 takes over nic0's MAC, address and routes
#   int0   internal switch, with the host adapter int0 (10.61.0.254) in VLAN 10
#   priv0  private switch
#   vm1    access 10 on int0          vm2  trunk 10,20 native 10 on int0
#   vm3    hybrid pvid 20 on int0     vm4  on priv0   vm5  on ext0
# then prints the topology and a ping matrix showing who reaches whom, and
# removes everything it made. STAY=1 keeps it running until Ctrl-C and
# prints the web console's URL (on 127.0.0.1:${WEB_PORT:-8470} of this host).
set -euo pipefail
cd "$(dirname "$0")/.."
. demo/lib.sh
[ "$(id -u)" = 0 ] || { echo "make demo: run as root (it creates namespaces and TAPs)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
command -v ping >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null; }

T=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
ID=$$
D=vsd$ID LAN=vsl$ID
VMS="vm1 vm2 vm3 vm4 vm5"
DPID= FPID=
cleanup() {
  [ -n "$FPID" ] && kill "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  for n in $D $LAN $(for v in $VMS; do echo "$v-$ID"; done); do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$T" ./cmd/vswitchd ./cmd/vswitchctl
ctl() { "$T/vswitchctl" --socket "$T/vswitchd.sock" "$@"; }
ns() { echo "$1-$ID"; }

for n in $D $LAN $(for v in $VMS; do ns $v; done); do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add "vsd$ID-a" type veth peer name "vsd$ID-b"
ip link set "vsd$ID-a" netns $D; ip -n $D link set "vsd$ID-a" name nic0 up
ip link set "vsd$ID-b" netns $LAN; ip -n $LAN link set "vsd$ID-b" name eth0 up
ip -n $LAN addr add 10.60.0.100/24 dev eth0
ip -n $D addr add 10.60.0.253/24 dev nic0

ip netns exec $D "$T/vswitchd" --store "$T/vswitch.db" --socket "$T/vswitchd.sock" --web 127.0.0.1:8470 2>"$T/vswitchd.log" &
DPID=$!
for _ in $(seq 100); do ctl switch ls >/dev/null 2>&1 && break; sleep 0.1; done

echo "== building the network with vswitchctl"
run() { echo "\$ vswitchctl $*"; ctl "$@" | sed 's/^/  /'; }
run switch add ext0 --type external --uplink nic0
run switch add int0 --type internal
run switch add priv0 --type private --datapath userspace
for v in $VMS; do ctl vm add $v >/dev/null; done
run adapter add vm1/eth0 --switch int0 --netns "$(ns vm1)"
run adapter add vm2/eth0 --switch int0 --netns "$(ns vm2)"
run adapter add vm3/eth0 --switch int0 --netns "$(ns vm3)"
run adapter add vm4/eth0 --switch priv0 --netns "$(ns vm4)"
run adapter add vm5/eth0 --switch ext0 --netns "$(ns vm5)"
run adapter vlan vm1/eth0 --access 10
run adapter vlan vm2/eth0 --trunk 10,20 --native 10
run adapter vlan vm3/eth0 --hybrid --pvid 20 --untagged 20 --tagged 10
run adapter vlan --host int0 --access 10
for i in 1 2 3 4; do ip -n "$(ns vm$i)" addr add 10.61.0.$i/24 dev eth0; done
ip -n "$(ns vm5)" addr add 10.60.0.5/24 dev eth0
ip -n $D addr add 10.61.0.254/24 dev int0
echo; echo "== the sandbox host: nic0 kept no address, the host adapter ext0 has it"
ip -n $D -br addr show dev nic0; ip -n $D -br addr show dev ext0

echo; echo "== vswitchctl topology"
ctl topology
echo; echo "== ping matrix (rows ping columns; the namespace VMs speak untagged; host = the sandbox host)"
declare -A IP=([vm1]=10.61.0.1 [vm2]=10.61.0.2 [vm3]=10.61.0.3 [vm4]=10.61.0.4 [vm5]=10.60.0.5 [host]=10.61.0.254 [lan]=10.60.0.100)
declare -A NS=([vm1]=$(ns vm1) [vm2]=$(ns vm2) [vm3]=$(ns vm3) [vm4]=$(ns vm4) [vm5]=$(ns vm5) [host]=$D [lan]=$LAN)
vm_ns() { echo "${NS[$1]}"; }
vm_ip() { echo "${IP[$1]}"; }
vm_label() { echo "$1"; }
ping_matrix 6 vm1 vm2 vm3 vm4 vm5 host lan
cat <<'TXT'

vm1 (access 10), vm2 (trunk, native 10) and the host adapter int0 (access 10) share VLAN 10
(ext0's and int0's frames are switched in the kernel by vswitch's eBPF program, the default
where the host has it; priv0's by vswitchd's userspace core: --datapath userspace);
vm3 (hybrid, PVID 20) is alone in VLAN 20; vm4 is on the private switch; vm5 and the host
(through its adapter ext0) reach the physical LAN over the external switch's uplink.
TXT
echo; echo "== removing the switches gives nic0 its address back"
ctl switch rm ext0 --force | sed 's/^/  /'
ip -n $D -br addr show dev nic0
if [ "${STAY:-0}" = 1 ]; then
  serve_console $D "$T/vswitchd.sock"
  FPID=$CONSOLE_PID
  echo; echo "vswitchd is up (socket $T/vswitchd.sock); Ctrl-C to stop and clean up"
  wait "$DPID"
fi
