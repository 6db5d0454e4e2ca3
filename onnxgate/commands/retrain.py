"""`onnxgate retrain check|run|jobs|show|watch`: the retraining loop of retrain.toml (a thin shell over retrain/)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from onnxgate.commands.canary import duration
from onnxgate.commands.common import add_json_argument, add_store_argument, missing_govern_extra, store_from
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "retrain", help="retraining: check triggers, run a job, list jobs, watch (retrain.toml at the store root)",
        description="Retrain models as retrain.toml at the store root says: a job runs the training command, exports "
                    "its artifact to the next free version (parity, Node check), measures it against the "
                    "environment's champion on the holdout and starts a canary if it wins and passes the gates.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="which triggers fire now and why (changes nothing)")
    check.add_argument("name")
    run = actions.add_parser("run", help="run one job now (exit 9 rejected, 11 failed)")
    run.add_argument("name")
    run.add_argument("--trigger", default="manual", choices=("manual", "auto"),
                     help="manual (default) runs whatever the triggers say; auto runs only if a trigger fires now")
    jobs = actions.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("name", nargs="?")
    show = actions.add_parser("show", help="one job's record")
    show.add_argument("job")
    watch = actions.add_parser("watch", help="check every model on the interval and run jobs; SIGTERM stops it")
    watch.add_argument("--interval", type=duration, default=3600.0, metavar="DURATION",
                       help="time between checks (default 1h)")
    watch.add_argument("--once", action="store_true", help="check every model once, run what fires, and exit")
    for each in (check, run, jobs, show, watch):
        add_store_argument(each)
        add_json_argument(each)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        import croniter  # noqa: F401

        import governance.challenge  # noqa: F401
    except ImportError as exc:
        if exc.name == "croniter":
            from onnxgate.errors import UsageError

            raise UsageError("retrain needs the retrain extra (croniter is not installed): "
                             "pip install 'onnxgate[retrain]'") from None
        raise missing_govern_extra("retrain", exc) from None
    return {"check": _check, "run": _job, "jobs": _jobs, "show": _show, "watch": _watch}[args.action](args)


def _check(args: argparse.Namespace) -> int:
    from retrain.config import read_config
    from retrain.watch import check_model

    store = store_from(args)
    settings = read_config(store.root).model(args.name)
    result = check_model(store, args.name, settings, time.time())
    if args.json:
        print_json(result.as_json())
        return 0
    firing = result.firing
    if firing is not None:
        print(f"{args.name}: {firing.trigger} fires: a job would start")
    elif result.cooldown_until is not None:
        print(f"{args.name}: cooldown after job {result.last_job} until "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(result.cooldown_until))}: no job would start")
    elif result.canary is not None:
        print(f"{args.name}: a canary of {result.canary} is running: no job would start")
    else:
        print(f"{args.name}: no trigger fires")
    print_table(("trigger", "fires", "why"), [(t.trigger, "yes" if t.fires else "no", t.reason)
                                            for t in result.triggers] + [("manual", "yes", "always (retrain run)")])
    return 0


def _job(args: argparse.Namespace) -> int:
    from retrain.config import read_config
    from retrain.errors import JobFailed, JobRejected
    from retrain.job import JobContext, run_job
    from retrain.triggers import check, manual_trigger

    store = store_from(args)
    settings = read_config(store.root).model(args.name)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.trigger == "manual":
            record = run_job(JobContext(store, args.name, settings, stop=stop), lambda _: manual_trigger())
        else:
            record = run_job(JobContext(store, args.name, settings, stop=stop),
                             lambda last: check(store, args.name, settings, last, time.time()).firing)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if record is None:
        print(f"{args.name}: no trigger fires; no job was run")
        return 0
    _print_record(record, args.json)
    if record.status in ("failed", "abandoned"):
        raise JobFailed(f"job {record.id} {record.status}: {record.reason}")
    if record.status == "rejected":
        raise JobRejected(f"job {record.id} rejected: {record.reason}")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from retrain.records import JobStore

    records = JobStore(store_from(args).root).jobs(args.name)
    if args.json:
        print_json([record.model_dump(mode="json") for record in records])
        return 0
    print_table(("job", "model", "trigger", "status", "version", "started", "reason"),
                [(r.id, r.model, r.trigger.trigger, r.status, r.version or "-", r.history[0].time if r.history else "-",
                  (r.reason or "")[:80]) for r in records])
    return 0


def _show(args: argparse.Namespace) -> int:
    from retrain.records import JobStore

    _print_record(JobStore(store_from(args).root).read(args.job), args.json)
    return 0


def _print_record(record, as_json: bool) -> None:
    if as_json:
        print_json(record.model_dump(mode="json"))
        return
    print(f"job {record.id} of {record.model}: {record.status}" + (f" ({record.reason})" if record.reason else ""))
    print(f"  trigger: {record.trigger.trigger}: {record.trigger.reason}")
    for step in record.history:
        print(f"  {step.time}  {step.status}")
    if record.version:
        print(f"  version: {record.version}")
    if record.validation:
        champion, challenger = record.validation["champion"], record.validation["challenger"]
        metric = record.validation["metric"]
        print(f"  {metric}: challenger {challenger['version']} {challenger['metrics'].get(metric)}, champion "
              f"{champion['version'] or '-'} {(champion['metrics'] or {}).get(metric, '-')}")
        print(f"  validation sha256: {record.validation_sha256}")
    if record.decision:
        print(f"  decision: {record.decision['decision']}" + (f", {record.decision['action']}"
                                                              if record.decision.get("action") else ""))
    if record.signal:
        print(f"  SIGTERM: {record.signal}")
    print(f"  log: {record.log}")


def _watch(args: argparse.Namespace) -> int:
    from retrain.watch import watch

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ran = watch(store_from(args), interval_s=args.interval, once=args.once, stop=stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print_json([record.model_dump(mode="json") for record in ran])
    return 0
