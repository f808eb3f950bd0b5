"""`gpo`: one command line for every stage. Each subcommand takes an experiment YAML and
`--set key=value` overrides (e.g. `--set train.steps=500 data.split_seed=1`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpo.errors import GPOError, run_command
from gpo.llm import LLM_BASELINES


def _config(args):
    from gpo.config import load_config

    return load_config(args.config, args.set or [])


def cmd_run(args) -> None:
    cfg = _config(args)  # a bad config is refused before the pipeline (and torch) loads
    from gpo.pipeline import run

    run(cfg)


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet")
# what a per-respondent file given in place of a config is read as: each respondent a task
RESPONDENT_FILE = {"data.unit": "respondent", "data.groups": "all", "data.require_ordinal": False,
                   "eval.baselines": ["uniform", "population", "demographic", "knn", "lowrank"]}


def print_roles(data, split, names: bool) -> None:
    """Each role's task count and how many questions they answered (and, for groups, their names)."""
    answered = dict(zip(data.tasks, data.available.sum(1).tolist()))
    for role, groups in split.as_dict().items():
        listed = f": {', '.join(groups)}" if names else ""
        print(f"  {role:5s} {len(groups):5d} {data.unit}s, {min(answered[g] for g in groups)}-{max(answered[g] for g in groups)} "
              f"questions each{listed}")


def cmd_data(args) -> None:
    import pandas as pd

    from gpo.config import load_config
    from gpo.data.csv_responses import is_respondent_csv
    from gpo.data.respondents import load_responses, responses_table
    from gpo.data.schema import BadRows, bad_rows
    from gpo.inputs import load_respondents, load_source, load_survey, tasks_need, with_enough_answers

    data_file = Path(args.config).is_dir() or args.config.lower().endswith(DATA_SUFFIXES)
    # a data file in place of a config: its table as it is, every group and question; a
    # per-respondent CSV (known by its columns) as respondents
    if data_file:
        inferred = {"data.source": str(Path(args.config).absolute()), **(RESPONDENT_FILE if is_respondent_csv(args.config) else {})}
        named = {item.split("=", 1)[0].strip() for item in args.set or []}  # --set wins over what is inferred
        cfg = load_config(None, args.set or [], {k: v for k, v in inferred.items() if k not in named})
    else:
        cfg = _config(args)
    if cfg.data.unit == "respondent":
        responses = with_enough_answers(load_responses(cfg.data.resolved_source(), cfg.data.on_bad_rows),
                                        tasks_need(cfg), BadRows(cfg.data.on_bad_rows))
        table, bad = responses_table(responses), pd.DataFrame([vars(p) for p in responses.problems],
                                                              columns=["file", "row", "field", "reason"])
        data, split = load_respondents(cfg, responses)
        print(f"{data.dataset}: {len(data.qids)} questions, {data.n_points} points, {len(data.tasks)} respondents")
        print_roles(data, split, names=False)
    elif data_file:
        table = load_source(cfg)[0]
        bad = bad_rows(table)
        print(f"{cfg.data.name()}: {table.qid.nunique()} questions, {len(table)} (question, group) rows, "
              f"{table.group.nunique()} groups over {table.attribute.nunique()} attribute(s)")
    else:
        table = load_source(cfg)[0]
        bad = bad_rows(table)
        data, split, _ = load_survey(cfg, table)
        print(f"{data.dataset}: {len(data.qids)} questions, {data.n_points} points, {len(data.tasks)} groups")
        print_roles(data, split, names=True)
    if len(bad):
        by_reason = bad.groupby(["field", "reason"]).size().sort_values(ascending=False)
        print(f"skipped {len(bad)} malformed row(s):")
        for (field, reason), n in by_reason.items():
            print(f"  {n:6d}  {field}: {reason}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        written = [(out, table.to_parquet), (out.with_suffix(".bad_rows.csv"), lambda p: bad.to_csv(p, index=False))]
        for path, write in written:  # each file whole or absent
            tmp = path.with_name(path.name + ".tmp")
            write(tmp)
            tmp.replace(path)
        print("wrote " + " and ".join(f"{p} ({n} rows)" for (p, _), n in zip(written, [len(table), len(bad)])))
    elif len(bad):
        print("  (every skipped row, with file, row and field: gpo data ... --out TABLE.parquet writes TABLE.bad_rows.csv)")


DATASETS = {"opinionqa": "configs/demo.yaml", "globalopinionqa": "configs/globalopinionqa.yaml",
            "synthetic": "configs/synthetic.yaml"}


EMBED_BACKENDS = """\
backends (embed.backend):
  hf         plain transformers: each replica is one process (Ray actor) holding the whole model.
  deepspeed  deepspeed.init_inference. With embed.tp > 1 this is DeepSpeed's automatic tensor
             parallelism: a replica is tp Ray actors on one node, each a rank of a torch.distributed
             group (NCCL on GPU, gloo on CPU) holding about 1/tp of every attention and MLP
             projection; all ranks run every batch. With tp = 1 it adds only kernel injection
             (embed.kernel_inject, GPU only, wrong for padded Llama inputs); without, it runs the
             plain model.
  auto       (default) deepspeed when tp > 1 or when kernels are injected on a GPU; hf otherwise.

tensor parallelism (embed.tp > 1) needs: Ray replicas (--workers >= 1), a backend other than hf,
  a family DeepSpeed's AutoTP shards (tested: Llama- and OPT-style; GPT-2 is refused) with at
  least tp key/value heads, and one node with tp GPUs (GPU) or tp x embed.threads CPUs (CPU); otherwise
  the command stops before any model loads.
GPUs (embed.device): cuda asks Ray for one GPU per rank whatever the cluster has now, so an
  autoscaler adds GPU nodes for it; auto takes GPUs only if a node has them at the start; cpu
  never. A replica whose rank fails is restarted as a whole, at most embed.max_restarts times in
  a row before the job stops with its error.
"""


def cmd_embed(args) -> None:
    from gpo.embed.survey import embed_survey
    from gpo.inputs import load_survey

    if args.dataset in DATASETS:
        args.config = DATASETS[args.dataset]
    args.set = list(args.set or [])
    if args.dataset and args.dataset not in DATASETS:
        args.set.append(f"data.source={args.dataset}")
    args.set += [f"embed.{key}={value}" for key, value in (("model", args.model), ("workers", args.workers),
                                                          ("backend", args.backend), ("tp", args.tp)) if value is not None]
    cfg = _config(args)
    data, _, _ = load_survey(cfg)
    x = embed_survey(data, cfg.embed)
    print(f"{x.shape[0]} points x {x.shape[1]} dims for {cfg.embed.model} in {cfg.embed.cache_dir}")


def cmd_train(args) -> None:
    cfg = _config(args)
    from gpo.inputs import prepare
    from gpo.pipeline import claim, run_training

    with claim(cfg):
        checkpoints = run_training(prepare(cfg), cfg)
    print(f"trained {len(checkpoints)} model(s); best checkpoint(s): {', '.join(map(str, checkpoints))}; "
          f"evaluate with `gpo eval {cfg.run_dir}`")


def cmd_eval(args) -> None:
    import yaml

    from gpo.config import load_config, to_dict
    from gpo.inputs import prepare
    from gpo.lock import exclusive
    from gpo.pipeline import member_dirs, run_evaluation, write_results

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise GPOError(f"{run_dir}: no config.yaml (not a run folder made by `gpo run` or `gpo train`)")
    overrides, values, out = args.set or [], {}, run_dir
    if args.data:
        # the run's training and validation groups, test groups of the other survey; each
        # evaluated group answers what it answered (a --set of these keys wins), and the
        # results carry the other survey's name
        split = json.loads((run_dir / "split.json").read_text())
        values = {"data.test_source": args.data, "data.train_groups": split["train"], "data.val_groups": split["val"],
                  "data.extra_train_groups": []}
        overrides = ["data.require_all_groups=false", "data.min_groups=1", "data.test_answer_fraction=1.0",
                     "data.dataset=''", *overrides]
    cfg = load_config(run_dir / "config.yaml", overrides, values)
    if args.data:
        if not Path(cfg.data.resolve(cfg.data.test_source)).exists():
            raise GPOError(f"--data {args.data}: no such file or folder")
        out = Path(args.out) if args.out else run_dir / f"transfer-{cfg.data.name()}"
        record = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        if (out / "results.parquet").is_file() and (out / "config.yaml").is_file() and (out / "config.yaml").read_text() != record:
            raise GPOError(f"{out}: holds a transfer made with other settings (its config.yaml); evaluate into another "
                           "folder with --out DIR, or move it away")
    # under the folder given, wherever the run was moved to
    checkpoints = [d / f"{args.checkpoint}.pt" for d in member_dirs(run_dir, cfg.train.ensemble)]
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            raise GPOError(f"{checkpoint}: not found; train first (`gpo train {run_dir / 'config.yaml'}`)")
    with exclusive(run_dir, "this run folder"):
        results = run_evaluation(prepare(cfg), cfg, checkpoints)
        if args.data:  # the folder is made once there is something to put in it
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(record)
        print(write_results(results, out))
    print(f"results in {out / 'results.parquet'}")


def cmd_baseline(args) -> None:
    cfg = _config(args)
    import pandas as pd

    from gpo.inputs import prepare
    from gpo.methods import llm_baselines
    from gpo.pipeline import claim, evaluate_roles, write_results
    from gpo.results import read_results

    with claim(cfg):
        prep = prepare(cfg)
        results = evaluate_roles(prep, cfg, llm_baselines(prep, cfg, [args.name]))
        results = results.assign(embed_model=cfg.llm.model, embed_layers=0)
        existing = cfg.run_dir / "results.parquet"
        if existing.is_file():  # next to GPO's results, replacing an earlier run of this baseline
            old = read_results(existing)
            results = pd.concat([old[~old.method.isin(results.method.unique())], results], ignore_index=True)
        print(write_results(results, cfg.run_dir))


def cmd_analyze(args) -> None:
    from gpo.analysis.report import analyze

    analysis = analyze(args.results, args.out)
    print(f"{analysis.summary}\n\nreport (tables, figures, provenance): {analysis.report} and report.html beside it")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:  # its own argument parser: tune/sweep.py (also run by `ray submit`)
        from gpo.tune.sweep import main as sweep

        return sweep(argv[1:], prog="gpo sweep")
    parser = argparse.ArgumentParser(prog="gpo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, help, config=True, leading=None):
        p = sub.add_parser(name, help=help, description=help)
        if leading:
            p.add_argument(leading[0], **leading[1])
        if config:
            p.add_argument("config", nargs="?", default="configs/demo.yaml", help="experiment YAML (default: %(default)s)")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config values")
        p.set_defaults(fn=fn)
        return p

    add("run", cmd_run, "the whole job: data, embeddings, meta-training, evaluation (resumable)")
    p = add("data", cmd_data, "load and validate survey data (a config's, or a data file given in its place); print a summary")
    p.add_argument("--out", help="also write the canonical table as parquet (+ .bad_rows.csv)")
    p = add("embed", cmd_embed, "compute (or reuse) the cached embeddings, sharded over Ray model replicas")
    p.formatter_class, p.epilog = argparse.RawDescriptionHelpFormatter, EMBED_BACKENDS
    p.add_argument("--model", help="base model (embed.model): a short name (minilm, mpnet, or a model file of $GPO_MODELS_DIR, "
                   "default ~/.cache/gpo-models, by its short name: README), a local folder or .gguf file, or a hub id")
    p.add_argument("--dataset", help=f"one of {sorted(DATASETS)} (its shipped config) or a data file (data.source)")
    p.add_argument("--workers", type=int, help="Ray replicas, data parallel over shards; 0 = in this process (embed.workers)")
    p.add_argument("--backend", choices=["auto", "hf", "deepspeed"], help="inference backend, see below (embed.backend)")
    p.add_argument("--tp", type=int, help="tensor-parallel ranks per replica, see below (embed.tp)")
    add("train", cmd_train, "meta-train GPO, resuming from the run's last checkpoint")
    p = add("eval", cmd_eval, "evaluate a trained run on its test groups with every baseline", config=False)
    p.add_argument("run_dir", help="run folder (holds config.yaml and checkpoints/)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--data", metavar="SURVEY", help="evaluate on test groups of another survey file (name them with "
                   "--set data.test_groups=[...]; same embedding model); results go to RUN_DIR/transfer-<survey>/")
    p.add_argument("--out", metavar="DIR", help="with --data: the folder of the transfer's results (default RUN_DIR/transfer-<survey>)")
    add("baseline", cmd_baseline, "evaluate one of the paper's LLM baselines (llm.model) next to the run's results",
        leading=("name", {"choices": LLM_BASELINES}))
    p = sub.add_parser("analyze", help="tables, scaling fits and figures from study/run results -> report.md/.html")
    p.add_argument("results", nargs="+", help="study or run folders, or result parquet files")
    p.add_argument("--out", required=True, help="report folder")
    p.set_defaults(fn=cmd_analyze)
    sub.add_parser("sweep", help="Ray Tune + Optuna sweep of a study YAML (gpo sweep STUDY [--resume] [--smoke-test])",
                   add_help=False)

    args = parser.parse_args(argv)
    return run_command("gpo", lambda: args.fn(args), "run the same command again to resume")

if __name__ == "__main__":
    sys.exit(main())
