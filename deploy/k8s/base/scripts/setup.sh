#!/bin/sh
# The setup Job, with the admin credential (ORACLE_DATABASE_URL, from Secret oracle-db-admin):
# migrate the schema, make every address in members.txt a member, and give each member its own
# least-privilege database role, whose password is that member's entry in Secret oracle-member-db.
# Every step is idempotent: run it again after adding a member.
#
# members.txt has a line per member, its address and its pod's name after a '#'; the same file
# is the bootstrap nodes' --trusted-signers, which reads the address and skips the comment:
#   0x92B4C756274bb4A37Ed015D7De11B79172F70926  # oracle-member-0
set -eu
oracle migrate
while read -r address hash name rest; do
  case $address in '' | '#'*) continue ;; esac
  if [ "$hash" != '#' ] || [ -z "$name" ] || [ -n "$rest" ]; then
    echo "setup: $MEMBERS: write '$address  # <pod name>'" >&2
    exit 1
  fi
  oracle signers add "$address" --label "$name"
  # The role scripts/run-member.sh logs in as: the pod's name with '_' for '-'.
  oracle db-role --role "$(echo "$name" | tr - _)" --node "$address" \
    --password-file "$DB_PASSWORDS/$name"
done <"$MEMBERS"
oracle signers list
