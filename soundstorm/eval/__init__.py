"""Evaluation: codec quality (codec_metrics.py, codec_eval.py), and the measures of generated
speech. Each module is imported on its own: their dependencies (pesq, pystoi, ASR and speaker
models) load only where used."""
