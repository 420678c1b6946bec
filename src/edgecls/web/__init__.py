"""`edgecls export web`: the model in a phone's browser, offline, as a static web site.

`export_web(model, output)` writes the site (site.py): a page that runs the `.tflite` file in
MediaPipe Tasks' ImageClassifier compiled to WebAssembly (the runtime is the pinned npm package
`@mediapipe/tasks-vision`, fetched once and verified: runtime.py) and computes the record
`edgecls classify` gives. `serve(folder)` serves a site to phones on the same network (serve.py).
"""

from edgecls.web.serve import serve
from edgecls.web.site import export_web

__all__ = ["export_web", "serve"]
