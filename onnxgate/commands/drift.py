"""`onnxgate drift NAME [VERSION] --data FILE [--env ENV] [--json]`: compare a file of rows with the version's
reference statistics, with the same code and report as the gateway's GET /drift/{model}. Exit code 10 when the
status is "drift", so that CI can gate on it (0 for "ok" and "insufficient data")."""
from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from modelstore.errors import NotDeployed
from modelstore.layout import Store
from onnxgate.commands.common import add_json_argument, add_store_argument, non_negative_number, store_from
from onnxgate.errors import UsageError
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "drift", help="compare a file of rows with a version's reference statistics (PSI, KS, prediction drift)",
        description="Count the rows of FILE (CSV with a header, or .npy) into the version's reference bins and print "
                    "the drift report the gateway's GET /drift/{model} gives for the same rows. Exit code 10 when the "
                    "status is 'drift'; 0 for 'ok' and 'insufficient data'.")
    parser.add_argument("name")
    parser.add_argument("version", nargs="?", help="a version, or latest (default: what --env deploys, else latest)")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="rows: CSV with a header (feature columns named as the reference names them, or in the "
                             "model's input order) or .npy")
    parser.add_argument("--env", help="the environment: picks the deployed version when VERSION is not given")
    limits = parser.add_argument_group("thresholds (defaults: monitoring.drift.DriftThresholds)")
    limits.add_argument("--psi", type=non_negative_number, help="a feature drifts above this PSI (0.25)")
    limits.add_argument("--ks", type=non_negative_number, help="or above this KS statistic (0.1)")
    limits.add_argument("--drifted-share", type=non_negative_number,
                        help="status drift when at least this share of features drifted (0.3)")
    limits.add_argument("--min-rows", type=int, help="fewer rows: insufficient data (500)")
    limits.add_argument("--prediction-psi", type=non_negative_number, help="the predictions drift above this PSI "
                                                                           "(0.25)")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from governance.errors import DriftDetected
    from governance.offline_drift import drift_from_file
    from monitoring.drift import DriftThresholds

    given = {key: getattr(args, key) for key in ("psi", "ks", "drifted_share", "min_rows", "prediction_psi")
             if getattr(args, key) is not None}
    try:
        thresholds = DriftThresholds(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    if not Path(args.data).is_file():
        raise UsageError(f"--data {args.data}: no such file")
    store = store_from(args)
    version = _version(store, args.name, args.version, args.env)
    report = drift_from_file(store, args.name, version, Path(args.data), thresholds, environment=args.env)
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        _print(report)
    if report.status == "drift":
        raise DriftDetected(f"{args.name} {report.version}: {report.drifted_share:.0%} of the features drifted "
                            f"(threshold {thresholds.drifted_share:.0%})")
    return 0


def _version(store: Store, name: str, version: str | None, environment: str | None) -> str:
    if version is not None:
        return store.resolve_version(name, version)
    if environment is None:
        return store.latest_version(name)
    deployment = store.registry.read().state.deployment(name, environment)
    if deployment is None:
        store.list_versions(name)  # an unknown model is reported as such
        raise NotDeployed(f"{name} is not deployed to {environment}; name a VERSION")
    return deployment.version


def _print(report) -> None:
    where = f" in {report.environment}" if report.environment else ""
    share = "-" if report.drifted_share is None else f"{report.drifted_share:.0%}"
    print(f"{report.model} {report.version}{where}: {report.status} ({report.window_rows} rows, drifted features "
          f"{share}, thresholds psi {report.thresholds.psi}, ks {report.thresholds.ks}, share "
          f"{report.thresholds.drifted_share}, min rows {report.thresholds.min_rows})")
    print_table(("feature", "psi", "ks", "drifted", "non-finite"),
                [(f.name, _number(f.psi), _number(f.ks), "yes" if f.drifted else "no", f.non_finite)
                 for f in report.features])
    prediction = report.prediction
    if prediction.available:
        extra = "" if prediction.total_variation is None else f", total variation {prediction.total_variation:.4f}"
        print(f"predictions ({prediction.kind} of {prediction.output}, {prediction.rows} rows): psi "
              f"{_number(prediction.psi)}{extra}, drifted {'yes' if prediction.drifted else 'no'}")
    else:
        print(f"predictions: unavailable ({prediction.reason})")
    for note in report.notes:
        print(f"note: {note}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
