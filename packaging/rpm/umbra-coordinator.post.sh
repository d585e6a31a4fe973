# %post: pick up the unit (installed, not enabled: it needs TLS material first).
if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
