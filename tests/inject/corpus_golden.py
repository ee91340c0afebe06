"""Rewrite the corpus's golden outputs (corpus/NAME.injected.yaml) after a deliberate
change to the mutation: ``python -m tests.inject.corpus_golden``; review the diff."""

from __future__ import annotations

from sidecar.inject.documents import inject_text
from tests.support.kubernetes import CORPUS, SETTINGS, corpus_names


def main() -> None:
    """Write every golden file."""
    for name in corpus_names():
        text = (CORPUS / f"{name}.yaml").read_text(encoding="utf-8")
        output, _ = inject_text(text, SETTINGS)
        (CORPUS / f"{name}.injected.yaml").write_text(output, encoding="utf-8")


if __name__ == "__main__":
    main()
