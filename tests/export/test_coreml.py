"""speechkit_export.coreml: Core ML conversion of the RVQ codec, read back as a spec, and its compression.

Core ML cannot predict on Linux, so the packages are checked structurally (names, dtypes, ranged
shapes, precision of ops, sizes); the export wrappers are checked numerically against the model in torch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import ConfigError, SpeechkitError
from speechkit_export.coreml import (
    COMPRESSION_MODES,
    CoreMLRVQDecoder,
    CoreMLRVQEncoder,
    describe_mlpackage,
    export_coreml,
    package_size,
)

TINY = RVQCodecConfig(
    dim=32, latent_dim=16, num_quantizers=4, codebook_size=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1)
)
# Small DFT bases (n_fft 64) and wide blocks: the learned weights hold most bytes, as in the shipped codec.
WIDE = RVQCodecConfig(
    n_fft=64,
    hop_length=16,
    dim=128,
    latent_dim=16,
    num_quantizers=2,
    codebook_size=16,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
)


@pytest.fixture(scope="module")
def tiny_model() -> RVQCodec:
    torch.manual_seed(0)
    return RVQCodec(TINY).eval()


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory) -> dict:
    pytest.importorskip("coremltools")
    return export_coreml(tiny_model, tmp_path_factory.mktemp("coreml"), max_frames=500)


def test_encoder_wrapper_matches_encode_codes(tiny_model):
    wav = torch.randn(1, 320 * 13) * 0.3
    codes = CoreMLRVQEncoder(tiny_model)(wav)
    assert codes.dtype == torch.int32 and codes.shape == (1, 4, 13)
    assert torch.equal(codes.long(), tiny_model.encode_codes(wav))


def test_decoder_wrapper_matches_decode_codes_for_fewer_codebooks(tiny_model):
    codes = torch.randint(0, 32, (1, 2, 7), dtype=torch.int32)
    audio = CoreMLRVQDecoder(tiny_model)(codes)
    assert audio.shape == (1, 7 * 320)
    assert torch.allclose(audio, tiny_model.decode_codes(codes.long()), atol=1e-5)


def test_bad_arguments_raise_before_any_conversion(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown compression 'int3'"):
        export_coreml(tiny_model, tmp_path, compression="int3")
    with pytest.raises(ConfigError, match="graphs must be"):
        export_coreml(tiny_model, tmp_path, graphs=("global_encoder",))
    assert "palettize2" in COMPRESSION_MODES and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_packages_read_back_with_declared_names_dtypes_and_ranged_time(exported):
    assert set(exported) == {"encoder", "decoder"}
    encoder, decoder = exported["encoder"].to_manifest(), exported["decoder"].to_manifest()
    assert encoder["runtime"] == "coreml" and encoder["file"] == "encoder.mlpackage"
    assert encoder["inputs"] == [{"name": "wav", "dtype": "float32", "shape": [1, "num_samples"]}]
    assert encoder["outputs"] == [{"name": "codes", "dtype": "int32", "shape": [1, 4, "num_frames"]}]
    assert decoder["inputs"] == [
        {"name": "codes", "dtype": "int32", "shape": [1, "num_codebooks", "num_frames"]}
    ]

    enc = describe_mlpackage(exported["encoder"].path)
    assert enc["inputs"][0]["bounds"] == [[1, 1], [320, 320 * 500]]  # whole hops, up to max_frames
    assert [t["shape"] for t in enc["outputs"]] == [[1, 4, "num_frames"]]  # time axis not frozen
    dec = describe_mlpackage(exported["decoder"].path)
    assert dec["inputs"][0]["bounds"] == [[1, 1], [1, 4], [1, 500]]
    assert dec["outputs"] == [
        {"name": "wav", "dtype": "float32", "shape": [1, "num_samples"], "bounds": None}
    ]
    assert dec["metadata"]["speechkit.compression"] == "none"
    assert (Path(exported["decoder"].path) / "Manifest.json").is_file() and dec["size_bytes"] > 0


@pytest.mark.slow
def test_encoder_front_end_stays_float32_and_the_rest_is_float16(exported):
    import coremltools as ct

    spec = ct.utils.load_spec(str(exported["encoder"].path))
    function = spec.mlProgram.functions["main"]
    ops = function.block_specializations[function.opset].operations
    dtypes = {op.type: op.outputs[0].type.tensorType.dataType for op in ops if op.outputs}
    float32, float16 = ct.proto.MIL_pb2.DataType.FLOAT32, ct.proto.MIL_pb2.DataType.FLOAT16
    assert dtypes["log"] == float32 and dtypes["sqrt"] == float32  # |STFT| overflows fp16 at full scale
    assert dtypes["layer_norm"] == float16 and dtypes["linear"] == float16


@pytest.mark.slow
def test_compression_shrinks_packages_and_keeps_dft_basis(tmp_path):
    pytest.importorskip("coremltools")
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    torch.manual_seed(0)
    model = RVQCodec(WIDE).eval()
    sizes = {}
    for mode in COMPRESSION_MODES:
        spec = export_coreml(model, tmp_path / mode, graphs=("decoder",), compression=mode)["decoder"]
        sizes[mode] = package_size(spec.path)
        assert describe_mlpackage(spec.path)["metadata"]["speechkit.compression"] == mode
    assert sizes["palettize2"] < sizes["palettize4"] < sizes["int8"] < sizes["none"]
    assert sizes["palettize4"] < 0.5 * sizes["none"]

    mlmodel = ct.models.MLModel(str(tmp_path / "palettize2" / "decoder.mlpackage"), skip_model_load=True)
    plain = cto.get_weights_metadata(mlmodel, weight_threshold=1000)
    basis = [meta for name, meta in plain.items() if "istft_basis" in name]
    assert len(basis) == 1 and basis[0].val.shape == (66, 1, 64)  # still a plain fp16 constant
    assert basis[0].unique_values > 4


def test_describe_refuses_what_is_not_a_package(tmp_path):
    pytest.importorskip("coremltools")
    with pytest.raises(SpeechkitError, match="not an .mlpackage"):
        describe_mlpackage(tmp_path / "missing.mlpackage")
