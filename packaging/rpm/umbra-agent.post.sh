# %post: pick up the unit (installed, not enabled: it needs TLS material first).
if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
# Apply 60-umbra-agent.rules to devices that already exist.
if [ -d /run/udev ]; then
    udevadm trigger --action=change --subsystem-match=ipmi \
        --subsystem-match=i2c-dev --subsystem-match=nvme || :
fi
