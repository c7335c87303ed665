"""Training, evaluation, prediction and export loops.

- `vidrec.engine.schema`: `TrainConfig` and its sections (fields, types, help, field checks).
- `vidrec.engine.config`: `load_config` (YAML + overrides -> a `TrainConfig` validated with its task).
- `vidrec.engine.train`: `train(cfg) -> TrainResult`, `train_one_epoch`; its loaders in
  `vidrec.engine.loaders`, its state in `vidrec.engine.runstate`.
- `vidrec.engine.checkpoint`: `save_checkpoint`, `load_checkpoint`, `load_for_inference` (safetensors only).
- `vidrec.engine.distributed`: torchrun / DDP set-up (the module docstring has the launch commands).
- `vidrec.engine.evaluate`: `evaluate(model, loader, ...) -> EvalResult`.

Submodules are imported on use (``from vidrec.engine.train import train``), so importing the package
stays cheap.
"""
