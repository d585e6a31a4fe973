#!/usr/bin/env bash
# Boot the throw-away test guest under TCG and print its console: NVMe and
# AHCI disks (real smartctl; the NVMe reports critical warning 4,
# "reliability degraded"), an IPMI KCS interface wired to an ipmi_sim serial
# port (in-band /dev/ipmi0), i2c-stub. The guest's init runs the agent and
# powers off.
# Usage: run.sh KROOT INITRAMFS IPMI_SERIAL_PORT WORK_DIR
# (KVM is not used: on this kind of machine the nested guest aborts or
# hangs; TCG boots in ~12 s.)
set -euo pipefail
KROOT=$1 INITRD=$2 PORT=$3 W=$4
truncate -s 64M "$W/nvme.img" "$W/sata.img"
exec timeout 240 qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nodefaults \
  -serial stdio -display none -net none \
  -kernel "$(ls "$KROOT"/boot/vmlinuz-* | head -1)" -initrd "$INITRD" \
  -append 'console=ttyS0 quiet panic=-1' \
  -drive "file=$W/nvme.img,if=none,id=nv0,format=raw" -device nvme,serial=UMBRANVME01,drive=nv0,smart_critical_warning=4 \
  -drive "file=$W/sata.img,if=none,id=sd0,format=raw" -device ahci,id=ahci0 \
  -device ide-hd,drive=sd0,bus=ahci0.0,model=UMBRA-TESTDISK,serial=UMBRASATA01 \
  -chardev "socket,id=ipmi0,host=127.0.0.1,port=$PORT,reconnect=1" \
  -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0,irq=5
