"""Run inside a fresh network namespace: start the sidecar with default listen addresses.

Usage (as root): ``unshare --net python tests/adversarial/netns_probe.py``. Brings ``lo``
up, runs ``causality-sidecar run`` with no listen flags (so the defaults of design §4 are
what binds), waits for ``/readyz`` on the default admin port, prints the TCP listeners of
the process as JSON (``[[address, port], ...]`` from /proc/net/tcp{,6}), and stops it.
Its own namespace means the fixed default ports collide with nothing else on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

LISTEN = "0A"


def _listeners(pid: int) -> list[tuple[str, int]]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                address, port = fields[1].split(":")
                out.append((_address(address, width), int(port, 16)))
    return sorted(out)


def _address(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # little-endian words
    data = b"".join(words)
    if width == 8:
        return ".".join(str(b) for b in data)
    import ipaddress

    return str(ipaddress.IPv6Address(data))


def main() -> int:
    """Start, probe, stop."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "run", "--upstream", "http://127.0.0.1:1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9464/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            return 3
        print(json.dumps(_listeners(proc.pid)))
        return 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
