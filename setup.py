"""The C extensions: the event inspector's hot path (sidecar/events/_scan.c) and the
merge fast path's run prover (sidecar/merge/_runs.c).

Everything else about the package is in pyproject.toml; setuptools reads both. Building
needs a C compiler and the Python headers (the Makefile installs them on Debian when
missing; the image's build stage has them). setup.py rather than pyproject's
``[tool.setuptools] ext-modules``, which setuptools still calls experimental.
"""

from setuptools import Extension, setup

FLAGS = [
    "-O2",
    "-Wall",
    "-Wextra",
    "-Wno-missing-field-initializers",
    "-Wno-unused-parameter",
]

setup(
    ext_modules=[
        Extension(
            "sidecar.events._scan", sources=["sidecar/events/_scan.c"], extra_compile_args=FLAGS
        ),
        Extension(
            "sidecar.merge._runs", sources=["sidecar/merge/_runs.c"], extra_compile_args=FLAGS
        ),
    ]
)
