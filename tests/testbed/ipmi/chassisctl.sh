#!/bin/sh
# From the development kit (shared/testbeds/ipmi), kept in the project so its tests stand alone.
# ipmi_sim chassis_control helper: $1=statedir (from lan.conf), then op + params
dir=$1; shift; op=$1; shift
mkdir -p "$dir"
[ -f "$dir/power" ] || echo 1 > "$dir/power"
[ -f "$dir/boot" ] || echo default > "$dir/boot"
case $op in
  get) for p in "$@"; do case $p in
         power) echo "power:$(cat $dir/power)";;
         boot)  echo "boot:$(cat $dir/boot)";;
         *) echo "Invalid parameter: $p"; exit 1;; esac; done;;
  set) while [ $# -gt 0 ]; do p=$1; v=$2; shift 2
         case $p in
           power) echo "$v" > "$dir/power";;
           reset) echo "$(date +%s) reset" >> "$dir/resets";;
           boot)  echo "$v" > "$dir/boot";;
           identify) shift;;
           *) echo "Invalid parameter: $p"; exit 1;; esac
         echo "$(date +%s) set $p $v" >> "$dir/log"; done;;
  check) exit 1;;
  *) echo "Unknown operation: $op"; exit 1;;
esac
