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


class LogWorsening(L.Callback):
    """Logs `test/worsening` = -epoch at every validation: best at epoch 0, never better after."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            pl_module.log("test/worsening", -float(trainer.current_epoch))
