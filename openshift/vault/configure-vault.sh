#!/usr/bin/env bash
# Configure Vault (or OpenBao) for Valeria JupyterHub. Run by a Vault admin (a token allowed to
# manage auth methods, mounts and policies in VAULT_TOKEN, VAULT_ADDR set), and by `make demo` and
# the tests against a local OpenBao, so that what this file says is tested. Idempotent.
#
# What it sets up:
#   1. KV v2 at $VAULT_KV_MOUNT (default `secret`), holding per user
#        <mount>/valeria/users/<subject>/s3     access_key, secret_key
#        <mount>/valeria/users/<subject>/posix  uid, gid, groups (comma-separated gids)
#      where <subject> is the user's Keycloak `sub` (the user's ID in the admin console), which
#      the user cannot change, unlike the username
#      (the hub reads them at VALERIA_VAULT_S3_PATH / VALERIA_VAULT_IDENTITY_PATH, whose defaults
#      are these paths; put-user-secrets.sh writes them);
#   2. JWT auth at $VAULT_AUTH_MOUNT (default `jwt`) trusting the Keycloak realm through OIDC
#      discovery: the hub logs in with the user's own access token, so Vault decides, not the hub;
#   3. a role (default `jupyterhub`) accepting only ACCESS tokens issued to the hub's client
#      (`aud` and `azp` = the client, `typ` = Bearer: an ID token, which the logout redirect shows
#      in the browser's URL, is refused) and naming the Vault identity after the token's `sub`;
#   4. ONE templated policy: a user may read only the secrets under their own subject.
#
# Settings (environment):
#   OIDC_DISCOVERY_URL   realm URL, e.g. https://sso.example.org/realms/valeria (required)
#   OIDC_DISCOVERY_CA_PEM_FILE  CA bundle of Keycloak's TLS certificate (optional)
#   JWT_BOUND_AUDIENCE   `aud` the access tokens must carry (Keycloak: an audience mapper adding
#                        the hub's client id) (default: jupyterhub)
#   JWT_BOUND_ISSUER     expected `iss` (default: OIDC_DISCOVERY_URL)
#   JWT_BOUND_AZP        `azp` the access tokens must carry: the client they were issued to
#                        (default: JWT_BOUND_AUDIENCE)
#   VAULT_USER_CLAIM     the claim naming the Vault identity and the KV path component (default:
#                        sub). `preferred_username` only for realms where users can never change or
#                        re-use user names (then set VALERIA_VAULT_*_PATH to {username} paths)
#   VAULT_AUTH_MOUNT     (default: jwt)          VAULT_ROLE   (default: jupyterhub)
#   VAULT_KV_MOUNT       (default: secret)       VAULT_USERS_PREFIX (default: valeria/users)
#   VAULT_POLICY         (default: valeria-user) VAULT_TOKEN_TTL (default: 15m)
#   VAULT_CLI            the CLI binary (default: vault; `bao` has the same syntax)
set -euo pipefail

VAULT="${VAULT_CLI:-vault}"
: "${OIDC_DISCOVERY_URL:?set OIDC_DISCOVERY_URL to the realm URL, e.g. https://sso.example.org/realms/valeria}"
AUDIENCE="${JWT_BOUND_AUDIENCE:-jupyterhub}"
ISSUER="${JWT_BOUND_ISSUER:-$OIDC_DISCOVERY_URL}"
AZP="${JWT_BOUND_AZP:-$AUDIENCE}"
USER_CLAIM="${VAULT_USER_CLAIM:-sub}"
case "$USER_CLAIM" in
  sub|preferred_username) ;;
  *) echo "configure-vault: VAULT_USER_CLAIM must be sub or preferred_username" >&2; exit 2 ;;
esac
for value in "$AUDIENCE" "$AZP"; do
  case "$value" in ''|*[!A-Za-z0-9._:/-]*) echo "configure-vault: bad client id '$value'" >&2; exit 2 ;; esac
done
AUTH_MOUNT="${VAULT_AUTH_MOUNT:-jwt}"
ROLE="${VAULT_ROLE:-jupyterhub}"
KV_MOUNT="${VAULT_KV_MOUNT:-secret}"
PREFIX="${VAULT_USERS_PREFIX:-valeria/users}"
POLICY="${VAULT_POLICY:-valeria-user}"
TOKEN_TTL="${VAULT_TOKEN_TTL:-15m}"

say() { echo "configure-vault: $*"; }

# 1. KV v2
if "$VAULT" read -format=json "sys/mounts/${KV_MOUNT}" >/dev/null 2>&1; then
  say "KV mount ${KV_MOUNT}/ exists; making sure it is versioned (v2)"
  "$VAULT" kv enable-versioning "${KV_MOUNT}" >/dev/null
else
  say "enabling KV v2 at ${KV_MOUNT}/"
  "$VAULT" secrets enable -path="${KV_MOUNT}" -version=2 kv >/dev/null
fi

# 2. JWT auth trusting the realm
if ! "$VAULT" read "sys/auth/${AUTH_MOUNT}" >/dev/null 2>&1; then
  say "enabling JWT auth at auth/${AUTH_MOUNT}"
  "$VAULT" auth enable -path="${AUTH_MOUNT}" jwt >/dev/null
fi
config_args=("oidc_discovery_url=${OIDC_DISCOVERY_URL}" "bound_issuer=${ISSUER}")
if [ -n "${OIDC_DISCOVERY_CA_PEM_FILE:-}" ]; then
  config_args+=("oidc_discovery_ca_pem=@${OIDC_DISCOVERY_CA_PEM_FILE}")
fi
say "trusting ${OIDC_DISCOVERY_URL} (JWKS by OIDC discovery)"
"$VAULT" write "auth/${AUTH_MOUNT}/config" "${config_args[@]}" >/dev/null

# 3. the role the hub logs in with
say "role ${ROLE}: access tokens of ${AZP} (aud ${AUDIENCE}, typ Bearer), identity = ${USER_CLAIM}, policy ${POLICY}"
# JSON on stdin: bound_claims is a map
"$VAULT" write "auth/${AUTH_MOUNT}/role/${ROLE}" - >/dev/null <<ROLE_JSON
{
  "role_type": "jwt",
  "bound_audiences": ["${AUDIENCE}"],
  "bound_claims_type": "string",
  "bound_claims": {"typ": "Bearer", "azp": "${AZP}"},
  "user_claim": "${USER_CLAIM}",
  "groups_claim": "groups",
  "token_policies": ["${POLICY}"],
  "token_ttl": "${TOKEN_TTL}",
  "token_max_ttl": "${TOKEN_TTL}"
}
ROLE_JSON

# 4. one templated policy: each user reads only their own secrets
ACCESSOR="$("$VAULT" read -field=accessor "sys/auth/${AUTH_MOUNT}")"
say "policy ${POLICY}: read ${KV_MOUNT}/data/${PREFIX}/<own ${USER_CLAIM}>/*"
"$VAULT" policy write "${POLICY}" - >/dev/null <<POLICY_HCL
# Valeria JupyterHub: a user reads only their own S3 keys and POSIX identity.
# The name is the JWT login's alias, i.e. the token's ${USER_CLAIM}.
path "${KV_MOUNT}/data/${PREFIX}/{{identity.entity.aliases.${ACCESSOR}.name}}/*" {
  capabilities = ["read"]
}
POLICY_HCL
say "done"
