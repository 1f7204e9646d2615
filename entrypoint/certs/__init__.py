"""The certificate tool (`certs generate|inspect`): names a cluster needs, issuing, manifests, files, inspection."""
