#!/bin/sh
# The init container of every node's pod: copies this pod's own files out of Secrets that hold
# every node's into the in-memory volume the node mounts, so that the running container never
# sees another node's key. Kubernetes cannot give each pod of a StatefulSet a Secret of its own.
#
#   pick-key.sh FROM=TO...   e.g. /secrets/keys/oracle-member-0.json=/keys/oracle-member-0.json
set -eu
for pair in "$@"; do
  from=${pair%%=*}
  to=${pair#*=}
  if [ ! -s "$from" ]; then
    echo "pick-key: no $(basename "$from") in the Secret mounted at $(dirname "$from"):" \
      "pod $POD_NAME has no key there (docs/kubernetes.md#keys)" >&2
    exit 1
  fi
  # 0400: the node warns about a key file others may read.
  cp "$from" "$to"
  chmod 0400 "$to"
done
