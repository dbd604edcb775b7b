#!/bin/sh
# Prepares a host to be an EdgeLB backend (direct server return).
# Usage: edgelb-backend-setup.sh [--decap kernel|none] [--gue-port N] [--undo] --vip ADDR [--vip ADDR...]
#   --decap kernel  decapsulate with tunl0/ip6tnl0 (+ fou for GUE)  [default]
#   --decap none    the XDP decapsulator (xdp-fwd/decap) does it; only VIP/ARP/rp_filter
# Idempotent; --undo removes the VIPs from lo (sysctls and modules stay).
set -eu

decap=kernel
gue_port=
undo=0
vips=
while [ $# -gt 0 ]; do
    case "$1" in
        --decap) decap=${2:?--decap needs kernel or none}; shift 2 ;;
        --gue-port) gue_port=${2:?--gue-port needs a port}; shift 2 ;;
        --vip) vips="$vips ${2:?--vip needs an address}"; shift 2 ;;
        --undo) undo=1; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "edgelb-backend-setup: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$vips" ] || { echo "edgelb-backend-setup: at least one --vip is required" >&2; exit 2; }
case "$decap" in kernel|none) ;; *) echo "edgelb-backend-setup: --decap must be kernel or none" >&2; exit 2 ;; esac
if [ -n "$gue_port" ]; then
    case "$gue_port" in *[!0-9]*|'') echo "edgelb-backend-setup: bad --gue-port $gue_port" >&2; exit 2 ;; esac
fi

for vip in $vips; do
    case "$vip" in
        *:*) prefix="$vip/128"; family=-6 ;;
        *.*) prefix="$vip/32"; family=-4 ;;
        *) echo "edgelb-backend-setup: bad VIP $vip" >&2; exit 2 ;;
    esac
    if [ "$undo" = 1 ]; then
        ip "$family" addr del "$prefix" dev lo 2>/dev/null || true
    elif ! ip "$family" addr show dev lo | grep -q " $prefix "; then
        ip "$family" addr add "$prefix" dev lo
    fi
done
[ "$undo" = 1 ] && exit 0

sysctl -qw net.ipv4.conf.all.arp_ignore=1
sysctl -qw net.ipv4.conf.all.arp_announce=2
sysctl -qw net.ipv4.conf.all.rp_filter=2

if [ "$decap" = kernel ]; then
    modprobe ipip
    ip link set tunl0 up
    sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
    if modprobe ip6_tunnel 2>/dev/null; then ip link set ip6tnl0 up; fi
    if [ -n "$gue_port" ]; then
        modprobe fou
        ip fou show 2>/dev/null | grep -q "port $gue_port " || ip fou add port "$gue_port" gue
        ip -6 fou show 2>/dev/null | grep -q "port $gue_port " || ip -6 fou add port "$gue_port" gue 2>/dev/null || true
    fi
fi
echo "edgelb backend ready: VIPs$vips, decap=$decap${gue_port:+, GUE port $gue_port}"
