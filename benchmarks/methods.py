"""The benchmark's rows: which methods exist, which stage trains them, and in what order the
report lists them. Only names here, so every other module can ask "what kind of row is this?"
without importing the training code."""

# The paper's Table 1 rows (the default grid of the paper presets and of device_table.sh)
PAPER_METHODS = ("ce", "ce_drw", "ldam_drw", "bs", "bs_cmo", "bs_cmo_ft", "afr")
STAGE1_METHODS = ("ce", "ce_drw", "ldam_drw", "la", "bs", "bs_cmo", "bs_cmo_eff")
STAGE2_METHODS = ("bs_cmo_ft", "afr", "afr_old", "afr_noise")
# The stage-1 rows whose model stage 2 may fine-tune (--stage1-method; the paper's is bs_cmo):
# not ldam_drw, whose cosine classifier is not the stage-2 model's linear one
STAGE1_BASES = tuple(m for m in STAGE1_METHODS if m != "ldam_drw")
# Issue 16's screen: AFR as before (originals layout, minority-centroid target, λ = 0.8) and a
# noise control (AFR's slots, random ±step sign steps of the same budget)
AFR_METHODS = ("afr", "afr_old", "afr_noise")
CMO_METHODS = ("bs_cmo", "bs_cmo_eff")
# Rows made from another method's finished model without training its features (issue 10):
# post-hoc logit adjustment, tau-normalisation and cRT. {row: the run it starts from}
DERIVED_METHODS = {"ce_posthoc": "ce", "bs_cmo_posthoc": "bs_cmo", "bs_cmo_tau": "bs_cmo",
                   "bs_cmo_crt": "bs_cmo", "afr_tau": "afr"}
# Every row, in report order
ALL_METHODS = ("ce", "ce_posthoc", "ce_drw", "ldam_drw", "la", "bs", "bs_cmo", "bs_cmo_eff",
               "bs_cmo_posthoc", "bs_cmo_tau", "bs_cmo_crt", "bs_cmo_ft", "afr", "afr_old",
               "afr_noise", "afr_tau")
TRAINED_METHODS = STAGE1_METHODS + STAGE2_METHODS
# Names --methods accepts for a whole list of rows
METHOD_GROUPS = {"paper": PAPER_METHODS, "all": ALL_METHODS}

RECIPES = ("paper", "authors")


def stage1_augmentation(method: str, recipe: str) -> dict:
    """The ``BatchAugment`` flags of ``method``'s stage 1 under ``recipe``: the AFR paper's
    (crop, flip, AutoAugment, Cutout) for every row under "paper"; under "authors" what the
    row's official code uses, crop and flip for every stage-1 row here (LDAM-DRW's code, on
    which the CE, DRW, Balanced Softmax and CMO CIFAR codes are built)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    heavy = recipe == "paper"
    return dict(crop=True, flip=True, auto_augment=heavy, cutout=heavy)
