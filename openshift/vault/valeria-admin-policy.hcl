# Vault policy for the admin who runs configure-vault.sh, and nothing more (least privilege).
# For the default names (VAULT_KV_MOUNT=valeria-kv, VAULT_AUTH_MOUNT=valeria-jwt,
# VAULT_POLICY=valeria-user); change them here too if you change those. Install it once, as a
# Vault operator:
#   vault policy write valeria-admin openshift/vault/valeria-admin-policy.hcl
#   vault token create -policy=valeria-admin -ttl=1h      # the token configure-vault.sh runs with
# Tested: tests/test_vault_shared.py runs configure-vault.sh with a token holding only this policy.

# the KV v2 mount of the users' secrets: look, enable it (no other mount)
path "sys/mounts/valeria-kv" {
  capabilities = ["create", "read", "update"]
}

# the JWT auth mount: look, enable it (Vault requires sudo on sys/auth/<path>)
path "sys/auth/valeria-jwt" {
  capabilities = ["create", "read", "update", "sudo"]
}

# its configuration (trust the Keycloak realm) and the hub's role
path "auth/valeria-jwt/config" {
  capabilities = ["create", "read", "update"]
}
path "auth/valeria-jwt/role/*" {
  capabilities = ["create", "read", "update"]
}

# the one templated policy of the users
path "sys/policies/acl/valeria-user" {
  capabilities = ["create", "read", "update"]
}
