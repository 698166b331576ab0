"""Notebook side of Valeria JupyterHub: home, scratch and every datalake bucket in one file browser."""
