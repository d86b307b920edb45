"""mobile/web: the browser runtime (onnxruntime-web) in headless Chromium against the Python runtime.

Runs ``mobile/web/e2e.mjs`` on fixtures from ``mobile/web/make_fixtures.py`` (a tiny exported codec
bundle, a tampered copy, a WAV and the Python runtime's codes and decoded audio). Needs node, Debian's
``chromium`` and the npm packages of ``mobile/web/package.json``; without them the test FAILS, naming
what to install (the browser runtime is part of the SDK, so a missing toolchain is not a pass).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "mobile" / "web"
SETUP_HINT = "apt-get install -y chromium nodejs npm && (cd mobile/web && npm ci)"


def _require_toolchain() -> None:
    problems = [f"`{tool}` not on PATH" for tool in ("node", "chromium") if shutil.which(tool) is None]
    for package in ("onnxruntime-web", "playwright-core"):
        if not (WEB / "node_modules" / package / "package.json").is_file():
            problems.append(f"npm package {package} not installed in mobile/web/node_modules")
    if problems:
        pytest.fail(f"browser runtime toolchain missing: {'; '.join(problems)}. Install with: {SETUP_HINT}")


def _make_fixtures(out_dir: Path) -> Path:
    spec = importlib.util.spec_from_file_location("speechkit_web_fixtures", WEB / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_fixtures(out_dir)


@pytest.mark.slow
def test_browser_runtime_matches_python_and_refuses_tampered_bundles(tmp_path):
    _require_toolchain()
    fixtures = _make_fixtures(tmp_path / "fixtures")
    result = subprocess.run(
        ["node", str(WEB / "e2e.mjs"), "--fixtures", str(fixtures)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode == 3:
        pytest.fail(f"browser e2e could not run: {result.stderr.strip()}. Install with: {SETUP_HINT}")
    assert result.returncode in (0, 1), f"e2e.mjs crashed (exit {result.returncode}):\n{result.stderr}"
    report = json.loads(result.stdout)
    failed = {name: check for name, check in report["checks"].items() if not check["pass"]}
    assert not failed, f"browser checks failed: {json.dumps(failed, indent=1)}"
    for k in (3, 1):
        parity = report["checks"][f"parity_k{k}"]
        assert parity["codes_equal"] == pytest.approx(1.0, abs=0.01)
        assert parity["audio_max_abs"] <= 1e-4
    assert "sha256 mismatch" in report["checks"]["refuses_tampered"]["message"]
    # The fixture's DFT bases and window are derived initializers, rebuilt in the browser.
    manifest = json.loads((fixtures / "bundle" / "manifest.json").read_text())
    assert {e["kind"] for e in manifest["graphs"]["decoder"]["derived"]["initializers"]} == {"dft_basis", "window"}
    assert "sha256 differs" in report["checks"]["refuses_tampered_recipe"]["message"]
    assert "fft_twiddles" in report["checks"]["refuses_unknown_kind"]["message"]
    assert result.returncode == 0
