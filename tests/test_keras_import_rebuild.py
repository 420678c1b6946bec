"""`edgecls.convert.keras_import.rebuild`: a Keras 3 model rebuilt in tf_keras for QAT; a layer
with no tf_keras counterpart is named and the model converts as it is, with post-training int8."""

from __future__ import annotations

from test_keras_import import convert_file, keras3, notebook_cnn, patterns, trained  # noqa: F401 - patterns is a fixture


def test_layer_without_tf_keras_counterpart_falls_back_to_ptq_naming_it(patterns, tmp_path):
    _, _, _, pixels, labels = patterns
    keras = keras3()
    model = trained(keras, notebook_cnn(keras, rescaling=True, activation="hard_silu"), pixels, labels, "0-255", epochs=6)
    path = tmp_path / "hard_silu.keras"
    model.save(path)
    report, said = convert_file(path, patterns, tmp_path / "out")
    qat = report.row("qat")
    assert "hard_silu" in qat.details["qat_fallback"] and qat.details["quantization"] == "ptq-int8"
    assert qat.gate and qat.integer_only and qat.agreement >= 0.9, report.verdict
    assert any("hard_silu" in message and "post-training int8" in message for message in said)
    # Not rebuilt, so nothing folded: the Keras 3 model keeps its Rescaling and takes raw pixels.
    assert report.input_normalization["std"] == [1.0] * 3
