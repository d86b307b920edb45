"""Speaker family: ECAPA-TDNN embeddings and verification, multi-scale diarization with MSDD.

    encoder = speechkit.load("ecapa-tdnn")          # SpeakerEncoder: embed / verify / enroll / identify
    diarizer = speechkit.load("msdd")               # Diarizer: diarize(wav, sample_rate) -> Diarization
    stream = StreamingDiarizer(diarizer)            # accept(chunk) -> finalised segments

Modules: :mod:`~speechkit.speaker.ecapa` (model), :mod:`~speechkit.speaker.api` (task API),
:mod:`~speechkit.speaker.scoring` (EER, minDCF, AS-norm, calibration), :mod:`~speechkit.speaker.vad`,
:mod:`~speechkit.speaker.segmentation`, :mod:`~speechkit.speaker.clustering` (NME-SC),
:mod:`~speechkit.speaker.msdd`, :mod:`~speechkit.speaker.diarize`, :mod:`~speechkit.speaker.streaming`,
:mod:`~speechkit.speaker.rttm`, :mod:`~speechkit.speaker.der`. Numpy-only modules (vad,
segmentation, clustering, scoring, rttm, der) import no torch.
"""
