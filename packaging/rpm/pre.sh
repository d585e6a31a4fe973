# %pre (both packages): the system user the daemons run as.
getent group umbra >/dev/null || groupadd -r umbra
getent passwd umbra >/dev/null || \
    useradd -r -g umbra -d /var/lib/umbra -s /sbin/nologin -c "Umbra daemons" umbra
exit 0
