"""What training, conversion, evaluation and the Python API share, owned by none of them:
the TensorFlow import (`tf_env`), the options a run records (`train_options`: `TrainOptions`)
and the defaults several layers share (`defaults`: the split), the run folder's format and
reader (`runs`), metrics (`metrics`, `clinical_metrics`), model predictions on a dataset
(`predict`), the tf.data input pipeline and class weights (`pipeline`), and `native_stderr`.

Nothing here imports TensorFlow at import time (`tf_env.import_tf()` does, when called).
"""
