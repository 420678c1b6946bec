"""The batch interpreter of a folder run: one invoke classifies several images."""

from __future__ import annotations

import numpy as np

from edgecls.edge_runtime import watchdog as _watchdog
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.errors import EdgeclsError, first_line

# Images per invoke in folder runs: on the built-in models a batch of 8 takes ~5% less CPU per image
# than 8 invokes of 1 (XNNPACK's GEMMs get more rows; the Python around an invoke is paid once).
DEFAULT_BATCH = 8



class BatchRunner:
    """A second interpreter for the classifier's model, with a batch dimension: one invoke
    classifies up to `size` images (or size / 4 with test-time flips).

    Built from the model the classifier loaded, so it computes exactly what `classifier.scores`
    does; `classify_paths` still checks that on its first batch before trusting it.
    """

    def __init__(self, classifier: TFLiteClassifier, size: int, num_threads: int = 1):
        from edgecls.edge_runtime.interpreter import make_interpreter

        self.size = size
        self.interpreter, _ = make_interpreter(classifier.model_bytes, num_threads, classifier.allow_control_flow)
        self.input_index = classifier.input_details["index"]
        try:
            self.interpreter.resize_tensor_input(self.input_index, [size, *classifier.input_shape[1:]])
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:  # e.g. a reshape to a fixed batch of 1
            raise EdgeclsError(f"the model does not take a batch of {size} ({exc})") from None
        # The output the classifier reads (the logits, when the file has them as a second output).
        output = next(o for o in self.interpreter.get_output_details() if o["name"] == classifier.output_details["name"])
        if tuple(int(d) for d in output["shape"]) != (size, classifier.num_classes):
            raise EdgeclsError(f"the model gives {list(output['shape'])} for a batch of {size}")
        self.output_index = output["index"]
        self.buffer = np.zeros((size, *classifier.input_shape[1:]), dtype=classifier.new_input_buffer().dtype)

    def slot(self, index: int) -> np.ndarray:
        """The input slot `index`, shaped like `classifier.new_input_buffer()` (for `to_input`)."""
        return self.buffer[index : index + 1]

    def run(self) -> np.ndarray:
        """Invoke on the whole buffer; the raw output rows (slots beyond those filled are stale)."""
        watchdog = _watchdog.active  # the CLI's time bound on each invoke, if any
        try:
            self.interpreter.set_tensor(self.input_index, self.buffer)
            if watchdog is not None:
                watchdog.arm(f"a batch of {self.size}")
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index)
        except (RuntimeError, ValueError) as exc:
            raise EdgeclsError(f"the interpreter cannot run this model ({first_line(exc)})") from None
        finally:
            if watchdog is not None:
                watchdog.disarm()
