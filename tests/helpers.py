"""Test-only pieces that configs can point at (`+callbacks.crash._target_=tests.helpers.CrashAtStep`)."""

import lightning as L


class SimulatedCrash(RuntimeError):
    pass


class CrashAtStep(L.Callback):
    """Raises when training reaches optimizer step `step`: a run killed mid-training."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise SimulatedCrash(f"simulated crash at step {trainer.global_step}")


class SleepPerStep(L.Callback):
    """Slows training down so that a test can signal a run while it trains."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        import time

        time.sleep(self.seconds)


class RecordBatches(L.Callback):
    """Writes the rows of every training batch this rank saw, by epoch, to `<out>/batches_rank<r>.json`
    (each row as its unpadded token ids), so a test can check what the sampler gave each DDP rank."""

    def __init__(self, out: str):
        self.out = out
        self.epochs: list[list[list[list[int]]]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pairs = zip(batch["input_ids"], batch["attention_mask"], strict=True)
        rows = [ids[mask.bool()].tolist() for ids, mask in pairs]
        self.epochs[-1].append(rows)

    def on_train_end(self, trainer, pl_module) -> None:
        import json
        from pathlib import Path

        path = Path(self.out) / f"batches_rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.epochs))
