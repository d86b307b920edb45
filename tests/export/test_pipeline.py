"""export_model: quant-mode parsing, packed low-bit weights (exporter and runtime sides), bundle round trips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import ConfigError
from speechkit_export.evaluation import select_audio
from speechkit_export.pipeline import export_model, parse_quant
from speechkit_export.quant import quantize_rtn
from speechkit_export.quant.packing import pack_codes
from speechkit_export.weight_blobs import codec_layer_roles, externalize_weights, save_npz
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import BundleError
from speechkit_rt.weights import dequantize, graph_weights, materialize, unpack_codes

# Small STFT and wide blocks, so the quantised Linear/Conv1d weights dominate the decoder graph.
SMALL_RVQ = RVQCodecConfig(
    n_fft=64,
    hop_length=16,
    dim=128,
    latent_dim=16,
    num_quantizers=3,
    codebook_size=32,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
)


# ---- quant modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "quant", "engine", "bits"),
    [
        ("onnx", "none", "none", 32),
        ("onnx", "int8", "onnxruntime", 8),
        ("onnx", "w4", "onnxruntime", 4),
        ("onnx", "gptq-w3", "weights", 3),
        ("onnx", "rtn-w8", "weights", 8),
        ("coreml", "palettize2", "coreml", 2),
        ("coreml", "none", "coreml", 16),
    ],
)
def test_parse_quant_describes_each_supported_mode(format: str, quant: str, engine: str, bits: int):
    mode = parse_quant(format, quant)
    assert (mode.engine, mode.bits) == (engine, bits)


@pytest.mark.parametrize(
    ("format", "quant", "expected"),
    [
        ("coreml", "decoupleq-w2", "none, int8, palettize4, palettize2"),
        ("coreml", "w4", "Core ML export supports"),
        ("onnx", "palettize4", "pass format='coreml'"),
        ("onnx", "rtn-w1", "unknown quant mode"),
        ("tflite", "none", "unknown export format"),
    ],
)
def test_parse_quant_refuses_unsupported_combinations(format: str, quant: str, expected: str):
    with pytest.raises(ConfigError, match=expected):
        parse_quant(format, quant)


def test_without_corpus_parity_and_calibration_use_the_bundled_sample_and_say_so(tmp_path: Path):
    sets = select_audio(16000, corpus_dir=tmp_path)
    assert len(sets.parity) == len(sets.calibration) == 1
    assert np.array_equal(sets.parity[0], sets.calibration[0])
    assert any("corpus not found" in note for note in sets.notes)


# ---- packed weights: exporter and runtime agree --------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_runtime_unpacks_what_the_exporter_packs(bits: int):
    codes = np.random.default_rng(bits).integers(0, 2**bits, 1001).astype(np.uint8)
    assert np.array_equal(unpack_codes(pack_codes(codes, bits), bits, codes.size), codes)


@pytest.mark.parametrize(("shape", "group_size"), [((6, 10), 4), ((5, 3, 7), 8), ((4, 16), 16)])
def test_runtime_dequantize_is_bit_exact_with_the_torch_weight(shape: tuple[int, ...], group_size: int):
    quantized = quantize_rtn(torch.randn(shape), bits=3, group_size=group_size)
    scale, zero = quantized.scale.half().float(), quantized.zero.half().float()
    expected = (
        type(quantized)(quantized.codes, scale, zero, 3, quantized.group_size, shape).dequantize().numpy()
    )
    got = dequantize(
        pack_codes(quantized.codes, 3), scale.half().numpy(), zero.half().numpy(), 3, group_size, shape
    )
    assert got.dtype == np.float32 and got.shape == shape
    assert np.array_equal(got, expected)


def test_runtime_refuses_packed_weights_that_do_not_fit():
    scale = np.ones((2, 1), np.float16)
    with pytest.raises(BundleError, match="cannot hold"):
        dequantize(np.zeros(1, np.uint8), scale, scale, bits=4, group_size=4, shape=(2, 4))
    with pytest.raises(BundleError, match="do not match"):
        dequantize(np.zeros(4, np.uint8), scale, scale, bits=4, group_size=2, shape=(2, 4))


def test_npz_is_reproducible_and_loads_without_pickle(tmp_path: Path):
    arrays = {"decoder.0.codes": np.arange(7, dtype=np.uint8), "decoder.0.scale": np.ones((2, 1), np.float16)}
    first = save_npz(tmp_path / "a.npz", arrays).read_bytes()
    assert save_npz(tmp_path / "b.npz", arrays).read_bytes() == first
    with np.load(tmp_path / "a.npz", allow_pickle=False) as loaded:
        assert loaded["decoder.0.codes"].tolist() == list(range(7))


def test_layer_roles_split_encoder_and_decoder():
    roles = codec_layer_roles(RVQCodec(SMALL_RVQ).eval())
    assert {"decoder.head", "decoder.low_rate.0.pwconv1"} <= roles["decoder"]
    assert "encoder.input.conv" in roles["encoder"] and "encoder.input.conv" not in roles["decoder"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, as onnx_graphs uses
def test_externalized_matmul_weights_load_through_both_onnxruntime_paths(tmp_path: Path):
    """Named external initializers (materialize) and an in-memory weights file (onnxruntime-web style)."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32)).eval()
    quantized = {}
    for name in ("0", "2"):
        q = quantize_rtn(mlp[int(name)].weight, bits=2, group_size=32)
        quantized[name] = type(q)(q.codes, q.scale.half().float(), q.zero.half().float(), 2, 32, q.shape)
        mlp[int(name)].weight.data = quantized[name].dequantize()
    torch.onnx.export(mlp, (torch.randn(1, 5, 64),), str(tmp_path / "mlp.onnx"), input_names=["x"],
                      output_names=["y"], opset_version=18, dynamo=False)  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    entries = externalize_weights(tmp_path / "mlp.onnx", tmp_path / "packed.onnx", "mlp", quantized, arrays)
    assert sorted(e["layer"] for e in entries) == ["0", "2"] and all(e["perm"] == [1, 0] for e in entries)
    packed = onnx.load(str(tmp_path / "packed.onnx"), load_external_data=False)
    assert all(init.data_location == onnx.TensorProto.EXTERNAL for init in packed.graph.initializer if init.name in
               {e["name"] for e in entries})  # fmt: skip
    x = np.random.default_rng(0).standard_normal((1, 5, 64)).astype(np.float32)
    expected = mlp(torch.from_numpy(x)).detach().numpy()
    weights = {
        e["name"]: dequantize(arrays[f"{e['key']}.codes"], arrays[f"{e['key']}.scale"], arrays[f"{e['key']}.zero"],
                              e["bits"], e["group_size"], e["shape"], e["perm"])
        for e in entries
    }  # fmt: skip
    options = ort.SessionOptions()
    options.add_external_initializers(
        list(weights), [ort.OrtValue.ortvalue_from_numpy(w) for w in weights.values()]
    )
    session = ort.InferenceSession(
        (tmp_path / "packed.onnx").read_bytes(), options, providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, atol=1e-5)
    # The offsets lay the same weights out as one file, which onnxruntime also takes from memory.
    size = max(e["offset"] + e["length"] for e in entries)
    buffer = np.zeros(size, dtype=np.uint8)
    for e in entries:
        buffer[e["offset"] : e["offset"] + e["length"]] = np.frombuffer(
            weights[e["name"]].tobytes(), np.uint8
        )
    options = ort.SessionOptions()
    options.add_external_initializers_from_files_in_memory(["mlp.weights.bin"], [buffer], [size])
    session = ort.InferenceSession(
        (tmp_path / "packed.onnx").read_bytes(), options, providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, atol=1e-5)


# ---- export round trips --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model() -> RVQCodec:
    torch.manual_seed(0)
    return RVQCodec(SMALL_RVQ).eval()


@pytest.fixture(scope="module")
def float_bundle(small_model: RVQCodec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fp32")
    report = export_model(small_model, folder / "bundle", progress=False, corpus_dir=folder / "no-corpus")
    return report.bundle


def _torch_with_bundle_weights(model: RVQCodec, bundle: Bundle) -> RVQCodec:
    """A copy of the model holding the weights the runtime rebuilds from the bundle: the quantised layers'
    (by layer name) and the float16-stored tensors (by value: the STFT bases are buffers, not layers)."""
    copy = RVQCodec(SMALL_RVQ).eval()
    copy.load_state_dict(model.state_dict())
    modules = dict(copy.named_modules())
    tensors = {**dict(copy.named_parameters()), **dict(copy.named_buffers())}
    for graph in ("encoder", "decoder"):
        weights = graph_weights(bundle, graph)
        for entry in bundle.graph(graph).get("extra", {}).get("weights", []):
            weight = torch.from_numpy(np.ascontiguousarray(weights[entry["name"]]))
            if "layer" in entry:
                modules[entry["layer"]].weight.data = (
                    weight.permute(*np.argsort(entry["perm"])) if entry["perm"] else weight
                )
                continue
            same = [
                t
                for t in tensors.values()
                if t.shape == weight.shape and torch.equal(t.half().float(), weight)
            ]
            if not same:  # an export-only tensor (the decoder's stacked codebook table): in the graph only
                assert "MatMul" in entry["name"] or "table" in entry["name"], entry["name"]
                continue
            for tensor in same:
                tensor.data = weight.clone()
    return copy


def _bundle_bytes(folder: Path, suffix: str) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.name.endswith(suffix))


@pytest.mark.slow
def test_float_export_writes_a_bundle_the_runtime_accepts(float_bundle: Path):
    with Bundle.open(float_bundle) as bundle:
        manifest = bundle.manifest
        assert manifest["task"] == "codec" and manifest["quantization"]["mode"] == "none"
        assert manifest["token_layout"]["num_codebooks"] == SMALL_RVQ.num_quantizers
        assert len(manifest["token_layout"]["bitrates_bps"]) == SMALL_RVQ.num_quantizers
        assert manifest["metrics"]["encoder_codes_equal_fraction"] > 0.99
        assert manifest["metrics"]["decoder_snr_db"] > 80
        assert {"pesq_wb", "stoi", "bundle_bytes"} <= set(manifest["metrics"])
        assert "weights_file" not in manifest["graphs"]["decoder"].get("extra", {})


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["rtn-w4", "decoupleq-w2"])
def test_packed_bundle_is_small_and_materializes_the_quantised_codec(
    small_model: RVQCodec, float_bundle: Path, tmp_path: Path, quant: str
):
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    report = export_model(
        small_model, tmp_path / quant, quant=quant, progress=False, corpus_dir=tmp_path / "x"
    )
    assert all(
        torch.equal(before[k], v) for k, v in small_model.state_dict().items()
    )  # caller's model untouched
    with Bundle.open(report.bundle) as bundle:
        entries = bundle.graph("decoder")["extra"]["weights"]
        # input conv, 2 x 2 pointwise Linears, the upsampling ConvTranspose (polyphase layout), head;
        # no float16 tensor is left at this size (the codebook table and projections are under 1024
        # values; the iSTFT basis and window are derived: not stored at all)
        encodings = [e.get("encoding", "packed") for e in entries]
        assert encodings == ["packed"] * 7
        assert [e["layer"] for e in entries if e.get("layout") == "conv_transpose_polyphase"] == ["decoder.up.conv"]
        assert {e["kind"] for e in bundle.graph("decoder")["derived"]["initializers"]} == {"dft_basis", "window"}
        moved = sum(4 * math.prod(e["shape"]) for e in entries)
        float_decoder = (float_bundle / "decoder.onnx").stat().st_size
        assert (report.bundle / "decoder.onnx").stat().st_size <= float_decoder - moved + 4096  # bytes gone
        packed_total = _bundle_bytes(report.bundle, ".onnx") + _bundle_bytes(report.bundle, ".npz")
        assert packed_total < 0.35 * _bundle_bytes(float_bundle, ".onnx")
        reference = _torch_with_bundle_weights(small_model, bundle)
        codes = np.random.default_rng(0).integers(0, SMALL_RVQ.codebook_size, (1, 3, 37)).astype(np.int64)
        expected = reference.decode_codes(torch.from_numpy(codes)).detach().numpy()
        decoder = materialize(bundle, "decoder", num_threads=1)
        np.testing.assert_allclose(decoder.run(None, {"codes": codes})[0], expected, atol=1e-4, rtol=0)
        wav = np.random.default_rng(1).standard_normal((1, 64 * 40)).astype(np.float32) * 0.1
        torch_codes = reference.encode_codes(torch.from_numpy(wav)).numpy()
        assert np.mean(materialize(bundle, "encoder").run(None, {"wav": wav})[0] == torch_codes) > 0.99
        metrics = bundle.manifest["metrics"]
        assert metrics["materialize_max_abs"] == 0.0
        assert metrics["export_decoder_snr_db"] > 50  # vs the quantised torch model: float16 rounding only
        quantization = bundle.manifest["quantization"]
        assert quantization["bits"] == int(quant[-1]) and quantization["group_size"] == 64
        assert quantization["details"]["in_memory_bytes"] > quantization["details"]["on_disk_bytes"]
    assert "decoder" in report.summary() and "SNR" in report.summary()


@pytest.mark.slow
def test_float_encoder_leaves_the_encoder_graph_bit_exact(
    small_model: RVQCodec, float_bundle: Path, tmp_path: Path
):
    report = export_model(
        small_model,
        tmp_path / "w3",
        quant="gptq-w3",
        quantize_encoder=False,
        progress=False,
        corpus_dir=tmp_path,
    )
    assert report.manifest["quantization"]["details"]["quantized_graphs"] == ["decoder"]
    assert (report.bundle / "encoder.onnx").read_bytes() == (float_bundle / "encoder.onnx").read_bytes()
    assert report.parity["encoder"]["encoder_codes_equal_fraction"] > 0.99


@pytest.mark.slow
def test_int8_dynamic_export_quantises_every_graph(small_model: RVQCodec, float_bundle: Path, tmp_path: Path):
    report = export_model(small_model, tmp_path / "int8", quant="int8", progress=False, corpus_dir=tmp_path)
    assert report.manifest["quantization"]["details"]["quantized_graphs"] == ["encoder", "decoder"]
    for graph in ("encoder", "decoder"):
        assert (report.bundle / f"{graph}.onnx").stat().st_size < (
            float_bundle / f"{graph}.onnx"
        ).stat().st_size
    assert report.parity["decoder"]["decoder_snr_db"] > 15


@pytest.mark.slow
def test_coreml_export_writes_a_bundle_with_sizes_only(tmp_path: Path):
    pytest.importorskip("coremltools")
    model = RVQCodec(SMALL_RVQ).eval()
    report = export_model(
        model, tmp_path / "ml", format="coreml", quant="int8", progress=False, corpus_dir=tmp_path
    )
    with Bundle.open(report.bundle) as bundle:
        assert {g["runtime"] for g in bundle.manifest["graphs"].values()} == {"coreml"}
        assert bundle.manifest["quantization"]["details"]["quantized_graphs"] == ["encoder", "decoder"]
    assert report.parity == {} and any("macOS" in note for note in report.notes)
