#!/usr/bin/env bash
# Installs the Debian packages the lab, demo and tests need, only when missing.
set -euo pipefail
need=()
command -v ovs-vswitchd >/dev/null || need+=(openvswitch-switch)
command -v ethtool >/dev/null || need+=(ethtool)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# A real dockerd per lab host (lab/dockerd.py; Debian puts it in /usr/sbin). Checked by path:
# another docker client may come first on PATH (/usr/local/bin/docker); the lab runs
# /usr/bin/docker.
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
# A real Podman per lab host (lab/podman.py) with its CNI backend, and the reference CNI
# plugins (bandwidth) chained after ovsfabric's in the tests.
[ -x /usr/bin/podman ] || need+=(podman)
[ -x /usr/lib/cni/bandwidth ] || need+=(containernetworking-plugins)
# etcd for controller replicas (the lab runs a 3-member cluster on loopback; lab/etcd.py).
[ -x /usr/bin/etcd ] || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No package may start its daemon: docker.io's default dockerd would rewrite the machine's
    # iptables and make docker0. A policy-rc.d exiting 101 forbids it; one that says otherwise
    # is set aside meanwhile, and the machine gets back what it had.
    policy=/usr/sbin/policy-rc.d saved=/usr/sbin/policy-rc.d.ovsfabric-saved
    rc=0; [ -e "$policy" ] && { "$policy" >/dev/null 2>&1 || rc=$?; }
    if [ ! -e "$policy" ] || [ "$rc" -ne 101 ]; then
        [ -e "$policy" ] && mv "$policy" "$saved"
        trap 'rm -f "$policy"; [ ! -e "$saved" ] || mv "$saved" "$policy"' EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
    fi
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
