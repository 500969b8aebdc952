#!/usr/bin/env bash
# The tests need a real MySQL/MariaDB. When CIO_TEST_MYSQL_URL is unset they use the local MariaDB
# (127.0.0.1:3306, root, empty password): start it if it is installed but not answering; on a fresh Debian
# machine (as root), install it first, and let root in over TCP without a password, as the tests connect.
set -euo pipefail
[ -n "${CIO_TEST_MYSQL_URL:-}" ] && exit 0

answering() { .venv/bin/python -c "import MySQLdb; MySQLdb.connect(host='127.0.0.1', port=3306, user='root').close()" 2>/dev/null; }
answering && exit 0

installed_here=0
if [ ! -x /usr/sbin/mariadbd ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-mariadb: no MariaDB answers on 127.0.0.1:3306 and none is installed;" \
         "install mariadb-server (as root: apt-get install mariadb-server) or set CIO_TEST_MYSQL_URL" >&2
    exit 1
  fi
  echo "ensure-mariadb: installing mariadb-server (a throwaway local server for the tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  installed_here=1
fi
if ! answering; then
  echo "ensure-mariadb: starting the local MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for _ in $(seq 1 60); do
  answering && exit 0
  if [ "$installed_here" -eq 1 ] && mariadb -uroot -e "SELECT 1" >/dev/null 2>&1; then
    # Debian's root@localhost logs in by its Unix socket only; the tests connect over TCP as root.
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
  fi
  sleep 1
done
echo "ensure-mariadb: MariaDB did not answer within 60 s" >&2
exit 1
