"""seddpy: the SEDD score network in PyTorch and its export to the sedd-go model directory.

Modules: model (the DDiT network), checkpoints (published shapes and loaders), tokenizers
(tokenizer.json files), onnx_export, ortcheck (the ONNX Runtime cross-check), golden
(golden.json/golden.bin), manifest (sedd.json), onnx_weights (the network back from model.onnx)
and refmath (reference maths in float64).
"""
