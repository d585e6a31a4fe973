# %postun: reload units; on upgrade, restart a running service. State in
# /var/lib/umbra/agent is kept on erase (RPM has no purge): remove it by hand.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then systemctl try-restart umbra-agent.service || :; fi
fi
