"""atheris target: arbitrary bytes as an OTLP/HTTP JSON body (``make fuzz``)."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["sidecar", "pipeline"]):
    from pipeline import run_body

    from sidecar.ingest.codec import Encoding


def test_one_input(data: bytes) -> None:
    """Refused (400) or fully ingested and rendered; nothing else."""
    run_body(data, Encoding.JSON)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
