"""Hub side of Valeria JupyterHub: Keycloak login, Vault-driven identity, spawn plans."""
