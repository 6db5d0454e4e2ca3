"""Adaptive batching, where it pays and where it does not: batch-1 requests at 1, 16 and 64 connections on the
logistic regression, the 100-tree forest, a wide MLP and a text model, each served by `onnxgate serve` with batching
off and with it on (ONNXGATE_BATCHING), then a paired one-connection comparison of CPU per request (paired.py's way).

Both gateways run at once, pinned to core 0, on the same store; wrk on core 1 loads one at a time, in an order that
rotates per repetition. Every (model, connections, batching) cell is `--warmup` + `--duration` seconds; the table
gives medians over `--repeats` repetitions.

    wide MLP   X float32[batch, 256] -> 3 dense ReLU layers of 1024 -> 10 scores (9 MB of weights: a one-row run
               reads them all for one row, which is what batching amortizes)
    text       a word-level tokenizer (32 tokens) -> 256-d embeddings averaged over the real tokens -> 2 dense ReLU
               layers of 2048 -> 8 intents (a fastText-style classifier with a wide head)

Run (repo root): .venv/bin/python -m bench.batching [--repeats 3 --duration 4 --warmup 1] [--paired-repeats 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from bench.answers import lua_body, post
from bench.loadgen import LoadSpec, require_wrk, run_wrk
from bench.make_models import CHANGE, ENVIRONMENT, VERSION, build_onnx_store
from bench.paired import Side, cpu_us_per_request
from bench.servers import Endpoint, Target, free_port, running
from modelstore.deployments import deploy
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, NodeCompatibility, ParityResult, ReferenceStats, TensorSpec, TokenizerInfo
from modelstore.writer import publish

MODELS = ("lr", "rf", "mlp", "text")
CONNECTIONS = (1, 16, 64)
BATCHING_ON = {"enabled": True, "max_batch_size": 32, "max_queue_delay_ms": 0}
OPSET = 17
MLP_FEATURES, MLP_WIDTH, MLP_LAYERS, MLP_OUTPUTS = 256, 1024, 3, 10
TEXT_LENGTH, TEXT_DIM, TEXT_WIDTH, TEXT_INTENTS = 32, 256, 2048, 8
WORDS = (
    "where is my order how long does delivery take can you tell me the price please thanks what time do you open is "
    "there a vegan option which payment methods accept refund cancel subscription account password help"
)
BODIES = {
    "lr": None,  # bench/wrk/predict.lua's row
    "rf": None,
    "mlp": {"inputs": [[round(float(v), 4) for v in np.random.default_rng(1).normal(size=MLP_FEATURES)]]},
    "text": {"text": ["hello, where is my order? it has been a week, can you tell me how long delivery takes please"]},
}


# -- the two models this benchmark adds to make_models' store ------------------------------------------------------


def dense_layers(rng: np.random.Generator, source: str, size: int, width: int, layers: int) -> tuple[list, list, str]:
    nodes, weights = [], []
    for layer in range(layers):
        weights.append(numpy_helper.from_array((rng.normal(size=(size, width)) / np.sqrt(size)).astype(np.float32), f"W{layer}"))
        nodes += [
            helper.make_node("MatMul", [source, f"W{layer}"], [f"m{layer}"]),
            helper.make_node("Relu", [f"m{layer}"], [f"h{layer}"]),
        ]
        source, size = f"h{layer}", width
    return nodes, weights, source


def onnx_bytes(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bench.batching")
    model.ir_version = 9
    return model.SerializeToString()


def metadata(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], **fields: object) -> ModelMetadata:
    return ModelMetadata(
        name=name, version=VERSION, framework="onnx", framework_version=onnx.__version__, opset=OPSET,
        inputs=inputs, outputs=outputs, model_sha256="", model_size=0,
        parity=ParityResult(passed=True, rows=0, synthetic_rows=True, tolerance=0.0, reference="none (benchmark model)"),
        node_compatibility=NodeCompatibility(compatible=True, opset=OPSET, max_opset=OPSET),
        reference_stats=ReferenceStats(available=False, reason="benchmark model"), source="bench/batching.py", **fields,
    )  # fmt: skip


def publish_mlp(store: Store) -> None:
    rng = np.random.default_rng(7)
    nodes, weights, hidden = dense_layers(rng, "X", MLP_FEATURES, MLP_WIDTH, MLP_LAYERS)
    head = numpy_helper.from_array((rng.normal(size=(MLP_WIDTH, MLP_OUTPUTS)) / 32).astype(np.float32), "head")
    graph = helper.make_graph(
        [*nodes, helper.make_node("MatMul", [hidden, "head"], ["scores"])], "mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", MLP_FEATURES])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", MLP_OUTPUTS])], initializer=[*weights, head],
    )  # fmt: skip
    described = metadata(
        "mlp", [TensorSpec(name="X", dtype="float32", shape=["batch", MLP_FEATURES])],
        [TensorSpec(name="scores", dtype="float32", shape=["batch", MLP_OUTPUTS])], task="regression",
    )  # fmt: skip
    publish(store, described, onnx_bytes(graph), change=CHANGE, force=True)


def text_tokenizer() -> bytes:
    vocab = ["[PAD]", "[UNK]", *dict.fromkeys(WORDS.split(" "))]
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.enable_truncation(max_length=TEXT_LENGTH)
    tokenizer.enable_padding(length=TEXT_LENGTH, pad_id=0, pad_token="[PAD]")
    return tokenizer.to_str().encode()


def publish_text(store: Store) -> None:
    rng = np.random.default_rng(8)
    vocab = 2 + len(dict.fromkeys(WORDS.split(" ")))
    nodes, weights, hidden = dense_layers(rng, "pooled", TEXT_DIM, TEXT_WIDTH, 2)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["embedded"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
            helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "tokens"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask", "tokens"], ["count"], keepdims=1),
            helper.make_node("Max", ["count", "one"], ["count1"]),
            helper.make_node("Div", ["summed", "count1"], ["pooled"]),
            *nodes,
            helper.make_node("MatMul", [hidden, "head"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", TEXT_LENGTH]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", TEXT_LENGTH])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", TEXT_INTENTS])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(vocab, TEXT_DIM)).astype(np.float32), "E"), *weights,
            numpy_helper.from_array((rng.normal(size=(TEXT_WIDTH, TEXT_INTENTS)) / 45).astype(np.float32), "head"),
            numpy_helper.from_array(np.array([2], np.int64), "last"), numpy_helper.from_array(np.array([1], np.int64), "tokens"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ],
    )  # fmt: skip
    described = metadata(
        "text",
        [TensorSpec(name="input_ids", dtype="int64", shape=["batch", TEXT_LENGTH]),
         TensorSpec(name="attention_mask", dtype="int64", shape=["batch", TEXT_LENGTH])],
        [TensorSpec(name="label", dtype="int64", shape=["batch"]),
         TensorSpec(name="probabilities", dtype="float32", shape=["batch", TEXT_INTENTS])],
        task="text-classification", labels=[f"intent_{i}" for i in range(TEXT_INTENTS)], label_output="label",
        score_output="probabilities", tokenizer=TokenizerInfo(max_length=TEXT_LENGTH, pad_id=0, attention_mask="attention_mask"),
    )  # fmt: skip
    publish(store, described, onnx_bytes(graph), {"tokenizer.json": text_tokenizer()}, change=CHANGE, force=True)


def build_store(out_dir: Path) -> Path:
    """make_models' lr and rf, plus the MLP and the text model, all deployed to the bench environment."""
    root, _ = build_onnx_store(out_dir)
    store = Store(root)
    publish_mlp(store)
    publish_text(store)
    for name in ("mlp", "text"):
        deploy(store, name, VERSION, ENVIRONMENT, CHANGE)
    return root


# -- servers and load ------------------------------------------------------------------------------------------------


def gateway(store_root: Path, batching: bool) -> tuple[Target, int]:
    port = free_port()
    onnxgate = Path(sys.executable).with_name("onnxgate")
    command = [
        str(onnxgate),
        "serve",
        "--store",
        str(store_root),
        "--env",
        ENVIRONMENT,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {"ONNXGATE_BATCHING": json.dumps(BATCHING_ON)} if batching else {}
    return Target("batching-on" if batching else "batching-off", command, [], env=env), port


def lua_scripts(out_dir: Path) -> dict[str, Path]:
    scripts = {}
    for model, body in BODIES.items():
        if body is None:
            scripts[model] = Path(__file__).resolve().parent / "wrk" / "predict.lua"
            continue
        scripts[model] = out_dir / f"{model}.lua"
        scripts[model].write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [=[{json.dumps(body)}]=]\n'
        )
    return scripts


def same_answers(urls: dict[bool, str], model: str, scripts: dict[str, Path]) -> None:
    """Both gateways give the same outputs for the benchmark's body before either is loaded."""
    body = lua_body(scripts[model])
    off, on = (post(urls[flag] + f"/predict/{model}", body)["outputs"] for flag in (False, True))
    for name in off:
        if isinstance(off[name][0], str):
            assert off[name] == on[name], (model, name)
        else:
            np.testing.assert_allclose(np.array(on[name], float), np.array(off[name], float), rtol=1e-4, atol=1e-6)


def throughput(store_root: Path, scripts: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    results = []
    with contextlib.ExitStack() as stack:
        urls = {}
        for flag in (False, True):
            target, port = gateway(store_root, flag)
            urls[flag] = stack.enter_context(running(target, port, args.out / f"{target.name}.log")).base_url
        for model in args.models:
            same_answers(urls, model, scripts)
        for repetition in range(args.repeats):
            for model in args.models:
                for connections in args.connections:
                    order = [False, True] if (repetition + connections) % 2 == 0 else [True, False]
                    for flag in order:
                        url = urls[flag] + f"/predict/{model}"
                        run_wrk(url, scripts[model], LoadSpec(args.warmup, connections))
                        result = run_wrk(url, scripts[model], LoadSpec(args.duration, connections))
                        results.append({"model": model, "connections": connections, "batching": flag,
                                        "repetition": repetition, **result.as_dict()})  # fmt: skip
                        print(f"rep {repetition + 1} {model:4} c={connections:2} batching={'on ' if flag else 'off'} "
                              f"{result.requests_per_s:9.0f} req/s p99 {result.p99_ms:7.2f} ms"
                              f"{'' if result.clean else ' NOT CLEAN'}", flush=True)  # fmt: skip
    return results


def paired(store_root: Path, scripts: dict[str, Path], model: str, repeats: int, duration: int) -> list[float]:
    """CPU per request, batching on against off, both servers loaded at once by one connection each."""
    ratios = []
    for repetition in range(repeats):
        sides = []
        for flag in (False, True):
            target, port = gateway(store_root, flag)
            sides.append(Side(target.name, target, Endpoint(target.name, "/predict/{model}", scripts[model], "-"), port))
        if repetition % 2:
            sides.reverse()
        spec = LoadSpec(duration, 1)
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(running(s.target, s.port, Path(tempfile.gettempdir()) / f"paired-{s.label}.log"))
                for s in sides
            ]
            urls = [server.base_url + f"/predict/{model}" for server in servers]
            for url, s in zip(urls, sides, strict=True):
                run_wrk(url, s.endpoint.lua_script, LoadSpec(1, 1))
            figures = dict(zip((s.label for s in sides), cpu_us_per_request(servers, urls, sides, spec), strict=True))
        ratios.append(figures["batching-on"] / figures["batching-off"])
        print(f"paired {model} rep {repetition + 1}: off {figures['batching-off']:.1f} µs/req, on "
              f"{figures['batching-on']:.1f} µs/req, ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    return ratios


def table(results: list[dict], paired_ratios: dict[str, list[float]]) -> str:
    lines = ["| model | connections | req/s off | req/s on | on/off | p99 ms off | p99 ms on | p99 on/off |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    cells = sorted({(r["model"], r["connections"]) for r in results}, key=lambda c: (MODELS.index(c[0]), c[1]))
    for model, connections in cells:
        rps, p99 = {}, {}
        for flag in (False, True):
            runs = [r for r in results if (r["model"], r["connections"], r["batching"]) == (model, connections, flag)]
            rps[flag] = statistics.median(r["requests_per_s"] for r in runs)
            p99[flag] = statistics.median(r["p99_ms"] for r in runs)
        lines.append(f"| {model} | {connections} | {rps[False]:,.0f} | {rps[True]:,.0f} | {rps[True] / rps[False]:.2f}x | "
                     f"{p99[False]:.2f} | {p99[True]:.2f} | {p99[True] / p99[False]:.2f}x |")  # fmt: skip
    for model, ratios in paired_ratios.items():
        lines.append(f"\npaired, one connection, {model}: batching on uses {statistics.median(ratios):.3f}x the CPU per "
                     f"request of off (median of {len(ratios)}: {', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    parser.add_argument("--connections", type=lambda s: [int(c) for c in s.split(",")], default=list(CONNECTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds measured per cell")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--paired-models", type=lambda s: [m for m in s.split(",") if m], default=["mlp", "lr", "text"])
    parser.add_argument("--paired-repeats", type=int, default=4)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / time.strftime("batching-%Y%m%dT%H%M%SZ", time.gmtime()),
        help="where results.json and the servers' logs go",
    )
    args = parser.parse_args(argv)
    require_wrk()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onnxgate-batching-") as tmp:
        args.out.mkdir(parents=True, exist_ok=True)
        store_root = build_store(Path(tmp) / "models")
        scripts = lua_scripts(Path(tmp))
        results = throughput(store_root, scripts, args)
        paired_ratios = {m: paired(store_root, scripts, m, args.paired_repeats, 5) for m in args.paired_models}
    (args.out / "results.json").write_text(json.dumps({"runs": results, "paired": paired_ratios}, indent=1))
    print(table(results, paired_ratios))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
