"""``python -m sidecar.demo [HOST:PORT]``: the demo app alone, as its own process."""

from sidecar.demo.app import main

main()
