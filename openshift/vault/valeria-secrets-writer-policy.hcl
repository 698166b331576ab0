# Vault policy for whoever writes users' secrets with put-user-secrets.sh (an admin, or your
# identity management's service): write the per-user S3 keys and POSIX identity, read nothing.
# For the default names (VAULT_KV_MOUNT=valeria-kv, VAULT_USERS_PREFIX=valeria/users).
#   vault policy write valeria-secrets-writer openshift/vault/valeria-secrets-writer-policy.hcl
# Tested: tests/test_vault_shared.py runs put-user-secrets.sh with a token holding only this policy.
path "valeria-kv/data/valeria/users/*" {
  capabilities = ["create", "update"]
}
