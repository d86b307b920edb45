"""Speaker models and diarization: speaker embeddings, RTTM files and the diarization error rate."""
