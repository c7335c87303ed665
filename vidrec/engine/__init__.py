"""Training, evaluation, prediction and export loops.

- `vidrec.engine.config`: `TrainConfig` (YAML + overrides, validated) and `load_config`.
- `vidrec.engine.train`: `train(cfg) -> TrainResult`, `train_one_epoch`.
- `vidrec.engine.checkpoint`: `save_checkpoint`, `load_checkpoint`, `load_for_inference` (safetensors only).
- `vidrec.engine.distributed`: torchrun / DDP set-up (the module docstring has the launch commands).
- `vidrec.engine.evaluate`: `evaluate(model, loader, ...) -> EvalResult`.

Submodules are imported on use (``from vidrec.engine.train import train``), so importing the package
stays cheap.
"""
