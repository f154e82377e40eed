"""seddpy: the SEDD score network in PyTorch and its export to the sedd-go model directory.

Modules: model (the DDiT network), checkpoints (published shapes and loaders), safetensors_io,
tokenizers (tokenizer.json files), onnx_export, golden (golden.json/golden.bin), manifest
(sedd.json) and refmath (reference maths in float64).
"""
