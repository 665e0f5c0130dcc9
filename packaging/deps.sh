#!/bin/sh
# Installs every Debian package that building, running and testing mailfleet needs.
# Idempotent: packages already present are skipped, so `make deps` is cheap when done.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libssl-dev libnfs-dev libconfig-dev liblz4-dev libsystemd-dev libcrypt-dev zlib1g-dev
libcpg-dev libquorum-dev libcorosync-common-dev
openssl python3 python3-pytest curl isync fetchmail
rpcbind nfs-ganesha nfs-ganesha-vfs
dovecot-core dovecot-lmtpd dovecot-imapd dovecot-pop3d"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start system services (rpcbind, ganesha, dovecot): the tests
# start their own instances on private ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends $missing
