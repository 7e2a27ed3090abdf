"""Gradient-scaled SWEET (new here): between SWEET and Early-Exit.

Where SWEET detaches the state entering each later segment, this multiplies the gradient flowing
back across that boundary by `method.alpha` in [0, 1] (identity forward). Exit j's loss reaches
segment i <= j scaled by alpha ** (j - i), the number of boundaries it crosses (the context's
parameter-derived tensors, e.g. DeBERTa's relative embeddings, owned by the first segment, scale the
same way). alpha = 0 is SWEET and alpha = 1 is Early-Exit, computed exactly as those methods compute
them (`MultiExitModel.cross_boundary`). A sweep over alpha traces the trade-off of paper Sec. 4.2
between the early classifiers (SWEET leads at fast speeds) and the late ones (Early-Exit leads at
slow speeds: its later classifiers also shape the early layers).

The run's method name carries alpha (`sweet_alpha0.25`, conf/method/sweet_alpha.yaml), so the
report shows each alpha as a method of its own and a sweep's runs land in different dirs.
"""

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.multi_exit import MultiExitModel, check_boundary_grad


class GradientScaledSweetModule(AdaptiveModule):
    method = "sweet_alpha"
    cost_model = "early_exit"

    def build_network(
        self,
        encoder,
        exit_layers,
        pooling,
        dropout,
        alpha: float = 0.5,
        shared_pooler: bool = False,
        **kwargs,
    ):
        return MultiExitModel(
            encoder,
            exit_layers,
            self.task.num_labels,
            pooling,
            dropout,
            boundary_grad=check_boundary_grad(alpha, "method.alpha"),
            shared_pooler=shared_pooler,
            **kwargs,
        )
