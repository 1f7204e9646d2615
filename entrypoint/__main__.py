"""`python -m entrypoint` is the same as the `patroni-citus-k8s` command."""

import sys

from entrypoint.cli import main

sys.exit(main())
