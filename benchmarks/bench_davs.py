"""Does DAVS's training do what the paper says? CPU-sized runs on the synthetic words corpus.

    python benchmarks/bench_davs.py probe [--clips 3000] [--steps 3000] [--uniform-weights 1,100]
                                         [--contrastive-weight 1] [--work DIR]
    python benchmarks/bench_davs.py retrieval [--clips 3000] [--steps 1500] [--seeds 1] [--contrastive-weight 1]
                                             [--work DIR]
    python benchmarks/bench_davs.py sync --checkpoint RUN/last.pth [--data DATA]

`probe`: the same DAVS run without the adversarial disentangling and with it (at each uniform-target
weight); a logistic probe on the person-ID features of each clip's frames predicts the word (fitted
on train, tested on the held-out test split).
`retrieval`: the word-ID space alone (no generation) trained with the contrastive loss alone,
plus separate word classifiers, plus the shared classifier, plus the domain-adversarial loss;
audio->video and video->audio retrieval on the test split (an ablation like the paper's Table 3).
`sync`: generated mouths of held-out identities driven by another clip's speech, scored with the
synthetic sync measure against that speech and, as a control, against speech that did not drive them.
Run folders stay in --work, so an interrupted benchmark picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_dub import machine


def lipsync(*args):
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", *map(str, args)], check=True)


def corpus(work: Path, clips: int, seed: int = 7) -> Path:
    data = work / f"words{seed}"
    if not (data / "corpus.json").exists():
        lipsync("synth", data, "--layout", "words", "--clips", clips, "--seed", seed, "--size", 64, "--workers", 2,
                "-q")
    return data


def run(name: str, work: Path, data: Path, args, *flags) -> dict:
    """Train one configuration (unless done) and evaluate it on the test split."""
    import torch

    from lipsync_cli.eval.davs import evaluate_split
    from lipsync_cli.checkpoints import load_davs

    folder = work / name
    scores = folder / "test_scores.json"
    result = json.loads(scores.read_text()) if scores.exists() else {}
    if not result:
        t = time.perf_counter()
        lipsync("train", "davs", data, "-o", folder, "--size", 64, "--width", args.width, "--steps", args.steps,
                "--batch-size", args.batch, "--eval-every", args.steps, "--eval-batches", 4, "--checkpoint-every",
                args.steps, "--workers", 1, "-q", *flags)
        result = {"train_minutes": (time.perf_counter() - t) / 60}
    if "a2v_word_r1" not in result:  # new, or scored before word R@1 was measured: score the checkpoint
        result.update(evaluate_split(load_davs(folder / "last.pth"), str(data), "test", device=torch.device("cpu")),
                      name=name)
        scores.write_text(json.dumps(result, indent=1))
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
    return result


def contrastive_weight(args) -> tuple[list, str]:
    """The flag for every run, and the suffix of run folders trained at a weight other than 1."""
    w = args.contrastive_weight
    return ["--contrastive-weight", w], "" if w == 1 else f"_cw{w:g}"


def cmd_probe(args, work: Path):
    data = corpus(work, args.clips)
    third = args.steps // 3
    weight, tag = contrastive_weight(args)
    stages = ["--disentangle-from", third, "--generate-from", 2 * third, *weight]
    rows = [("without disentangling", run(f"not_disentangled{tag}", work, data, args, *stages, "--no-disentangle"))]
    for w in map(float, args.uniform_weights.split(",")):
        rows.append((f"with adversarial disentangling, uniform-target weight {w:g}",
                     run(f"disentangled_uniform{w:g}{tag}", work, data, args, *stages, "--uniform-weight", w)))
    n = rows[0][1]["clips"]
    print(f"\nmachine: {machine()}\ncorpus: {data} ({args.clips} clips, words layout, 64 px); {args.steps} steps of "
          f"batch {args.batch}, width {args.width}; probe: logistic regression on the person-ID features of each "
          f"clip's frames, fitted on train, tested on {n} test clips (held-out identities); chance "
          f"{rows[0][1]['chance_word_acc']:.3f}\n")
    print("| training | probe word accuracy on person-ID features | word accuracy (video / audio) | a->v R@1 |")
    print("| --- | --- | --- | --- |")
    for label, r in rows:
        print(f"| {label} | {r['probe_word_acc_person_features']:.3f} | {r['word_acc_video']:.3f} / "
              f"{r['word_acc_audio']:.3f} | {r['a2v_r1']:.3f} |")


RETRIEVAL_VARIANTS = {  # run name: (table row, flags)
    "contrastive": ("contrastive loss alone", ["--word-classifier", "none", "--no-domain"]),
    "separate": ("+ a word classifier per modality", ["--word-classifier", "separate", "--no-domain"]),
    "shared": ("+ shared word classifier", ["--no-domain"]),
    "shared_domain": ("+ shared classifier + domain adversarial", []),
}


def cmd_retrieval(args, work: Path):
    data = corpus(work, args.clips)
    word_only = ["--disentangle-from", args.steps, "--generate-from", args.steps]  # the word-ID space alone
    weight, tag = contrastive_weight(args)
    seeded = set(args.seeded.split(",")) if args.seeded else set(RETRIEVAL_VARIANTS)
    chosen = args.variants.split(",") if args.variants else list(RETRIEVAL_VARIANTS)
    rows = []
    for name in chosen:
        label, flags = RETRIEVAL_VARIANTS[name]
        seeds = range(args.seeds if name in seeded else 1)
        runs = [run(f"{name}{tag}" + (f"_seed{seed}" if seed else ""), work, data, args, *word_only, *weight, *flags,
                    "--seed", seed) for seed in seeds]
        rows.append((label, runs))
    n = rows[0][1][0]["clips"]
    print(f"\nmachine: {machine()}\ncorpus: {data} ({args.clips} clips); {args.steps} steps of batch {args.batch} "
          f"(word-ID space only), contrastive weight {args.contrastive_weight:g}; retrieval among the {n} test "
          f"clips (chance R@1 {1 / n:.4f}); mean over the seeds [lowest, highest]\n")
    keys = ("a2v_r1", "a2v_r10", "a2v_median_rank", "v2a_r1", "v2a_r10", "v2a_median_rank", "a2v_word_r1",
            "v2a_word_r1")
    print("| word-ID training | seeds | a->v R@1 | a->v R@10 | a->v median rank | v->a R@1 | v->a R@10 | "
          "v->a median rank | a->v word R@1 | v->a word R@1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, runs in rows:
        cells = []
        for k in keys:
            values = [r[k] for r in runs]
            mean = sum(values) / len(values)
            cell = f"{mean:.0f}" if k.endswith("rank") else f"{mean:.3f}"
            if len(values) > 1 and not k.endswith("rank"):
                cell += f" [{min(values):.3f}, {max(values):.3f}]"
            cells.append(cell)
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")


def cmd_sync(args, work: Path):
    from lipsync_cli.eval.davs import mouth_sync
    from lipsync_cli.checkpoints import load_davs

    data = Path(args.data) if args.data else corpus(work, args.clips)
    r = mouth_sync(load_davs(args.checkpoint), str(data), "test")
    print(f"machine: {machine()}\n{args.checkpoint} on {r['clips']} test clips of {data}\n")
    print("| generated mouths scored against | median correlation | mean |")
    print("| --- | --- | --- |")
    print(f"| the speech that drove them | {r['driving_speech_median']:.3f} | {r['driving_speech_mean']:.3f} |")
    print(f"| other speech (control) | {r['other_speech_median']:.3f} | {r['other_speech_mean']:.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["probe", "retrieval", "sync"])
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--uniform-weights", default="1,100", help="probe: a disentangled run for each of these "
                    "weights of the uniform-target loss (comma-separated)")
    ap.add_argument("--seeds", type=int, default=1, help="retrieval: training seeds per variant")
    ap.add_argument("--variants", help="retrieval: only these rows (comma-separated, of "
                    f"{','.join(RETRIEVAL_VARIANTS)}); default all")
    ap.add_argument("--seeded", help="retrieval: only these variants (comma-separated) get --seeds; the rest one")
    ap.add_argument("--contrastive-weight", type=float, default=1.0, help="the contrastive loss's weight in "
                    "every run (probe, retrieval)")
    ap.add_argument("--data")
    ap.add_argument("--checkpoint")
    ap.add_argument("--work", default="bench_davs_runs")
    args = ap.parse_args()
    for names in (args.variants, args.seeded):
        unknown = set(names.split(",")) - set(RETRIEVAL_VARIANTS) if names else set()
        if unknown:
            ap.error(f"unknown retrieval variant(s) {','.join(sorted(unknown))}; known: {','.join(RETRIEVAL_VARIANTS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    {"probe": cmd_probe, "retrieval": cmd_retrieval, "sync": cmd_sync}[args.what](args, work)


if __name__ == "__main__":
    main()
