"""Pure X.509 helpers shared by the boot pipeline, the certificate tool and the audit: load, names, keys, chains.

Nothing here imports a product package (boot, certs, audit); tests/unit/test_layering.py keeps it so.
"""
