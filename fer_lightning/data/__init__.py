"""The data layer: AffectNet's format, checks and index (affectnet), splits, sampler, transforms,
the LightningDataModule (datamodule), the synthetic stand-in and the check CLI.

Nothing is imported here, so ``python -m fer_lightning.data.synthetic`` starts without torch.
"""
