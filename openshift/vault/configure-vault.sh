#!/usr/bin/env bash
# Configure Vault (or OpenBao) for Valeria JupyterHub. Run by a Vault admin (a token allowed to
# manage auth methods, mounts and policies in VAULT_TOKEN, VAULT_ADDR set), and by `make demo` and
# the tests against a local OpenBao, so that what this file says is tested. Idempotent.
#
# It changes only what it owns. On a shared (university) Vault, other teams' mounts stay as they
# are: by default it creates its own mounts, `valeria-kv/` and `auth/valeria-jwt/`, marked with a
# description; an existing mount it did not create is used only if it is already what Valeria
# needs (a KV v2 mount), and is never upgraded or reconfigured unless you pass --force. It prints
# what it will change before changing it; --plan prints that and stops.
#
#   configure-vault.sh [--plan] [--force]
#
# What it sets up:
#   1. KV v2 at $VAULT_KV_MOUNT (default `valeria-kv`), holding per user
#        <mount>/valeria/users/<subject>/s3     access_key, secret_key
#        <mount>/valeria/users/<subject>/posix  uid, gid, groups (comma-separated gids)
#      where <subject> is the user's Keycloak `sub` (the user's ID in the admin console), which
#      the user cannot change, unlike the username
#      (the hub reads them at VALERIA_VAULT_S3_PATH / VALERIA_VAULT_IDENTITY_PATH, whose defaults
#      are these paths; put-user-secrets.sh writes them);
#   2. JWT auth at $VAULT_AUTH_MOUNT (default `valeria-jwt`) trusting the Keycloak realm through
#      OIDC discovery: the hub logs in with the user's own access token, so Vault decides, not the hub;
#   3. a role (default `jupyterhub`) accepting only ACCESS tokens issued to the hub's client
#      (`aud` and `azp` = the client, `typ` = Bearer: an ID token, which the logout redirect shows
#      in the browser's URL, is refused) and naming the Vault identity after the token's `sub`;
#   4. ONE templated policy: a user may read only the secrets under their own subject.
# The token it runs with needs no more than openshift/vault/valeria-admin-policy.hcl.
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
#   VAULT_AUTH_MOUNT     (default: valeria-jwt)  VAULT_ROLE   (default: jupyterhub)
#   VAULT_KV_MOUNT       (default: valeria-kv)   VAULT_USERS_PREFIX (default: valeria/users)
#   VAULT_POLICY         (default: valeria-user) VAULT_TOKEN_TTL (default: 15m)
#   VAULT_CLI            the CLI binary (default: vault; `bao` has the same syntax)
set -euo pipefail

PLAN=false FORCE=false
for arg in "$@"; do
  case "$arg" in
    --plan) PLAN=true ;;
    --force) FORCE=true ;;
    *) echo "usage: $0 [--plan] [--force]" >&2; exit 2 ;;
  esac
done

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
AUTH_MOUNT="${VAULT_AUTH_MOUNT:-valeria-jwt}"
ROLE="${VAULT_ROLE:-jupyterhub}"
KV_MOUNT="${VAULT_KV_MOUNT:-valeria-kv}"
PREFIX="${VAULT_USERS_PREFIX:-valeria/users}"
POLICY="${VAULT_POLICY:-valeria-user}"
TOKEN_TTL="${VAULT_TOKEN_TTL:-15m}"
# the description marking the mounts this script created (and may therefore reconfigure)
MARK="Valeria JupyterHub (configure-vault.sh)"

say() { echo "configure-vault: $*"; }
refuse() {
  echo "configure-vault: REFUSED: $*" >&2
  echo "configure-vault: nothing was changed; choose another mount (VAULT_KV_MOUNT / VAULT_AUTH_MOUNT) or pass --force" >&2
  exit 3
}

# The mount's JSON description; empty if there is no such mount; stops on any other error
# (e.g. permission denied: guessing "absent" would re-enable over someone's mount).
mount_info() {
  local out
  if out="$("$VAULT" read -format=json "$1" 2>&1)"; then
    printf '%s' "$out"
    return
  fi
  case "$out" in *"No secret engine mount at"* | *"No auth engine at"*) return ;; esac
  echo "configure-vault: cannot read $1 (does the token have valeria-admin-policy.hcl?):" >&2
  echo "$out" >&2
  exit 1
}
field() { grep -o "\"$1\": \"[^\"]*\"" | head -n1 | sed 's/.*: "\(.*\)"/\1/'; }

# --- look before changing anything -----------------------------------------------------------
kv_info="$(mount_info "sys/mounts/${KV_MOUNT}")"
kv_action=none
if [ -z "$kv_info" ]; then
  kv_action=enable
  say "will enable KV v2 at ${KV_MOUNT}/ (a new mount, marked '${MARK}')"
elif [ "$(field type <<<"$kv_info")" != kv ]; then
  refuse "${KV_MOUNT}/ is a $(field type <<<"$kv_info") mount, not KV"
elif [ "$(field version <<<"$kv_info")" = 2 ]; then
  say "KV mount ${KV_MOUNT}/ exists and is already v2: using it unchanged"
elif [ "$(field description <<<"$kv_info")" = "$MARK" ] || $FORCE; then
  kv_action=upgrade
  say "will upgrade KV mount ${KV_MOUNT}/ from v1 to v2 (its v1 paths and policies stop working)"
else
  refuse "${KV_MOUNT}/ is a KV v1 mount this script did not create: upgrading it to v2 would break its users' paths and policies"
fi

auth_info="$(mount_info "sys/auth/${AUTH_MOUNT}")"
if [ -z "$auth_info" ]; then
  auth_action=enable
  say "will enable JWT auth at auth/${AUTH_MOUNT} (a new mount, marked '${MARK}')"
elif [ "$(field type <<<"$auth_info")" != jwt ]; then
  refuse "auth/${AUTH_MOUNT} is a $(field type <<<"$auth_info") auth method, not JWT"
elif [ "$(field description <<<"$auth_info")" = "$MARK" ] || $FORCE; then
  auth_action=configure
else
  refuse "auth/${AUTH_MOUNT} is a JWT mount this script did not create (another team's, e.g. CI): its config would be overwritten"
fi
say "will set auth/${AUTH_MOUNT}/config to trust ${OIDC_DISCOVERY_URL} (issuer ${ISSUER})"
say "will write role auth/${AUTH_MOUNT}/role/${ROLE} (audience ${AUDIENCE}) and policy ${POLICY}"
if existing="$("$VAULT" policy read "${POLICY}" 2>/dev/null)" && [ -n "$existing" ] &&
  ! grep -q '^# Valeria JupyterHub' <<<"$existing" && ! $FORCE; then
  refuse "a policy named ${POLICY} exists and was not written by this script (set VAULT_POLICY)"
fi
if $PLAN; then
  say "plan only (--plan): nothing changed"
  exit 0
fi

# 1. KV v2
case "$kv_action" in
  enable) "$VAULT" secrets enable -path="${KV_MOUNT}" -version=2 -description="${MARK}" kv >/dev/null ;;
  upgrade) "$VAULT" kv enable-versioning "${KV_MOUNT}" >/dev/null ;;
esac

# 2. JWT auth trusting the realm
if [ "$auth_action" = enable ]; then
  "$VAULT" auth enable -path="${AUTH_MOUNT}" -description="${MARK}" jwt >/dev/null
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
