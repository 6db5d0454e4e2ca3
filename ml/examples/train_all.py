"""Train the three example models into DIR/<model name>/ (used by `make demo`)."""
from __future__ import annotations

from ml.examples import intent_classifier, regressor, tabular_classifier
from ml.examples.artefacts import output_dir


def main() -> None:
    out = output_dir(__doc__)
    for example in (tabular_classifier, intent_classifier, regressor):
        target = out / example.NAME
        target.mkdir(parents=True, exist_ok=True)
        print(example.save(example.train(), target))


if __name__ == "__main__":
    main()
