"""The C extensions: the event inspector's hot path (sidecar/events/_scan.c), the
merge fast path's run prover (sidecar/merge/_runs.c) and the protobuf scrape's label
encoder (sidecar/ingest/_pblabels.c).

Everything else about the package is in pyproject.toml; setuptools reads both. Building
them needs a C compiler and the Python headers (the Makefile installs them on Debian when
missing; the image's build stage has them). Both are optional: without a compiler (or
with ``CC=/bin/false``) setuptools warns ``building extension ... failed``, the install
still succeeds, and the sidecar runs the pure-Python paths instead (sidecar/extensions.py;
``causality-sidecar version`` and ``sidecar_build_info`` say ``extensions: python``).
setup.py rather than pyproject's ``[tool.setuptools] ext-modules``, which setuptools
still calls experimental.
"""

from setuptools import Extension, setup

FLAGS = [
    "-O2",
    "-Wall",
    "-Wextra",
    "-Wno-missing-field-initializers",
    "-Wno-unused-parameter",
]

EXTENSIONS = [
    ("sidecar.events._scan", "sidecar/events/_scan.c"),
    ("sidecar.merge._runs", "sidecar/merge/_runs.c"),
    ("sidecar.ingest._pblabels", "sidecar/ingest/_pblabels.c"),
]

setup(
    ext_modules=[
        Extension(name, sources=[source], extra_compile_args=FLAGS, optional=True)
        for name, source in EXTENSIONS
    ]
)
