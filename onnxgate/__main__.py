"""Entry point: build the parser from one module per command, run it, turn errors into one line and an exit code.

This is the only place where exceptions become exit codes.
"""
from __future__ import annotations

import argparse
import sys

from governance.errors import ChallengeError, ChallengerLost, DriftDetected, HoldoutError, NotEvaluable
from modelstore.errors import (
    ChangeRefused,
    CorruptRegistry,
    DuplicateVersion,
    IntegrityError,
    InvalidEntry,
    InvalidName,
    InvalidPolicy,
    ModelNotFound,
    NotDeployed,
    StoreError,
    TargetNotEmpty,
    VersionNotFound,
)
from onnxgate.commands import (
    approve,
    audit,
    canary,
    capture,
    challenge,
    deploy,
    drift,
    evaluate,
    events,
    export,
    history,
    import_package,
    keygen,
    listing,
    package,
    policy,
    promote,
    quality,
    retrain,
    rollback,
    serve,
    shadow,
    show,
    snapshot,
    status,
    store,
    token,
    verify,
)
from onnxgate.errors import UsageError
from retrain.errors import InvalidRetrainConfig, JobBusy, JobFailed, JobNotFound, JobRejected
from webhooks.errors import InvalidEventsConfig, SenderBusy

COMMANDS = (export, package, verify, import_package, listing, show, history, audit, keygen, deploy, status, serve,
            canary, promote, rollback, shadow, evaluate, challenge, approve, snapshot, policy, capture, quality, drift,
            retrain, events, token, store)

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, 2),
    (ModelNotFound, 3),
    (VersionNotFound, 3),
    (DuplicateVersion, 4),
    (CorruptRegistry, 5),
    (InvalidEntry, 5),
    (IntegrityError, 6),
    (InvalidName, 2),
    (NotDeployed, 3),
    (HoldoutError, 2),
    (NotEvaluable, 2),
    (ChallengeError, 2),
    (ChallengerLost, 9),
    (DriftDetected, 10),
    (ChangeRefused, 7),
    (InvalidPolicy, 8),
    (JobRejected, 9),
    (JobFailed, 11),
    (InvalidRetrainConfig, 12),
    (JobBusy, 13),
    (JobNotFound, 3),
    (InvalidEventsConfig, 14),
    (SenderBusy, 13),
    (TargetNotEmpty, 15),  # a conflict, like HTTP 409: the target holds other content
    (StoreError, 1),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxgate",
        description="Export, package, deploy and serve ONNX models. Loading a pickle or joblib file runs code from it: "
        "export only files you trust.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def exit_code_for(error: BaseException) -> int:
    for error_type, code in EXIT_CODES:
        if isinstance(error, error_type):
            return code
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (StoreError, UsageError) as error:
        print(f"onnxgate {args.command}: error: {error}", file=sys.stderr)
        return exit_code_for(error)
    except OSError as error:  # a file the store did not expect to fail on: still one line, never a traceback
        print(f"onnxgate {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
