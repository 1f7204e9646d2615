"""The boot pipeline (`run`, `render`, `check`, `probe`): environment and Secret in, Patroni exec'd with staged TLS."""
