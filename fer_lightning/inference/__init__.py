"""Using a trained checkpoint: predict on photos, folders and videos; export deployable models.

`sources` turns inputs into frames, `faces` finds and crops faces, `predictor` batches them through
the network, `pipeline` writes the CSV, `annotate` draws the answers, `export` writes
the network as ONNX or TorchScript.
"""
