"""Procedural stand-in for AffectNet, written in AffectNet's own on-disk layout.

The real dataset is 120 GB behind a licence, so tests, CI and first-time users train on drawn faces
instead. The drawing is built so that the labels are *in the picture*: the expression decides the
shape of brows, eyes, nose and mouth, and valence and arousal move the geometry continuously (mouth
curvature follows valence; eye and mouth opening follow arousal). A small CNN can therefore learn
all three targets in minutes on a CPU, which is what makes end-to-end checks of the pipeline
meaningful rather than "the loss went down on noise".

Layout, as in README and fer_lightning/data/formats/affectnet.py::

    root/train_set/images/<id>.jpg
    root/train_set/annotations/<id>_exp.npy  _val.npy  _aro.npy  _lnd.npy
    root/val_set/...                         (same)
    root/synthetic.json                      (written last: its presence means "complete")

Ids are unique across the two splits: train uses ``0 .. train_size-1`` and val continues with
``train_size .. train_size+val_size-1``, as AffectNet's own ids never repeat between splits.

Every byte depends only on the parameters and the seed: each sample draws from its own generator
seeded by ``(seed, split, index)``, so output is reproducible and independent of write order.

The modules: ``labels`` (each split's classes and each sample's valence/arousal), ``faces`` (the
face's geometry from its labels), ``render`` (drawing it), ``writer`` (the dataset on disk, made
once and reused), and the command ``python -m fer_lightning.data.synthetic root=DIR
train_size=N val_size=M [image_size=S] [seed=K]`` (``__main__``). See docs/data.md.
"""
