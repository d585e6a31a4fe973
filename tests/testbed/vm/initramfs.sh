#!/usr/bin/env bash
# Build the guest's initramfs: busybox, the agent under test, smartctl,
# i2c-tools' i2cset, the kernel modules for NVMe/AHCI, in-band IPMI (KCS) and
# i2c-stub, the guest config and init from this directory.
# Usage: initramfs.sh KROOT AGENT_BINARY OUT_FILE
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KROOT=$1 AGENT=$2 OUT=$3
K=$(ls "$KROOT/lib/modules" | head -1)
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,etc/umbra,proc,sys,dev,tmp,lib/modules,usr/share/smartmontools}
cp /bin/busybox "$R/bin/busybox"
copy_bin() { # a binary and the shared libraries it links
  install -D "$1" "$R$2"
  for l in $(ldd "$1" | grep -o '/[^ ]*'); do install -D "$l" "$R$l"; done
}
copy_bin /usr/sbin/smartctl /usr/sbin/smartctl
copy_bin /usr/sbin/i2cset /usr/sbin/i2cset
copy_bin "$AGENT" /usr/bin/umbra-agent
strip --strip-debug "$R/usr/bin/umbra-agent"
cp /usr/share/smartmontools/drivedb.h "$R/usr/share/smartmontools/"
for m in crct10dif_common crc-t10dif crc64 crc64-rocksoft t10-pi nvme-core nvme \
         scsi_common scsi_mod sd_mod libata libahci ahci \
         ipmi_msghandler ipmi_devintf ipmi_si i2c-dev i2c-stub; do
  f=$(cd "$KROOT/lib/modules/$K" && find . -name "$m.ko*" | head -1)
  [[ -n $f ]] || { echo "initramfs.sh: module $m not in $KROOT" >&2; exit 1; }
  cp "$KROOT/lib/modules/$K/$f" "$R/lib/modules/"
done
cp "$HERE/init" "$R/init"
cp "$HERE/agent.toml" "$R/etc/umbra/agent.toml"
chmod +x "$R/init"
(cd "$R" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$OUT"
