"""The data layer, from files on disk to batches (see docs/data.md):

``formats/``      one reader per on-disk layout, all yielding the same per-sample records
``decode``        which files are images, checking one, decoding one to RGB
``listing``       what readers share: a layout's label file read whole, fingerprints of files
``index``         every sample checked once, the usable ones indexed and cached
``check_report``  what indexing found, kept as check-report.json
``crops``         faces cut out of whole photographs by their boxes, once, while indexing
``split``         seeded, stratified, leak-checked train/val/test splits, written once
``sampler``       the epoch order: seeded, sharded across ranks, resumable
``transforms``    augmentation keyed by (seed, epoch, index), and normalisation
``dataset``       one split as a torch Dataset, and collate
``loaders``       the ``threads`` and ``processes`` loader backends (``buffers``: reused arrays)
``datamodule``    the LightningDataModule that puts these together (``locks``: one preparer)
``synthetic/``    drawn faces in AffectNet's layout, for tests and first runs (and as its CSV
                  release: ``csv_release``)
``check``         ``python -m fer_lightning.data.check``: what is wrong with a dataset
"""
