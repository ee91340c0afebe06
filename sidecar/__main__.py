"""`python -m sidecar` is the same program as `causality-sidecar`."""

from sidecar.cli import main

raise SystemExit(main())
