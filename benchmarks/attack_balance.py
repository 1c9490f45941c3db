"""How MinorityPGD's ``label_weight`` trades "move toward the minority" against "keep the label".

    python -m benchmarks.attack_balance --checkpoint runs/x/ckpt/bs_cmo-seed0.pt --dataset cifar10-lt

On a trained model (a checkpoint written by ``benchmarks.reproduce``), embeds the long-tailed
training set, splits it with the paper's λ = 0.8, attacks ``--per-class`` majority images of
every class and prints, per setting: the mean cosine similarity of the attacked embeddings to
their class's minority centroid before → after, the share that moved toward it, the cosine
to the class mean before → after, and the share of correctly classified images that kept
their label. The last line is one JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from afr_aug import Embedder, IntraClassSplitter, MinorityPGD

from .common import device_name, load_checkpoint, load_data, make_model, train_batches


def measure(model, split, x, y, **attack_kwargs):
    embed = Embedder(model)
    with torch.no_grad():
        logits0, e0 = embed(x)
    adv = MinorityPGD(model, **attack_kwargs).set_targets(split)(x, y)
    with torch.no_grad():
        logits1, e1 = embed(adv)
    target, mean = split.minority_centroids[y.cpu()].to(x.device), split.class_means[y.cpu()].to(x.device)
    before, after = F.cosine_similarity(e0, target), F.cosine_similarity(e1, target)
    correct = logits0.argmax(1) == y
    return {**attack_kwargs,
            "cos_minority_before": round(before.mean().item(), 4),
            "cos_minority_after": round(after.mean().item(), 4),
            "moved_toward": round((after > before).float().mean().item(), 4),
            "cos_mean_before": round(F.cosine_similarity(e0, mean).mean().item(), 4),
            "cos_mean_after": round(F.cosine_similarity(e1, mean).mean().item(), 4),
            "label_kept": round((logits1.argmax(1) == y)[correct].float().mean().item(), 4)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.attack_balance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data-root", default=None)
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_data(args.dataset, args.data_root, device=device)
    state = load_checkpoint(args.checkpoint)
    model = make_model(data, device)
    model.load_state_dict(state["model"])
    model.eval()
    splitter = IntraClassSplitter(threshold=0.8, adaptive=False)
    emb, labels, _, train_acc = splitter.embed(model, train_batches(data), device, progress=False)
    split = splitter.split(emb, labels, num_classes=data.num_classes)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([m[torch.randperm(len(m), generator=g)[:args.per_class]]
                     for m in (split.majority_indices(c) for c in range(data.num_classes))])
    x, y = data.x_train[idx.to(device)].float() / 255, data.y_train[idx.to(device)]
    print(f"{device_name(device)}; clean training accuracy {train_acc:.3f}; {split}; "
          f"attacking {len(idx)} majority images (eps 0.6, 3 steps of 1/255)")
    rows = [measure(model, split, x, y, label_weight=w) for w in args.weights]
    for r in rows:
        print(f"label_weight {r['label_weight']:>4}: cos to minority centroid "
              f"{r['cos_minority_before']:.3f} -> {r['cos_minority_after']:.3f}, moved toward "
              f"{r['moved_toward']:.0%}; cos to class mean {r['cos_mean_before']:.3f} -> "
              f"{r['cos_mean_after']:.3f}; label kept {r['label_kept']:.0%}")
    print(json.dumps({"device": device_name(device), "checkpoint": args.checkpoint, "rows": rows}))


if __name__ == "__main__":
    main()
