#!/usr/bin/env bash
# lab/etcd.sh: install etcd (Debian's etcd-server) for the cluster tests,
# which start their own etcd server in a network namespace. Does nothing
# when etcd is already there; never starts or enables the packaged service.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
command -v etcd >/dev/null && exit 0
apt-get update -qq
# policy-rc.d 101: the package's service is not started by the install.
cleanup=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && cleanup=1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
[ -n "$cleanup" ] && rm -f /usr/sbin/policy-rc.d
command -v etcd >/dev/null
