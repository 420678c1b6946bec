"""The modules behind edgecls's Python API; use them through `edgecls` itself (`edgecls.train`, ...).

One module per idea, as MediaPipe Model Maker lays its API out: `datasets` (load and split),
`training` (train, TrainedRun), `converting` (convert, ConversionResult), `classifier`
(Classifier: the device runtime, no TensorFlow) and `log` (enable_logging). This package
imports none of them: `edgecls.Classifier` must not pay for pandas or TensorFlow.
"""
