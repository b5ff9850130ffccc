#!/bin/sh
# A member's container: `oracle run`, with every flag from ORACLE_* variables (ConfigMaps
# oracle-network and oracle-member), logged in to the database as this member's own role. The
# URL is put together here so that the role's password stands in no pod spec (kubectl
# describe) and on no command line (ps).
set -eu
password=$(cat "$ORACLE_KEY_DIR/db-password")
# Read into the URL as it is: anything but these characters would need escaping.
case $password in
  '' | *[!A-Za-z0-9._~-]*)
    echo "run-member: the database password of $POD_NAME is empty or has characters a URL" \
      "would need escaped; make it with openssl rand -hex 24" >&2
    exit 1
    ;;
esac
# The role setup.sh made for this pod: its name with '_' for '-'.
role=$(echo "$POD_NAME" | tr - _)
ORACLE_DATABASE_URL="postgres://$role:$password@$DATABASE_HOSTS/$DATABASE_NAME"
export ORACLE_DATABASE_URL
exec oracle run
