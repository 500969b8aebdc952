#!/usr/bin/env bash
# The tests need a real MySQL/MariaDB. When CIO_TEST_MYSQL_URL is unset they use the local MariaDB
# (127.0.0.1:3306, root, empty password): start it if it is installed but not answering.
set -euo pipefail
[ -n "${CIO_TEST_MYSQL_URL:-}" ] && exit 0

answering() { .venv/bin/python -c "import MySQLdb; MySQLdb.connect(host='127.0.0.1', port=3306, user='root').close()" 2>/dev/null; }
answering && exit 0

if [ ! -x /usr/sbin/mariadbd ]; then
  echo "ensure-mariadb: no MariaDB answers on 127.0.0.1:3306 and none is installed;" \
       "install mariadb-server or set CIO_TEST_MYSQL_URL" >&2
  exit 1
fi
echo "ensure-mariadb: starting the local MariaDB"
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
for _ in $(seq 1 60); do answering && exit 0; sleep 1; done
echo "ensure-mariadb: MariaDB did not answer within 60 s" >&2
exit 1
