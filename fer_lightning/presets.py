"""The original project's four runs as `experiment=paper_<row>` presets, one table row each.

They share conf/experiment/paper.yaml (the training protocol) and differ only in model, batch size
and epochs, so the rows live here and `register_experiment_configs` stores one Hydra node per row,
as the model registry does for `model=<name>`, instead of four near-identical files.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

# name: (model, data.batch_size, trainer.max_epochs), as the original project trained them.
PAPER_ROWS = {
    "paper_squeezenet": ("squeezenet", 128, 30),
    "paper_tnet": ("tnet", 512, 30),
    "paper_efficientnet": ("efficientnet_b0", 32, 12),
    "paper_mobilenet": ("mobilenet_v3_large", 512, 12),
}


def register_experiment_configs() -> None:
    """Stores `experiment/<name>` for every row of PAPER_ROWS. Call before composing."""
    store = ConfigStore.instance()
    for name, (model, batch_size, max_epochs) in PAPER_ROWS.items():
        node = {
            "defaults": ["paper", {"override /model": model}, "_self_"],
            "data": {"batch_size": batch_size},
            "trainer": {"max_epochs": max_epochs},
        }
        store.store(group="experiment", name=name, node=node, package="_global_")
