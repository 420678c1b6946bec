"""edgecls: from a GPU-trained cancer-cell classifier to an int8 model on a phone or a Raspberry Pi.

Importing this package is cheap on purpose: no TensorFlow, no Keras. The workstation parts
(`edgecls.train`, `edgecls.convert`) import TensorFlow only when they are used.
"""

__version__ = "0.1.0"
