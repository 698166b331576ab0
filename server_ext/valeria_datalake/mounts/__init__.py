"""The mounts of the file browser: one interface (``base.Mount``), a POSIX and a bucket kind."""
