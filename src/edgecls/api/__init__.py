"""The modules behind edgecls's Python API; use them through `edgecls` itself
(`edgecls.train_classifier`, `edgecls.Classifier`, ...).

One module per idea, as MediaPipe Model Maker lays its API out: `datasets` (load and split),
`training` (train_classifier, TrainedRun), `converting` (convert_classifier, ConversionResult),
`evaluating` (evaluate_classifier, EvaluationResult), `options` (keyword overrides on an options
dataclass, shared by training and converting) and `classifier` (Classifier: the device
runtime, no TensorFlow). Logging (`enable_logging`) is `edgecls.log`, shared with the library
code that logs. The `edgecls` command line (`edgecls.cli`) calls these. This package imports
none of them: `edgecls.Classifier` must not pay for pandas or TensorFlow.
"""
