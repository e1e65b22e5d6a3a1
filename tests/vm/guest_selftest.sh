#!/bin/bash
# Runs inside the VM (host mode) for test_vm_selftest.py: one boot, many checks, because a
# boot costs seconds and userland runs 20-50x slower under TCG.  It only records: each check
# leaves its evidence in $SVC2RULES_VM_OUT/<name> (+ <name>.rc) and the test judges it.  It
# ends with `exit 3`, which proves that the script's exit status reaches the host.
# Expects /job/ipvs.rules, /job/guest_pyroute2.py and $SELFTEST_TOKEN from the test.
set -u
out=${SVC2RULES_VM_OUT:?needs an output dir}
work=$(mktemp -d /run/selftest.XXXXXX)

step() { printf '== %s (uptime %s)\n' "$1" "$(cut -d' ' -f1 /proc/uptime)"; }
# record NAME CMD...: stdout+stderr to $out/NAME, exit status to $out/NAME.rc
record() {
    local name=$1
    shift
    "$@" > "$out/$name" 2>&1
    echo "$?" > "$out/$name.rc"
}
# busybox 1.35's wget -T segfaults, hence timeout(1); generous, as it only bounds a failure
fetch() { timeout 20 busybox wget -q -O - "http://$1/" 2>&1 || echo "ERR"; }

step environment
printf '%s\n' "${SELFTEST_TOKEN:-}" > "$out/token"
uname -r > "$out/kernel-release"
for tool in ipvsadm ipvsadm-save iptables-restore ipset nft ip busybox modprobe; do
    printf '%s %s\n' "$tool" "$(command -v "$tool")"
done > "$out/tools"
cat "$out/tools"

step "dummy interface (like kube-proxy's kube-ipvs0)"
ip link add kube-ipvs0 type dummy
for vip in 10.96.0.10 10.96.0.99; do
    ip addr add "$vip/32" dev kube-ipvs0
done
ip link set kube-ipvs0 up
record dummy ip -d link show kube-ipvs0

step "two real servers, each in a netns behind a veth pair"
for i in 1 2; do
    ip netns add "rs$i"
    ip link add "veth-rs$i" type veth peer name eth0 netns "rs$i"
    ip addr add "10.244.$i.1/24" dev "veth-rs$i"
    ip link set "veth-rs$i" up
    ip -n "rs$i" addr add "10.244.$i.2/24" dev eth0
    ip -n "rs$i" link set eth0 up
    ip -n "rs$i" link set lo up
    ip -n "rs$i" route add default via "10.244.$i.1"
    mkdir -p "$work/www$i"
    echo "rs$i" > "$work/www$i/index.html"
    # binds before it daemonizes, so it is listening when this returns
    ip netns exec "rs$i" busybox httpd -p "10.244.$i.2:80" -h "$work/www$i"
done

step "nft table counting packets to the VIP (before IPVS rewrites them)"
record nft-load nft -f - <<'EOF'
table inet svc2rules_selftest {
    set vips {
        type ipv4_addr
        elements = { 10.96.0.10 }
    }
    chain out {
        type filter hook output priority -300; policy accept;
        ip daddr @vips tcp dport 80 counter
    }
}
EOF

step "IPVS: one service per scheduler by ipvsadm-restore, then an rr service by hand"
# (ipvsadm-restore flushes the table first)
record ipvsadm-restore ipvsadm-restore < /job/ipvs.rules
{
    ipvsadm -A -t 10.96.0.10:80 -s rr &&
        ipvsadm -a -t 10.96.0.10:80 -r 10.244.1.2:80 -m -w 1 &&
        ipvsadm -a -t 10.96.0.10:80 -r 10.244.2.2:80 -m -w 1
} > "$out/ipvsadm-add" 2>&1
echo "$?" > "$out/ipvsadm-add.rc"
record ipvsadm-save-1 ipvsadm-save -n
cat "$out/ipvsadm-save-1"

step "rr traffic through the VIP"
for _ in 1 2 3 4 5 6; do fetch 10.96.0.10; done > "$out/rr"
cat "$out/rr"
record nft-list nft list table inet svc2rules_selftest

step "iptables-restore: DNAT 10.96.0.99:80 to rs2"
record iptables-restore iptables-restore <<'EOF'
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SVC2RULES-SELFTEST - [0:0]
-A OUTPUT -d 10.96.0.99/32 -p tcp -m tcp --dport 80 -m comment --comment "svc2rules selftest" -j SVC2RULES-SELFTEST
-A SVC2RULES-SELFTEST -p tcp -m tcp -j DNAT --to-destination 10.244.2.2:80
COMMIT
EOF
record iptables-save iptables-save -t nat
for _ in 1 2 3; do fetch 10.96.0.99; done > "$out/dnat"
cat "$out/dnat"

step "python of the checkout's venv, pyroute2's IPVS (if installed)"
record python "${SVC2RULES_PYTHON:?}" /job/guest_pyroute2.py "$out/python.json"
cat "$out/python"
record ipvsadm-save-2 ipvsadm-save -n

step "the VM's own tools (the fallbacks for hosts without them) read the same state"
record fallback-ipvsadm-save "$SVC2RULES_VM_TOOLS/ipvsadm-save" -n
record fallback-iptables-save "$SVC2RULES_VM_TOOLS/iptables-save" -t nat

step "ipset restore, and a REJECT rule matching the set"
record ipset-restore ipset restore <<'EOF'
create svc2rules-selftest hash:ip,port family inet hashsize 64 maxelem 64
add svc2rules-selftest 10.244.1.2,tcp:80
EOF
record ipset-save ipset save svc2rules-selftest
# last, because it also rejects IPVS's traffic to rs1
record ipset-rule iptables -A OUTPUT -m set --match-set svc2rules-selftest dst,dst -j REJECT
for ip in 10.244.1.2 10.244.2.2; do
    printf '%s %s\n' "$ip" "$(fetch "$ip" | head -n 1)"
done > "$out/ipset-effect"
cat "$out/ipset-effect"

step finished
exit 3
