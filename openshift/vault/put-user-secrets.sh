#!/usr/bin/env bash
# Store one user's S3 keys and POSIX identity where the hub reads them (see configure-vault.sh).
#
#   S3_ACCESS_KEY=<key> put-user-secrets.sh <subject> <uid> <gid> [<gid>,<gid>...]  < secret-key
#
# <subject> is the user's Keycloak `sub` (Users -> the user -> ID), the name of their Vault identity
# (configure-vault.sh, VAULT_USER_CLAIM=sub); the username only if Vault was configured with
# VAULT_USER_CLAIM=preferred_username.
#
# The S3 secret key is read from stdin (never from the command line, where `ps` would show it).
# Settings: VAULT_ADDR, VAULT_TOKEN (a token allowed to write the users' secrets), VAULT_KV_MOUNT
# (default valeria-kv), VAULT_USERS_PREFIX (default valeria/users), VAULT_CLI (default vault).
set -euo pipefail

VAULT="${VAULT_CLI:-vault}"
KV_MOUNT="${VAULT_KV_MOUNT:-valeria-kv}"
PREFIX="${VAULT_USERS_PREFIX:-valeria/users}"

if [ $# -lt 3 ]; then
  echo "usage: S3_ACCESS_KEY=<key> $0 <subject> <uid> <gid> [groups] < secret-key" >&2
  exit 2
fi
user="$1" uid="$2" gid="$3" groups="${4:-$3}"
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY}"
case "$user" in
  ''|*/*|*..*|*[!A-Za-z0-9._@:-]*) echo "put-user-secrets: refusing subject '$user'" >&2; exit 2 ;;
esac
for n in "$uid" "$gid" ${groups//,/ }; do
  case "$n" in ''|*[!0-9]*) echo "put-user-secrets: '$n' is not a numeric id" >&2; exit 2 ;; esac
  if [ "$n" -eq 0 ]; then echo "put-user-secrets: id 0 (root) is not allowed" >&2; exit 2; fi
done

# one line from stdin, without its newline; piped on so it never becomes an argument
IFS= read -r secret_key || true
if [ -z "$secret_key" ]; then echo "put-user-secrets: no S3 secret key on stdin" >&2; exit 2; fi
printf '%s' "$secret_key" |
  "$VAULT" kv put -mount="${KV_MOUNT}" "${PREFIX}/${user}/s3" access_key="${S3_ACCESS_KEY}" secret_key=- >/dev/null
unset secret_key
"$VAULT" kv put -mount="${KV_MOUNT}" "${PREFIX}/${user}/posix" uid="${uid}" gid="${gid}" groups="${groups}" >/dev/null
echo "put-user-secrets: stored ${KV_MOUNT}/${PREFIX}/${user}/{s3,posix}"
