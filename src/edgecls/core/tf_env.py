"""The one place TensorFlow and Keras are imported for the workstation commands.

tensorflow-model-optimization works only with Keras 2, so edgecls uses `tf_keras`, and
TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported.
"""

from __future__ import annotations

import os

from edgecls.errors import EdgeclsError


def import_tf():
    """Return (tensorflow, tf_keras), importing them quietly on first use."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecls.core.native_stderr import quiet_native_stderr

    try:
        # TensorFlow's C++ start-up lines ("Could not find cuda drivers", "cuInit") bypass
        # TF_CPP_MIN_LOG_LEVEL on CPU-only machines; they are noise, not errors.
        with quiet_native_stderr():
            import tensorflow as tf
            import tf_keras as keras

            tf.config.list_physical_devices("GPU")
    except ImportError as exc:
        raise EdgeclsError(
            f"this command needs the workstation install ({exc.name} is missing): pip install 'edgecls[train]'"
        ) from None
    tf.get_logger().setLevel("ERROR")
    return tf, keras
