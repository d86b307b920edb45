"""speechkit_rt.derived: DFT bases and windows rebuilt from manifest recipes, hash-checked, refused when wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.features import ISTFT, STFT
from speechkit_export.pipeline import export_model
from speechkit_rt import CodecRuntime, derived, features
from speechkit_rt.bundle import Bundle, validate_manifest
from speechkit_rt.errors import BundleError

TINY = RVQCodecConfig(n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=2, codebook_size=8,
                      encoder_blocks=(1, 1), decoder_blocks=(1, 1))  # fmt: skip


def _recipe(**changes) -> dict:
    entry = {"name": "basis", "kind": "dft_basis", "n_fft": 64, "win_length": 48, "window": "hann_periodic",
             "direction": "inverse", "dtype": "float32", "shape": [66, 1, 64], "offset": 0, "length": 4 * 66 * 64}  # fmt: skip
    entry["sha256"] = derived.sha256_hex(derived.compute(entry))
    return {**entry, **changes}


@pytest.mark.parametrize("n_fft", [64, 400, 640])
def test_rebuilt_tensors_equal_the_torch_modules_buffers(n_fft: int):
    stft, istft = STFT(n_fft, n_fft // 4), ISTFT(n_fft, n_fft // 4)
    np.testing.assert_array_equal(features.dft_basis(n_fft, direction="forward"), stft.basis.numpy())
    np.testing.assert_array_equal(features.dft_basis(n_fft, direction="inverse"), istft.basis.numpy())
    np.testing.assert_array_equal(features.window_power(n_fft, n_fft, 2), istft.window_sq.numpy())


def test_forward_basis_is_the_dft_and_inverse_basis_inverts_it():
    n_fft, frame = 64, np.random.default_rng(0).standard_normal(64)
    spectrum = features.dft_basis(n_fft)[:, 0, :].astype(np.float64) @ frame
    window = features.padded_window(n_fft, n_fft).astype(np.float64)
    expected = np.fft.rfft(frame * window)
    np.testing.assert_allclose(spectrum[:33] + 1j * spectrum[33:], expected, atol=1e-5)
    back = features.dft_basis(n_fft, direction="inverse")[:, 0, :].astype(np.float64).T @ spectrum
    np.testing.assert_allclose(back, frame * window**2, atol=1e-5)


def test_unknown_kind_is_refused_with_the_kinds_this_runtime_knows():
    with pytest.raises(
        BundleError, match=r"'fft_twiddles' is not a derived-initializer kind .*dft_basis, window"
    ):
        derived.rebuild(_recipe(kind="fft_twiddles"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": "forward"}, "sha256 differs"),
        ({"win_length": 64}, "sha256 differs"),
        ({"sha256": "0" * 64}, "sha256 differs"),
        ({"shape": [66, 1, 32]}, "length"),
        ({"window": "hamming"}, "window must be one of"),
        ({"power": 2}, "unknown keys"),
    ],
)
def test_tampered_recipe_is_refused(change: dict, message: str):
    with pytest.raises(BundleError, match=message):
        derived.rebuild(_recipe(**change))


@pytest.fixture(scope="module")
def float_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[RVQCodec, Path]:
    torch.manual_seed(0)
    model = RVQCodec(TINY).eval()
    out = tmp_path_factory.mktemp("derived") / "bundle"
    export_model(model, out, quant="none", progress=False, corpus_dir="/no/corpus")
    return model, out


@pytest.mark.slow
def test_float_bundle_ships_recipes_instead_of_bases_and_runs(float_bundle: tuple[RVQCodec, Path]):
    model, out = float_bundle
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = {
        g: sorted(e["kind"] for e in manifest["graphs"][g]["derived"]["initializers"])
        for g in ("encoder", "decoder")
    }
    assert kinds == {"encoder": ["dft_basis"], "decoder": ["dft_basis", "window"]}
    assert manifest["metrics"]["materialize_max_abs"] == 0.0  # rebuilt graph == exported graph
    for graph in ("encoder", "decoder"):  # the .onnx files hold references, not the data
        proto = onnx.load(str(out / f"{graph}.onnx"), load_external_data=False)
        names = {e["name"] for e in manifest["graphs"][graph]["derived"]["initializers"]}
        stripped = [i for i in proto.graph.initializer if i.name in names]
        assert len(stripped) == len(names) and all(
            i.data_location == onnx.TensorProto.EXTERNAL for i in stripped
        )
    # Rebuilt == the torch model's buffers within 1e-7 (they are in fact bit-identical).
    entry = next(
        e for e in manifest["graphs"]["decoder"]["derived"]["initializers"] if e["kind"] == "dft_basis"
    )
    rebuilt = derived.rebuild(entry)
    assert np.max(np.abs(rebuilt - model.istft.basis.numpy())) <= 1e-7
    wav = 0.1 * np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    with CodecRuntime.open(out) as codec:
        audio = codec.decode(codec.encode(wav, 16000))
    with torch.no_grad():
        expected = model.decode_codes(model.encode_codes(torch.from_numpy(wav)[None]))[0].numpy()
    assert np.max(np.abs(audio - expected[: len(audio)])) < 1e-4


@pytest.mark.slow
def test_bundle_with_a_tampered_recipe_is_refused_at_session_creation(float_bundle, tmp_path: Path):
    _, out = float_bundle
    manifest = json.loads((out / "manifest.json").read_text())
    bad = copy.deepcopy(manifest)
    basis = next(e for e in bad["graphs"]["decoder"]["derived"]["initializers"] if e["kind"] == "dft_basis")
    basis["direction"] = "forward"  # the iSTFT's basis swapped for the STFT's: same shape, other values
    validate_manifest(bad)  # well-formed: only the rebuild's hash can tell
    (tmp_path / "b").mkdir()
    for rel in manifest["files"]:
        (tmp_path / "b" / rel).write_bytes((out / rel).read_bytes())
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(bad))
    with Bundle.open(tmp_path / "b") as bundle:
        assert bundle.graph("decoder")["derived"] == bad["graphs"]["decoder"]["derived"]
    with pytest.raises(BundleError, match="rebuilt tensor's sha256 differs"):
        with CodecRuntime.open(tmp_path / "b") as codec:
            codec.session("decoder")
    basis["kind"] = "mel_filterbank"
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="'mel_filterbank' is not a derived-initializer kind"):
        Bundle.open(tmp_path / "b")
