"""Labelled image datasets as downloaded (`datasets`, `dataset_files`), their grouped,
stratified splits (`split`) and the demo's generated dataset (`demo_data`). numpy, pandas,
scipy and Pillow; no TensorFlow."""
