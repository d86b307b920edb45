#!/usr/bin/env bash
# Set up a machine for speechkit: system tools (apt, when root), the virtual environment, the package.
# Idempotent: a second run only checks (a few seconds).
#   SPEECHKIT_VENV   where the virtual environment goes (default: .venv in the repo)
#   SPEECHKIT_SKIP_APT=1   never call apt-get (just report what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPEECHKIT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

# tool -> Debian package that provides it
declare -A TOOLS=(
  [espeak-ng]=espeak-ng [flite]=flite [festival]=festival [text2wave]=festival [sox]=sox
  [ffmpeg]=ffmpeg [c2enc]=codec2 [c2dec]=codec2 [opusenc]=opus-tools [opusdec]=opus-tools
  [fluidsynth]=fluidsynth [node]=nodejs [npm]=npm [chromium]=chromium
)
# files -> Debian package (voices, soundfont, text)
declare -A FILES=(
  [/usr/share/festival/voices/english/kal_diphone]=festvox-kallpc16k
  [/usr/share/festival/voices/english/ked_diphone]=festvox-kdlpc16k
  [/usr/share/festival/voices/us/cmu_us_slt_arctic_hts]=festvox-us-slt-hts
  [/usr/share/sounds/sf2/FluidR3_GM.sf2]=fluid-soundfont-gm
  [/usr/share/games/fortunes/fortunes]=fortunes-min
  [/usr/share/games/fortunes/science]=fortunes
)
missing=()
for tool in "${!TOOLS[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}"); done
for file in "${!FILES[@]}"; do [ -e "$file" ] || missing+=("${FILES[$file]}"); done
if [ "${#missing[@]}" -gt 0 ]; then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && [ "${SPEECHKIT_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system packages: $packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $packages libsox-fmt-all >/dev/null
  else
    echo "[setup] missing system packages (data synthesis and peer benchmarks need them):" >&2
    echo "        sudo apt-get install $packages" >&2
  fi
fi

# Virtual environment and the package, reinstalled only when pyproject.toml changed.
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.speechkit-setup-stamp"
want=$(sha256sum pyproject.toml mobile/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing speechkit and its dependencies into $VENV (torch==2.13.0 CPU)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q -e '.[dev,bench,data,coreml]' 2>&1 | grep -v "is ignored" || true
  # Resemblyzer (the benchmarks' speaker encoder, weights in its wheel) without its declared deps:
  # webrtcvad builds from source and needs pkg_resources, and "typing" is a Python 2 backport. The
  # bench extra brings what it really imports (librosa, webrtcvad-wheels; torch, scipy, numpy).
  "$VENV/bin/python" -m pip install -q --no-deps 'resemblyzer==0.1.4' 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import speechkit, torch, onnxruntime" \
    || { echo "[setup] the install failed; see pip's messages above" >&2; exit 1; }
  "$VENV/bin/python" -c "import faster_whisper, pocketsphinx, webrtcvad, librosa; import resemblyzer" 2>/dev/null \
    || { echo "[setup] the benchmark packages (bench extra, resemblyzer) failed to install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# The browser runtime's npm packages (onnxruntime-web, playwright-core; Debian's chromium is the browser).
web_stamp=mobile/web/node_modules/.speechkit-lock
web_want=$(sha256sum mobile/web/package-lock.json | cut -c1-16)
if command -v npm >/dev/null && { [ ! -f "$web_stamp" ] || [ "$(cat "$web_stamp")" != "$web_want" ]; }; then
  echo "[setup] installing the browser runtime's npm packages (mobile/web)"
  (cd mobile/web && npm ci --silent --no-audit --no-fund) && echo "$web_want" > "$web_stamp"
fi
echo "[setup] ready: $VENV"
