"""SWEET (Rotem et al., 2023, Sec. 4): classifier i's loss updates only the layers after
exit i-1 up to exit i (classifier 1 also owns the embeddings). All exits still train in one
forward/backward pass; the state entering each later segment is detached."""

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.multi_exit import MultiExitModel


class SweetModule(AdaptiveModule):
    method = "sweet"
    cost_model = "early_exit"

    def build_network(self, encoder, exit_layers, pooling, dropout, shared_pooler: bool = False, **kwargs):
        # shared_pooler=True reproduces the released code, where one pooler serves every exit
        # (so it alone is updated by all classifiers).
        return MultiExitModel(
            encoder, exit_layers, self.task.num_labels, pooling, dropout,
            boundary_grad=0.0, shared_pooler=shared_pooler, **kwargs,
        )
