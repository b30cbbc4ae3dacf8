"""Using a trained checkpoint: predict on photos, folders and videos; export deployable models.

`sources` turns inputs into frames, `detectors` chooses the face detector (`mtcnn` with
`mtcnn_nets`, or the Haar cascade in `faces`), `faces` crops faces, `predictor` batches them through
the network, `tracks` follows faces across video frames and smooths their answers, `pipeline`
writes the CSV, `annotate` draws the answers, `export` writes the network as ONNX or TorchScript.
"""
