"""The (method, seed) runs of a benchmark grid: what each starts from, in what order they
start, what each is called in the report and where its checkpoint lives.

``reproduce`` runs the grid, its ``--jobs`` runner (``afr_aug.bench.jobs``) schedules it and
``afr_aug.bench.plan`` replays that schedule, so the three agree on one definition.
"""

from __future__ import annotations

import os

from .methods import ALL_METHODS, METHODS
from .schedule import Schedule


def _seeded_by_stage1(source: str, stage1_method: str) -> bool:
    """Whether ``source`` is a stage-1 model that --stage1-seed re-points: bs_cmo (the derived
    rows' source) or the model the stage-2 runs fine-tune."""
    return source in ("bs_cmo", stage1_method)


def source_of(
    method: str, seed: int, stage1_seed: int | None = None, stage1_method: str = "bs_cmo"
) -> tuple | None:
    """The (method, seed) run whose finished model the run of ``method`` starts from, if any:
    a stage-2 run's stage-1 model (``stage1_method``, --stage1-method; of --stage1-seed when
    given), a derived row's source."""
    entry = METHODS[method]
    source = stage1_method if entry.stage == 2 else entry.starts_from
    if source is None:
        return None
    shared = stage1_seed is not None and _seeded_by_stage1(source, stage1_method)
    return (source, stage1_seed if shared else seed)


def from_bs_cmo(method: str, stage1_method: str = "bs_cmo") -> bool:
    """Whether ``method``'s run starts from a finished bs_cmo model, or the stage-1 model of
    --stage1-method (directly or through afr): the runs --stage1-seed re-points."""
    source = source_of(method, 0, stage1_method=stage1_method)
    while source is not None and not _seeded_by_stage1(source[0], stage1_method):
        source = source_of(source[0], 0, stage1_method=stage1_method)
    return source is not None


def grid(methods, seeds, stage1_seed: int | None = None, stage1_method: str = "bs_cmo"):
    """The (method, seed) runs to do, in report order, and the run each one starts from (a
    dependency missing from the grid is added before it: trained but not reported)."""
    order = [m for m in ALL_METHODS if m in methods]
    tasks, deps = [], {}

    def add(task: tuple[str, int]) -> None:
        dep = source_of(*task, stage1_seed, stage1_method)
        if dep is not None:
            deps[task] = dep
            add(dep)
        if task not in tasks:
            tasks.append(task)

    for seed in seeds:
        for method in order:
            add((method, seed))
    return tasks, deps


def start_order(tasks, stage1_method: str = "bs_cmo", methods=None):
    """The order --jobs starts runs in: bs_cmo (and --stage1-method's model) first (the stage-2
    runs wait for it and it is the longest), then each run that starts from another as soon as
    it may, then the other stage-1 runs. Within each group, seed by seed, and within a seed in
    the order ``methods`` (--methods) names them, so that a user can put the runs that matter
    most first; a dependency not named there comes after the named ones."""
    named = list(methods or ())
    seeds = list(dict.fromkeys(t[1] for t in tasks))

    def rank(task) -> int:
        if task[0] in ("bs_cmo", stage1_method):
            return 0
        return 1 if METHODS[task[0]].stage != 1 else 2

    def key(task) -> tuple[int, int, int]:
        where = named.index(task[0]) if task[0] in named else len(named)
        return rank(task), seeds.index(task[1]), where

    return sorted(tasks, key=key)


def run_label(method: str, s: Schedule) -> str:
    """Variants get their own row: afr[mixup,0.5] (Table 2), bs_cmo_tau[tau=0.5], la[tau=2],
    afr[from=bs_cmo_eff] (stage 2 from another stage-1 model), mislas[wd=0.0005] (every row of
    a run with --weight-decay)."""
    tags = []
    entry = METHODS[method]
    source = METHODS.get(entry.starts_from) if entry.starts_from else None
    stage2 = entry.stage == 2 or (source is not None and source.stage == 2)
    if stage2 and (s.mix, s.mix_p) != ("cutmix", 0.25):
        tags.append(f"{s.mix},{s.mix_p:g}")
    if stage2 and s.stage1_method != "bs_cmo":
        tags.append(f"from={s.stage1_method}")
    if entry.derive == "tau" and s.tau != 1:
        tags.append(f"tau={s.tau:g}")
    if (entry.loss == "la" or entry.derive == "posthoc") and s.la_tau != 1:
        tags.append(f"tau={s.la_tau:g}")
    if entry.attacks:  # an attack other than the default
        default = Schedule()
        noise = entry.stage2_set == "afr_noise"
        for key, short in (
            ("attack_target", "target"),
            ("attack_steps", "steps"),
            ("attack_step", "step"),
            ("label_weight", "w"),
            ("grad_scale", "scale"),
            ("minority_quantile", "q"),
            ("label_safe", "safe"),
        ):
            value = getattr(s, key)
            if value != getattr(default, key) and not (noise and short in ("target", "w", "scale")):
                shown = (
                    f"{value * 255:g}/255"
                    if key == "attack_step"
                    else (value if isinstance(value, str) or value is None else f"{value:g}")
                )
                tags.append(f"{short}={shown}")
    if s.stage1_weight_decay is not None:  # every row: each one stands on a stage-1 model
        tags.append(f"wd={s.stage1_weight_decay:g}")
    return f"{method}[{','.join(tags)}]" if tags else method


def ckpt_path(args, schedule: Schedule, label: str, seed: int) -> str:
    """``--out/ckpt/{label}-seed{seed}.pt``; a run that starts from another seed's bs_cmo model
    (--stage1-seed) says so in its name, so it never resumes a run of the other kind."""
    stem = f"{label}-seed{seed}"
    s1 = args.stage1_seed
    if s1 is not None and s1 != seed and from_bs_cmo(label.split("[")[0], schedule.stage1_method):
        stem += f"-from{s1}"
    return os.path.join(args.out, "ckpt", stem + ".pt")
