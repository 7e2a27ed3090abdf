"""Early-Exit (Schwartz et al., 2020): classifiers after chosen layers, losses summed, every
loss reaching every layer below its classifier."""

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.multi_exit import MultiExitModel


class EarlyExitModule(AdaptiveModule):
    method = "early_exit"
    cost_model = "early_exit"

    def build_network(self, encoder, exit_layers, pooling, dropout, shared_pooler: bool = False, **kwargs):
        # shared_pooler=True reproduces the released code, where one pooler serves every exit
        # for Early-Exit as for SWEET
        return MultiExitModel(
            encoder,
            exit_layers,
            self.task.num_labels,
            pooling,
            dropout,
            shared_pooler=shared_pooler,
            **kwargs,
        )
