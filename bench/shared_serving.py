"""Serving from the shared backends costs nothing per request: the bench's store copied into a real PostgreSQL and a
real S3-compatible server (moto's standalone server, the tests' helpers start both), then paired.py's comparison of
the same gateway serving the file store (a) and the shared backends (b). Models are served from memory either way;
this shows that following the registry by LISTEN/NOTIFY and the artifacts by a slow listing poll adds nothing to a
request.

    .venv/bin/python -m bench.shared_serving --repeats 4
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench import paired
from bench.make_models import build
from modelstore.layout import Store, open_store
from modelstore.migrate import migrate
from tests.postgres_server import postgres_server
from tests.s3_server import running_s3_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxgate-shared-") as tmp:
        models = build(Path(tmp) / "models", None)
        with postgres_server() as pg, running_s3_server(Path(tmp) / "moto.log") as s3:
            os.environ.update(s3.environment)
            registry_url, artifacts_url = pg.create_database(), f"s3://{s3.new_bucket()}/models"
            target = open_store(Path(tmp) / "target", registry_url=registry_url, artifacts_url=artifacts_url)
            try:
                print(migrate(Store(models.store_root), target), flush=True)
            finally:
                target.close()
            shared = {**s3.environment, "ONNXGATE_REGISTRY_URL": registry_url, "ONNXGATE_ARTIFACTS_URL": artifacts_url}
            env_b = [item for key, value in shared.items() for item in ("--env-b", f"{key}={value}")]
            return paired.main(["gateway /predict", "gateway /predict", "--repeats", str(args.repeats),
                                "--duration", str(args.duration), *env_b])


if __name__ == "__main__":
    sys.exit(main())
