"""The standard TFLite Model Metadata schema, generated code (see the header of
metadata_schema_py_generated.py for where it comes from and its licence)."""
