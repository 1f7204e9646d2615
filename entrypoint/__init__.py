"""patroni-citus-k8s: turn a pod's TLS settings into a verified Patroni configuration."""

__version__ = "0.1.0"
